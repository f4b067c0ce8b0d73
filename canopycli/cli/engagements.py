"""engagements: what came back from Deployteq (clicks, opens, receives, bounces, complaints).

``pull`` fetches them from the Analytics Events API, ``report`` and ``export`` show them,
``suppressed`` says what a segment's ``suppress:`` holds back, ``prune`` forgets old ones.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from ..config import config_path, load_config, resolve
from ..engagements.pull import MetricPull, pull
from ..engagements.report import TOP_LINKS, by_day, export_rows
from ..engagements.report import report as engagement_report
from ..errors import UsageError
from ..pipeline.suppress import id_column
from ..store import Store
from ..store.engagements import METRICS, Event
from ..store.locks import state_dir
from ..store.portable import ExportFile
from .core import ProgressView, app, emit, handle_errors, say
from .options import ConfigOpt, ListingFormatOpt, OlderThanOpt, QuietOpt, StateDirOpt, cutoff
from .render import make_table, show_listing

engagements_app = typer.Typer(
    help="Engagements back: pull, report, export, suppressed, prune.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(engagements_app, name="engagements")

SinceOpt = Annotated[str | None, typer.Option("--since", metavar="DATE", help="First UTC day, YYYY-MM-DD (inclusive).")]
UntilOpt = Annotated[
    str | None, typer.Option("--until", metavar="DATE", help="Last UTC day, YYYY-MM-DD (inclusive). Default: today.")
]
MetricOpt = Annotated[
    list[str] | None,
    typer.Option("--metric", metavar="M", help="sends, opens, clicks, bounces or complaints; repeat it for more."),
]


def parse_day(value: str | None, option: str) -> dt.date | None:
    """A --since/--until value: a UTC day."""
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"{option} takes a date like 2026-11-20, got {value!r}") from None
    if not 1970 <= day.year <= 9998:
        raise UsageError(f"{option} {value}: give a date from 1970 to 9998")
    return day


# --- pull ----------------------------------------------------------------------------------

PULL_COLUMNS = [
    ("metric", "metric"),
    ("since", "from"),
    ("until", "to"),
    ("pages", "pages"),
    ("received", "events"),
    ("new", "new"),
    ("duplicates", "already stored"),
]


@engagements_app.command("pull")
@handle_errors
def pull_command(
    since: SinceOpt = None,
    until: UntilOpt = None,
    metric: MetricOpt = None,
    config: ConfigOpt = None,
    state_dir_: StateDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The figures as one JSON object on stdout.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Fetch engagement events from the Analytics Events API into the state folder.

    Incremental: without --since, each metric resumes from the day of its newest stored event (one
    day of overlap; an event's uuid is stored once), or fetches the last 30 days the first time."""
    p = config_path(config)
    settings = load_config(p).engagements
    if settings is None:
        raise UsageError(
            f"{p} has no engagements: block",
            hint="Add `engagements: {client_id: ${DT_CLIENT_ID}, client_secret: ${DT_CLIENT_SECRET}}` (see the"
            " README's Engagements section).",
        )
    first, last = parse_day(since, "--since"), parse_day(until, "--until")
    with ProgressView(quiet, "pull") as view, Store(state_dir(state_dir_)) as store:

        def progress(m: MetricPull) -> None:
            of = f" of {m.total:,}" if m.total is not None else ""
            view.update(f"pull {m.metric}: {m.received:,}{of} events, {m.new:,} new", m.received, m.total)

        result = pull(settings, store, since=first, until=last, metrics=metric, progress=progress)
    if as_json:
        typer.echo(orjson.dumps(result.as_dict()).decode())
        return
    show_listing(
        f"engagements pulled: {result.received:,} events, {result.new:,} new",
        PULL_COLUMNS,
        result.as_dict()["metrics"],
        "table",
        empty="nothing to pull",
    )


# --- suppressed, prune ---------------------------------------------------------------------

SUPPRESSED_COLUMNS = [
    ("segment", "segment"),
    ("suppress", "suppress"),
    ("held_back", "profiles held back"),
    ("since", "since (UTC day)"),
]


