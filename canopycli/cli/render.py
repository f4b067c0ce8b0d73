"""Every table the CLI prints: the report, the config summary, and the listings (runs, baselines).

On a terminal tables are drawn with boxes; piped (cron mail, CI logs) they are plain aligned text.
Listings that scripts read also come as TSV or JSON (``--format``), with raw values.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from ..config import Config, Connector, EngagementSettings, campaign_id, redact_url
from ..errors import UsageError
from ..pipeline.report import Report
from .core import emit


def make_table(console: Console, **options: Any) -> Table:
    """A table for ``console``: box drawing on a terminal, plain aligned text when piped (cron mail, logs)."""
    options.setdefault("title_justify", "left")
    if not console.is_terminal:
        options.setdefault("box", None)
    return Table(**options)


# --- the report ------------------------------------------------------------------------------


def render_report(report: Report, console: Console) -> None:
    """The report for people: a table by outcome, then the row counts."""
    title = f"{report.command} {report.segment} via {report.connector}" + (" (dry run)" if report.dry_run else "")
    if report.run_id:
        title += f"  run {report.run_id}"
    table = make_table(console, title=title)
    for col, just in (
        ("Outcome", "left"),
        ("Class", "left"),
        ("Meaning", "left"),
        ("Batches", "right"),
        ("Profiles", "right"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for g in report.outcomes():
        table.add_row(g["outcome"], g["error_class"], g["meaning"], f"{g['batches']:,}", f"{g['profiles']:,}")
    if not report.batches:
        table.add_row("-", "-", "no batches: nothing to send", "0", "0")
    console.print(table)
    counts = Table(show_header=False, box=None, pad_edge=False)
    counts.add_column(justify="left")
    counts.add_column(justify="right")
    for label, n in row_counts(report):
        counts.add_row(label, f"{n:,}")
    console.print(counts)


def row_counts(report: Report) -> list[tuple[str, int]]:
    """The count lines under the report table, in the order people read them."""
    rows = [
        ("rows read", report.rows_read),
        ("rows rejected", report.rows_rejected),
        ("rows duplicate", report.rows_duplicate),
        *([("rows suppressed", report.rows_suppressed)] if report.rows_suppressed else []),
    ]
    if report.profiles_unchanged is not None:
        rows.append(("profiles unchanged (not sent)", report.profiles_unchanged))
    rows += [
        ("profiles delivered", report.profiles_delivered),
        ("profiles failed", report.profiles_failed),
        ("profiles not sent", report.profiles_not_sent),
        ("requests", report.requests),
    ]
    if report.profiles_unchanged is not None:  # REMOVED profiles come from the baseline, not from rows
        rows[-1:-1] = [
            ("removals delivered", report.removals_delivered),
            ("removals failed", report.removals_failed),
            ("removals not sent", report.removals_not_sent),
        ]
    return rows


# --- the config summary (validate-config) ------------------------------------------------------


def render_config(cfg: Config, shown: str, out: Console) -> None:
    """A config with every connector's settings (the token redacted) and its segments."""
    out.print(f"{shown}: valid ({len(cfg.connectors)} connector(s), {len(cfg.segments)} segment(s))")
    for name, c in cfg.connectors.items():
        t = make_table(out, title=f"connector {name}", show_header=False)
        t.add_column("setting")
        t.add_column("value", overflow="fold")
        for k, v in soap_settings(c) if c.is_soap else webhook_settings(c):
            t.add_row(k, v)
        out.print(t)
    if cfg.engagements is not None:
        t = make_table(out, title="engagements", show_header=False)
        t.add_column("setting")
        t.add_column("value", overflow="fold")
        for k, v in engagement_settings(cfg.engagements):
            t.add_row(k, v)
        out.print(t)
    s = make_table(out, title="segments")
    campaigns = any(seg.campaign is not None for seg in cfg.segments.values())
    suppress = any(seg.suppress for seg in cfg.segments.values())
    columns = ["segment", "segmentName", "connector", "id_column", "status_column", "params"]
    for col in [*columns, *(["campaign"] if campaigns else []), *(["suppress"] if suppress else [])]:
        s.add_column(col, overflow="fold")
    for key, seg in cfg.segments.items():
        params = "every other column" if seg.params is None else ", ".join(f"{p.name}:{p.type}" for p in seg.params)
        row = [key, seg.name or key, seg.connector, seg.id_column, seg.status_column, params]
        if campaigns:
            row.append(campaign_text(seg.campaign))
        if suppress:
            row.append(", ".join(seg.suppress) or "-")
        s.add_row(*row)
    out.print(s)


