"""runs: the run journal (list runs, show one, prune old ones)."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from ..outputs import STDOUT, check_file
from ..pipeline.report import Report
from ..store import Store
from ..store.locks import state_dir
from .core import app, handle_errors, stdout_console
from .options import ListingFormatOpt, OlderThanOpt, ReportOpt, StateDirOpt, cutoff
from .render import render_report, show_listing

runs_app = typer.Typer(help="The run journal: list runs, show one, prune old ones.", no_args_is_help=False)
app.add_typer(runs_app, name="runs")

COLUMNS = [
    ("run", "run"),
    ("started", "started (UTC)"),
    ("command", "command"),
    ("segment", "segment"),
    ("connector", "via"),
    ("status", "status"),
    ("exit_code", "exit"),
    ("rows_read", "rows"),
    ("profiles_delivered", "delivered"),
    ("not_delivered", "not delivered"),
]


@runs_app.callback(invoke_without_command=True)
@handle_errors
def runs_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
    state_dir_: StateDirOpt = None,
    fmt: ListingFormatOpt = "table",
) -> None:
    """Recent runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    records = []
    with Store(state_dir(state_dir_)) as journal:
        title = f"runs in {journal.path}"
        for run in journal.runs.recent(limit):
            report = Report.from_journal(run, journal.runs.batches(run.id), run.command)
            records.append(
                {
                    "run": run.id,
                    "started": run.started,
                    "command": run.command,
                    "segment": run.segment_name,
                    "connector": run.connector,
                    "status": run.shown_status,
                    "exit_code": run.exit_code,
                    "rows_read": run.rows_read,
                    "profiles_delivered": report.profiles_delivered,
                    "not_delivered": report.profiles_failed + report.profiles_not_sent,
                }
            )
    show_listing(title, COLUMNS, records, fmt, "no runs yet")


@runs_app.command("show")
@handle_errors
def runs_show(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="A run id from `canopycli runs`.")],
    state_dir_: StateDirOpt = None,
    report_json: ReportOpt = None,
) -> None:
    """One run: its batches by state and status code, and its row counts (--report-json - : as JSON on stdout)."""
    to_stdout = report_json is not None and str(report_json) == STDOUT
    check_file(report_json, "--report-json")
    with Store(state_dir(state_dir_)) as journal:
        run = journal.runs.get(run_id)
        report = Report.from_journal(run, journal.runs.batches(run.id), run.command)
    report.stop_reason = run.stop_reason
    if to_stdout:
        typer.echo(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
        return
    out = stdout_console()
    out.print(f"run {run.id}: {run.command} of {run.input} ({run.shown_status}, started {run.started})")
    render_report(report, out)
    by_state: dict[str, int] = {}
    for b in report.batches:
        by_state[b.outcome] = by_state.get(b.outcome, 0) + 1
    out.print("batches by state: " + (", ".join(f"{k} {v}" for k, v in sorted(by_state.items())) or "none"))
    if not run.spool_complete:
        out.print("the run stopped before reading all of its input; `canopycli retry` reads the rest")
    if report_json is not None:
        report.write_json(report_json)


@runs_app.command("prune")
@handle_errors
def runs_prune(
    older_than: OlderThanOpt = "30d",
    state_dir_: StateDirOpt = None,
) -> None:
    """Forget runs (and their stored batches) older than --older-than."""
    before = cutoff(older_than)
    with Store(state_dir(state_dir_)) as journal:
        removed = journal.runs.prune(before)
    typer.echo(f"pruned {removed} run(s) older than {older_than}")