@engagements_app.command("suppressed")
@handle_errors
def suppressed(
    segment: Annotated[
        str | None, typer.Argument(metavar="[SEGMENT]", help="One segment (default: every segment with suppress:).")
    ] = None,
    config: ConfigOpt = None,
    state_dir_: StateDirOpt = None,
    fmt: ListingFormatOpt = "table",
) -> None:
    """How many profiles each segment's suppress: holds back, and since when.

    From the engagements stored in the state folder: run `canopycli engagements pull` first."""
    p = config_path(config)
    cfg = load_config(p)
    chosen = [resolve(cfg, segment, str(p))] if segment is not None else [resolve(cfg, k, str(p)) for k in cfg.segments]
    records = []
    with Store(state_dir(state_dir_)) as store:
        for r in chosen:
            if not r.segment.suppress and segment is None:
                continue
            n, since = (
                store.engagements.held_back(id_column(r.connector.identifier), r.segment.suppress)
                if r.segment.suppress
                else (0, None)
            )
            records.append(
                {
                    "segment": r.segment_key,
                    "suppress": ", ".join(r.segment.suppress) or "(none)",
                    "held_back": n,
                    "since": since or "",
                }
            )
    show_listing(
        "held back by suppress:",
        SUPPRESSED_COLUMNS,
        records,
        fmt,
        empty=f"no segment of {p} has suppress: (add `suppress: [bounce, complaint]` to a segment)",
    )


@engagements_app.command("prune")
@handle_errors
def prune(older_than: OlderThanOpt = "180d", state_dir_: StateDirOpt = None) -> None:
    """Forget engagement events from days before --older-than (they no longer suppress)."""
    before = cutoff(older_than).date().isoformat()
    with Store(state_dir(state_dir_)) as store:
        removed = store.engagements.prune(before)
    typer.echo(f"pruned {removed:,} engagement event(s) from before {before}")


# --- report, export --------------------------------------------------------------------------

REPORT_DAYS = 30
CHART_DAYS = 31  # the bar chart shows at most the range's last 31 days
BAR_WIDTH = 20
_EIGHTHS = " ▏▎▍▌▋▊▉"


@engagements_app.command("report")
@handle_errors
def report_command(
    since: Annotated[
        str | None, typer.Option("--since", metavar="DATE", help="First UTC day (default: 30 days before --until).")
    ] = None,
    until: UntilOpt = None,
    campaign: Annotated[
        str | None, typer.Option("--campaign", metavar="C", help="One campaign, by id or name.")
    ] = None,
    by: Annotated[str, typer.Option("--by", help="Rows by type, campaign, day or link.")] = "type",
    as_json: Annotated[
        bool, typer.Option("--json", help='{"since", "until", "by", "totals", "rows"} on stdout, for machines.')
    ] = False,
    state_dir_: StateDirOpt = None,
) -> None:
    """Counts and unique profiles per type, campaign, day or link; rates per campaign; bounces by category.

    From the engagements stored in the state folder (`canopycli engagements pull` fetches them)."""
    last = parse_day(until, "--until") or dt.datetime.now(dt.UTC).date()
    first = parse_day(since, "--since") or last - dt.timedelta(days=REPORT_DAYS - 1)
    with Store(state_dir(state_dir_)) as store:
        figures = engagement_report(store, since=first, until=last, campaign=campaign, by=by)
        if as_json:  # the contract only: no chart
            typer.echo(orjson.dumps(figures).decode())
            return
        days = by_day(store, since=max(first, last - dt.timedelta(days=CHART_DAYS - 1)), until=last, campaign=campaign)
        empty = store.engagements.count() == 0
    if empty:
        say("no engagements are stored yet: run `canopycli engagements pull` (or post them to the relay) first")
        return
    emit(lambda out: render_engagements(figures, days, campaign, out))


