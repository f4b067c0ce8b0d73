"""engagements: what came back from Deployteq (clicks, opens, receives, bounces, complaints).

``pull`` fetches them from the Analytics Events API, ``report`` and ``export`` show them,
``suppressed`` says what a segment's ``suppress:`` holds back, ``prune`` forgets old ones.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import orjson
import typer

from ..config import config_path, load_config, resolve
from ..engagements.pull import MetricPull, pull
from ..errors import UsageError
from ..pipeline.suppress import id_column
from ..store import Store
from ..store.locks import state_dir
from .core import ProgressView, app, handle_errors
from .options import ConfigOpt, ListingFormatOpt, OlderThanOpt, QuietOpt, StateDirOpt, cutoff
from .render import show_listing

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
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"{option} takes a date like 2026-11-20, got {value!r}") from None


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
