"""push, sync and retry: one way to run, show the report, and say what to do next."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..config import Resolved, config_path, load_config, resolve_run
from ..errors import ExitCode, UsageError
from ..model import FAILED
from ..outputs import STDOUT, check_dir, check_file, write_failed
from ..pipeline.report import Report
from ..pipeline.run import Cancel, PushOptions, SyncOptions, run_push, run_retry
from ..store.runs import RunRow
from .core import ProgressView, app, emit, handle_errors, say, signals
from .options import (
    AllowPartialOpt,
    ConcurrencyOpt,
    ConfigOpt,
    QuietOpt,
    ReportOpt,
    RunOptions,
    StateDirOpt,
    WaitOpt,
    resolved,
    run_options,
)
from .render import render_report


@app.command()
@handle_errors
@run_options
def push(
    file: Annotated[str, typer.Argument(metavar="FILE", help="CSV or JSONL file (optionally .gz); - reads stdin.")],
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Status of every row, for files without a status column: NEW, MODIFIED or REMOVED. Default: NEW.",
        ),
    ] = None,
    *,
    options: RunOptions,
) -> None:
    """Validate, hash and batch a segment file, and POST it to the webhook (journaled, resumable)."""
    _run(options, options.push_options(file, status), None)


@app.command()
@handle_errors
@run_options
def sync(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="The full current membership of the segment: CSV or JSONL (optionally .gz); - reads stdin.",
        ),
    ],
    full: Annotated[
        bool, typer.Option("--full", help="Send the whole snapshot as NEW and rebuild the baseline.")
    ] = False,
    max_remove: Annotated[
        str,
        typer.Option(
            "--max-remove", help="Refuse (exit 6) a snapshot that removes more than this share of the segment."
        ),
    ] = "50%",
    force: Annotated[bool, typer.Option("--force", help="Send the removals even past --max-remove.")] = False,
    *,
    options: RunOptions,
) -> None:
    """Send only what changed since the last acknowledged sync: NEW, MODIFIED and REMOVED profiles."""
    _run(options, options.push_options(file), SyncOptions(full=full, max_remove=_share(max_remove), force=force))


def _run(options: RunOptions, opts: PushOptions, sync: SyncOptions | None) -> None:
    """push and sync: one implementation, with progress, signals, the run id and the report."""
    check_outputs(options.report_json, opts.rejects, opts.out_dir if opts.dry_run else None)
    resolved_ = resolved(options.config, options.segment)
    cancel = Cancel()
    label = f"{'sync' if sync else 'push'} {resolved_.segment_name}"
    with ProgressView(options.quiet, label) as progress, signals(cancel):
        report = run_push(resolved_, opts, sync=sync, progress=progress, cancel=cancel)
    if report.run_id and not options.quiet:
        say(f"run {report.run_id}")
    finish(report, options.report_json, options.quiet, opts.rejects)


def _share(value: str) -> float:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*", value)
    if not m or not 0 <= float(m.group(1)) <= 100:
        raise UsageError(f"--max-remove takes a percentage from 0 to 100 (like 50 or 50%), got {value!r}")
    return float(m.group(1)) / 100


@app.command()
@handle_errors
def retry(
    run_id: Annotated[
        str | None, typer.Argument(metavar="RUN_ID", help="The run to finish (see `canopycli runs`).")
    ] = None,
    last: Annotated[bool, typer.Option("--last", help="The most recent run.")] = False,
    config: ConfigOpt = None,
    report_json: ReportOpt = None,
    quiet: QuietOpt = False,
    concurrency: ConcurrencyOpt = None,
    state_dir_: StateDirOpt = None,
    allow_partial: AllowPartialOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Resend a run's failed and not-sent batches (same uuids) with the token from --config."""
    if bool(run_id) == last:
        raise UsageError("name a run (canopycli retry RUN_ID) or pass --last")
    check_outputs(report_json)
    path = config_path(config)

    def resolved_for(run: RunRow) -> Resolved:
        return resolve_run(
            load_config(path), run.connector, run.segment, run.settings["segment"], str(path), run_id=run.id
        )

    opts = PushOptions("-", concurrency=concurrency, allow_partial=allow_partial, wait=wait, state_dir=state_dir_)
    cancel = Cancel()
    with ProgressView(quiet, "retry") as progress, signals(cancel):
        report = run_retry(state_dir_, run_id, resolved_for, opts, progress=progress, cancel=cancel)
    finish(report, report_json, quiet, None)