def render_engagements(figures: dict[str, Any], days: list[dict[str, Any]], campaign: str | None, out: Console) -> None:
    """The report for people: the rows and totals, bounces by category, and a bar per day."""
    what = f", campaign {campaign}" if campaign else ""
    by = figures["by"]
    title = f"engagements {figures['since']} .. {figures['until']} (UTC){what}, by {by}"
    t = make_table(out, title=title + (f" (the top {TOP_LINKS} by clicks)" if by == "link" else ""))
    extra = {"campaign": ["campaign_name", "open_rate", "click_rate"], "link": ["link_description"]}.get(by, [])
    t.add_column({"type": "type"}.get(by, by), overflow="fold")
    for key in extra:
        t.add_column(key.replace("_", " "), overflow="fold", justify="right" if key.endswith("rate") else "left")
    for key in (*METRICS, "unique profiles"):
        t.add_column(key, justify="right")
    for row in figures["rows"]:
        cells = [str(row["key"]) if row["key"] is not None else "(none)"]
        cells += [_cell(row.get(k)) for k in extra]
        t.add_row(*cells, *(f"{row[k]:,}" for k in (*METRICS, "unique_profiles")))
    total = figures["totals"]
    if by != "link":  # the links' rows are clicks only: a total of every event would not add them up
        t.add_row(
            "total", *([""] * len(extra)), *(f"{total[k]:,}" for k in (*METRICS, "unique_profiles")), style="bold"
        )
    out.print(t)
    if figures["bounces_by_category"]:
        b = make_table(out, title="bounces by category")
        for col in ("category", "type", "bounces"):
            b.add_column(col, justify="right" if col == "bounces" else "left")
        for row in figures["bounces_by_category"]:
            b.add_row(row["category"] or "(none)", row["type"] or "(none)", f"{row['count']:,}")
        out.print(b)
    busy = [i for i, d in enumerate(days) if any(d[m] for m in METRICS)]
    days = days[busy[0] :] if busy else []  # from the first day with events
    if not days:
        out.print("no events in this range")
        return
    out.print(f"events per day, from {days[0]['key']}: total, then sends / opens / clicks / bounces / complaints")
    for line in bar_chart(days):
        out.print(line, highlight=False)


def bar_chart(days: list[dict[str, Any]], width: int = BAR_WIDTH) -> list[str]:
    """One line per day: a bar of all its events (scaled to the busiest day, in eighths of a
    character), its total, and the count per metric."""
    totals = [sum(d[m] for m in METRICS) for d in days]
    top = max(totals, default=0) or 1
    lines = []
    for d, n in zip(days, totals, strict=True):
        eighths = round(n / top * width * 8)
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        parts = " / ".join(f"{d[m]:,}" for m in METRICS)
        lines.append(f"{d['key']} {bar:<{width}} {n:>9,}  {parts}")
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1%}"
    return str(value)


EXPORT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@engagements_app.command("export")
@handle_errors
def export_command(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="A .csv, .jsonl or .ndjson file (.gz on top compresses; - : JSON Lines on stdout)."
        ),
    ],
    since: SinceOpt = None,
    until: UntilOpt = None,
    metric: MetricOpt = None,
    state_dir_: StateDirOpt = None,
) -> None:
    """Write the stored engagements (hashed identifiers only) to a CSV or JSON Lines file."""
    bare = file[:-3] if file.endswith(".gz") else file
    fmt = "jsonl" if file == "-" else next((f for ext, f in EXPORT_FORMATS.items() if bare.lower().endswith(ext)), None)
    if fmt is None:
        raise UsageError(f"engagements export {file}: name the file .csv, .jsonl or .ndjson (optionally .gz)")
    unknown = [m for m in metric or [] if m not in METRICS]
    if unknown:
        raise UsageError(f"--metric {unknown[0]!r} is not one of {', '.join(METRICS)}")
    first, last = parse_day(since, "--since"), parse_day(until, "--until")
    out = ExportFile(file, sys.stdout.buffer, "engagements export")
    try:
        with Store(state_dir(state_dir_)) as store:
            n = write_events(out, export_rows(store, since=first, until=last, metrics=metric), fmt)
        out.commit()
    except BaseException:
        out.discard()
        raise
    say(f"exported {n:,} engagement event(s) to {'stdout' if file == '-' else file}")


def write_events(out: ExportFile, rows: Iterator[Event], fmt: str) -> int:
    """Each event as a CSV row (a header first) or a JSON line; how many."""
    n = 0
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(Event._fields)
        for n, row in enumerate(rows, 1):  # noqa: B007 - n: the count
            writer.writerow(row)
            if buffer.tell() > 1 << 16:
                out.write(buffer.getvalue().encode())
                buffer.seek(0)
                buffer.truncate()
        out.write(buffer.getvalue().encode())
        return n
    chunk: list[bytes] = []
    for n, row in enumerate(rows, 1):  # noqa: B007
        chunk.append(orjson.dumps(row._asdict()) + b"\n")
        if len(chunk) >= 1000:
            out.write(b"".join(chunk))
            chunk.clear()
    out.write(b"".join(chunk))
    return n