def engagement_settings(e: EngagementSettings) -> list[tuple[str, str]]:
    return [
        ("client_id", e.client_id),
        ("client_secret", "*** (set)"),
        ("token_url", redact_url(e.token_url)),
        ("api_url", redact_url(e.api_url)),
        ("metrics", ", ".join(e.metrics)),
        ("page_size", str(e.page_size)),
        ("timeout", f"{e.timeout:g} s"),
        ("retries", str(e.retries)),
    ]


def webhook_settings(c: Connector) -> list[tuple[str, str]]:
    return [
        ("endpoint", redact_url(c.endpoint)),
        ("token", "*** (set)"),
        ("auth", c.auth),
        ("identifier", f"{c.identifier} (customerType {c.customer_type})"),
        ("partner_number", str(c.effective_partner_number)),
        ("batch_size", str(c.batch_size)),
        ("timeout", f"{c.timeout:g} s"),
        ("retries", str(c.retries)),
        ("concurrency", str(c.concurrency)),
        ("daily_limit", f"{c.daily_limit:,}" if c.daily_limit else "none (Webhook Pro)"),
    ]


def soap_settings(c: Connector) -> list[tuple[str, str]]:
    where = "soap_url" if c.soap_url is not None else f"platform {c.platform}"
    codes = ", ".join(str(n) for n in c.auth_fault_codes) or "none (fault text about the token, HTTP 401/403)"
    return [
        ("api", "soap (per profile, real time)"),
        ("address", f"{c.shown_endpoint} ({where})"),
        ("token", "*** (set)"),
        ("identifier", f"{c.identifier} (customerType {c.customer_type})"),
        ("timeout", f"{c.timeout:g} s"),
        ("retries", str(c.retries)),
        ("concurrency", str(c.concurrency)),
        ("auth_fault_codes", codes),
    ]


def campaign_text(campaign: int | str | None) -> str:
    """A segment's campaign as configured: an id, or a name (quoted, so a numeric name stands out)."""
    if campaign is None:
        return "-"
    number = campaign_id(campaign)
    return f"id {number}" if number is not None else repr(campaign)


# --- listings: --format table | tsv | json ---------------------------------------------------


def show_listing(
    title: str, columns: list[tuple[str, str]], records: list[dict[str, Any]], fmt: str, empty: str
) -> None:
    """A listing as a table (people), TSV or JSON (scripts). ``columns``: (key, label)."""
    if fmt not in ("table", "tsv", "json"):
        raise UsageError(f"--format takes table, tsv or json, got {fmt!r}")

    def show(out: Console) -> None:
        if fmt == "json":
            out.file.write(json.dumps(records, indent=1) + "\n")
        elif fmt == "tsv":
            lines = ["\t".join(key for key, _ in columns)]
            lines += ["\t".join(_tsv(r[key]) for key, _ in columns) for r in records]
            out.file.write("\n".join(lines) + "\n")
        elif not records:
            out.print(empty)
        else:
            t = make_table(out, title=title)
            for key, label in columns:
                t.add_column(label, justify="right" if isinstance(records[0][key], int) else "left")
            for r in records:
                t.add_row(*(_cell(r[key]) for key, _ in columns))
            out.print(t)

    emit(show)


def _tsv(value: Any) -> str:
    return "" if value is None else str(value).replace("\t", " ").replace("\n", " ")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    text = str(value)
    return text[:19].replace("T", " ") if len(text) > 19 and text[10:11] == "T" else text  # timestamps