def check_outputs(report_json: Path | None, rejects: Path | None = None, out: Path | None = None) -> None:
    """Every output path can be written: checked before anything is read or sent."""
    check_file(report_json, "--report-json")  # - : the report as JSON on stdout, instead of the table
    check_file(rejects, "--rejects", stdout_ok=False)
    check_dir(out, "--out")


# --- the end of a run: the report, the hints, the exit code -----------------------------------


def finish(
    report: Report,
    report_json: Path | None,
    quiet: bool,
    rejects: Path | None,
    after: tuple[str, ...] = (),
    where_rejects: str | None = None,
) -> None:
    """Show the report (table, or JSON with ``--report-json -``), say what to do next, exit with its code."""

    def show(out: Console) -> None:
        render_report(report, out)
        for line in after:
            out.print(line)

    if report_json is not None and str(report_json) == STDOUT:  # for scripts: JSON on stdout, no table
        emit(
            lambda out: out.file.write(json.dumps(report.to_json(), indent=2) + "\n"),
            report.run_id,
            report.requests > 0,
        )
    elif report_json is not None:  # the record for machines first: it must not depend on stdout
        try:
            report.write_json(report_json)
        except OSError as e:
            raise write_failed(e, "--report-json").during_run(report.run_id, report.requests > 0) from e
    if report_json is None or str(report_json) != STDOUT:
        emit(show, report.run_id, report.requests > 0)
    if not quiet:
        _hints(report, rejects, where_rejects)
    if report.damage is not None:  # damaged input: exit 2, although the rows before the damage were processed
        _damage(report, rejects)
    code = report.exit_code
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _damage(report: Report, rejects: Path | None) -> None:
    kept = f" (the rejected lines are in {rejects})" if rejects else ""
    if not rejects and report.command != "retry":
        kept = " (write the rejected lines with --rejects FILE)"
    say(f"Error: {report.damage}{kept}.")
    waiting = report.profiles_failed + report.profiles_not_sent - report.superseded
    if waiting > 0 and report.run_id and not report.dry_run and report.exit_code == ExitCode.USAGE:
        say(f"{waiting:,} profiles read before it were not delivered; send them with: canopycli retry {report.run_id}")


def _hints(report: Report, rejects: Path | None, where: str | None = None) -> None:
    bad = report.rows_rejected + report.rows_duplicate
    if bad:
        for line, reason_ in report.reject_samples:
            say(f"  line {line}: {reason_}")
        more = bad - len(report.reject_samples)
        where = where or (f"all of them are in {rejects}" if rejects else "write them all with --rejects rejects.csv")
        say(f"{bad:,} row(s) not sent as rejected or duplicate{f' ({more:,} more)' if more > 0 else ''}; {where}.")
    if report.rows_suppressed:
        why = f"the reasons are in {rejects}" if rejects else "--rejects FILE lists them with the reason"
        say(
            f"{report.rows_suppressed:,} row(s) held back by the segment's suppress: (a hard bounce or a complaint);"
            f" {why}; --no-suppress sends them this once."
        )
    code = report.exit_code
    waiting = report.profiles_failed + report.profiles_not_sent - report.superseded
    waiting += report.removals_failed + report.removals_not_sent
    # Every partial outcome names `canopycli retry RUN_ID`: it resends only what was not delivered,
    # with the same uuids. Pushing the file again would spend requests on what already arrived.
    again = f"canopycli retry {report.run_id}" if report.run_id else "the same command"
    if code == ExitCode.CREDENTIALS:
        say(
            "The webhook rejected the credentials (401/403). Check `token:` in the config and `auth:` (query or bearer); "
            "a Deployteq account inactive for 60 days answers 401. "
            f"Then send the {waiting:,} profiles not delivered with: {again}"
        )
    elif code == ExitCode.DAILY_LIMIT:
        hint = f" ({report.retry_hint})" if report.retry_hint else ""
        say(
            f"Deployteq's daily request limit was reached{hint}: {waiting:,} profiles were not sent. "
            f"Send them when the budget resets with: {again} (or install Webhook Pro, which has no daily limit)."
        )
    elif code == ExitCode.FAILED:
        failed = sum(1 for b in report.batches if b.outcome == FAILED)
        say(
            f"{failed:,} batch(es) failed after retries; {waiting:,} profiles are not delivered. Send them with: {again}"
        )
    elif code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED) and report.run_id:
        say(f"Stopped before the end: {waiting:,} profiles are not delivered yet. Finish with: {again}")
