"""The command line: parse options, call the library, render. Nothing else imports typer."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .. import __version__
from ..config import Config, Connector, Param, Resolved, Segment, config_path, load_config, redact_url, resolve
from ..emulators.webhook import Sandbox
from ..errors import CanopyError, ExitCode, OutputError, StateError, UsageError, scrub
from ..model import FAILED, STOP_INTERRUPTED, STOP_TERMINATED
from ..outputs import STDOUT, check_dir, check_file, reason, write_failed
from ..pipeline.diff import scope_of
from ..pipeline.report import Report, make_table
from ..pipeline.run import Cancel, PushOptions, SyncOptions, run_push, run_retry
from ..store import Store
from ..store.locks import SegmentLock, state_dir
from ..store.portable import ExportFile, Origin, export_baseline, import_baseline
from ..store.runs import RunRow

app = typer.Typer(
    name="canopycli",
    help="Push audience segment files (CSV, JSONL) to a Deployteq (CanopyDeploy) batch webhook.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,  # rich tracebacks show locals, and locals can hold the token
)

F = TypeVar("F", bound=Callable[..., Any])


def _flags_as_flags() -> None:
    """Show ``--dry-run`` in help as a flag, not as ``--dry-run <bool>`` (typer >= 0.26 adds the type)."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if option is None or shown is None or getattr(shown, "_canopycli", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_bool_flag", False) else shown(self, ctx)  # type: ignore[no-any-return]

    display_type_rich._canopycli = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_flags_as_flags()


class _Stdout(Console):
    def on_broken_pipe(self) -> None:
        # rich exits the process with 1 here; a reader that went away (``| head``) is no failure
        # of the run, so ``emit`` decides (the run's own exit code stands).
        raise BrokenPipeError


def _stdout() -> Console:
    # Piped output (cron mail, CI logs) is not squeezed into 80 columns; tables drop their box
    # drawing when stdout is not a terminal (see ``make_table``).
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140
    return _Stdout(file=sys.stdout, highlight=False, soft_wrap=False, width=wide)


def _stderr() -> Console:
    return Console(file=sys.stderr, highlight=False)


def say(message: str) -> None:
    """A diagnostic line on stderr, token-free."""
    typer.echo(scrub(message), err=True)


def _debug() -> bool:
    return os.environ.get("CANOPYCLI_DEBUG") == "1"


def _traceback(e: BaseException) -> None:
    """CANOPYCLI_DEBUG=1: the real traceback, printed here rather than re-raised, because click
    would turn some exceptions (EOFError) into a bare "Aborted." and hide it."""
    say("".join(traceback.format_exception(e)).rstrip())


def handle_errors(fn: F) -> F:
    """The one place exceptions become exit codes and one-line messages."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CanopyError as e:
            if _debug():
                _traceback(e)
            say(f"Error: {e}")
            if e.run_id:
                verb = "Finish it" if e.sent else "Start it again"
                say(f"Run {e.run_id} is recorded up to this point. {verb} with: canopycli retry {e.run_id}")
            raise typer.Exit(int(e.exit_code)) from None
        except KeyboardInterrupt:
            say("Interrupted.")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BaseException as e:
            if os.environ.get("CANOPYCLI_RAISE") == "1":
                raise
            if _debug():
                _traceback(e)
            say(f"Error: unexpected {type(e).__name__}: {e}")
            say("This is a bug in canopycli. Rerun with CANOPYCLI_DEBUG=1 for the traceback and report it.")
            raise typer.Exit(int(ExitCode.FAILED)) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"canopycli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = None,
) -> None:
    """Push audience segment files (CSV, JSONL) to a Deployteq (CanopyDeploy) batch webhook."""


# --- shared options (defined once, used by push and sync) -----------------------------------

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config YAML. Default: $CANOPYCLI_CONFIG, else ./canopycli.yaml."),
]
SegmentOpt = Annotated[
    str | None, typer.Option("--segment", "-s", help="Segment key in the config (needed if it has several).")
]
FormatOpt = Annotated[str | None, typer.Option("--format", help="csv or jsonl. Default: from the file name.")]
DelimiterOpt = Annotated[str | None, typer.Option("--delimiter", help="CSV delimiter. Default: sniffed (, ; TAB |).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Do everything but the network.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="With --dry-run: write each request body to DIR as .json.")]
ReportOpt = Annotated[Path | None, typer.Option("--report-json", help="Write the report as JSON to PATH.")]
RejectsOpt = Annotated[Path | None, typer.Option("--rejects", help="Write rejected and duplicate rows to PATH (CSV).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or hints on stderr.")]
ConcurrencyOpt = Annotated[
    int | None, typer.Option("--concurrency", min=1, max=32, help="Requests in flight. Default: the connector's.")
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Journal and locks. Default: $CANOPYCLI_STATE_DIR, else the user state folder."),
]
AllowPartialOpt = Annotated[
    bool, typer.Option("--allow-partial", help="Send what today's request budget allows; the rest waits for retry.")
]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="If another push of the segment runs, wait for it (else exit 5).")
]


ListingFormatOpt = Annotated[
    str,
    typer.Option(
        "--format", help="table (for people), tsv or json (for scripts: raw values, one row per line / a JSON array)."
    ),
]


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


@contextmanager
def _signals(cancel: Cancel) -> Iterator[None]:
    """Ctrl-C / SIGTERM: stop taking batches, let in-flight ones finish, record, exit 130 / 143."""

    def on_signal(signum: int, frame: object) -> None:
        cancel.set(STOP_INTERRUPTED if signum == signal.SIGINT else STOP_TERMINATED)
        say("Stopping: finishing the requests in flight and recording the run (Ctrl-C again to abort at once).")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _resolved(config: Path | None, segment: str | None) -> Resolved:
    path = config_path(config)
    return resolve(load_config(path), segment, str(path))


class _ProgressView:
    """A rich progress line on stderr, only when stderr is a terminal and not --quiet."""

    def __init__(self, quiet: bool, label: str) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: Any = None
        self.label = label

    def __enter__(self) -> _ProgressView:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=_stderr(),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None)
        return self

    def __call__(self, report: Report) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task,
                description=f"{self.label}: {report.rows_read:,} rows read, {len(report.batches):,} batches done, "
                f"{report.profiles_delivered:,} profiles delivered",
            )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _finish(
    report: Report,
    report_json: Path | None,
    quiet: bool,
    rejects: Path | None,
    after: tuple[str, ...] = (),
    where_rejects: str | None = None,
) -> None:
    def show(out: Console) -> None:
        report.render(out)
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
        kept = f" (the rejected lines are in {rejects})" if rejects else ""
        if not rejects and report.command != "retry":
            kept = " (write the rejected lines with --rejects FILE)"
        say(f"Error: {report.damage}{kept}.")
        waiting = report.profiles_failed + report.profiles_not_sent - report.superseded
        if waiting > 0 and report.run_id and not report.dry_run and report.exit_code == ExitCode.USAGE:
            say(
                f"{waiting:,} profiles read before it were not delivered; send them with: canopycli retry {report.run_id}"
            )
    code = report.exit_code
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def emit(show: Callable[[Console], object], run_id: str | None = None, sent: bool = False) -> None:
    """Write results to stdout. A reader that went away (``| head``) is not an error; a full device is."""
    try:
        show(_stdout())
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except OSError as e:
        _silence_stdout()
        where = f"; the run itself is recorded: canopycli runs show {run_id}" if run_id else ""
        err = OutputError(
            f"cannot write to stdout: {reason(e)}{where}", hint="Free some space, or send stdout elsewhere."
        )
        if sent:  # the data went out; only showing the result failed
            err.exit_code = ExitCode.FAILED
        raise err from None


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that is not a second error.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (tests)
        pass
    finally:
        os.close(devnull)


def _hints(report: Report, rejects: Path | None, where: str | None = None) -> None:
    bad = report.rows_rejected + report.rows_duplicate
    if bad:
        for line, reason_ in report.reject_samples:
            say(f"  line {line}: {reason_}")
        more = bad - len(report.reject_samples)
        where = where or (f"all of them are in {rejects}" if rejects else "write them all with --rejects rejects.csv")
        say(f"{bad:,} row(s) not sent as rejected or duplicate{f' ({more:,} more)' if more > 0 else ''}; {where}.")
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


@app.command()
@handle_errors
def push(
    file: Annotated[str, typer.Argument(metavar="FILE", help="CSV or JSONL file (optionally .gz); - reads stdin.")],
    config: ConfigOpt = None,
    segment: SegmentOpt = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Status of every row, for files without a status column: NEW, MODIFIED or REMOVED. Default: NEW.",
        ),
    ] = None,
    format: FormatOpt = None,  # noqa: A002
    delimiter: DelimiterOpt = None,
    dry_run: DryRunOpt = False,
    out: OutOpt = None,
    report_json: ReportOpt = None,
    rejects: RejectsOpt = None,
    quiet: QuietOpt = False,
    concurrency: ConcurrencyOpt = None,
    state_dir_: StateDirOpt = None,
    allow_partial: AllowPartialOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Validate, hash and batch a segment file, and POST it to the webhook (journaled, resumable)."""
    opts = PushOptions(
        file, format, delimiter, status, dry_run, out, rejects, concurrency, allow_partial, wait, state_dir_
    )
    _run(config, segment, opts, None, report_json, quiet)


def _run(
    config: Path | None,
    segment: str | None,
    opts: PushOptions,
    sync: SyncOptions | None,
    report_json: Path | None,
    quiet: bool,
) -> None:
    """push and sync: one implementation, with progress, signals, the run id and the report."""
    _check_outputs(report_json, opts.rejects, opts.out_dir if opts.dry_run else None)
    resolved = _resolved(config, segment)
    cancel = Cancel()
    label = f"{'sync' if sync else 'push'} {resolved.segment_name}"
    with _ProgressView(quiet, label) as progress, _signals(cancel):
        report = run_push(resolved, opts, sync=sync, progress=progress, cancel=cancel)
    if report.run_id and not quiet:
        say(f"run {report.run_id}")
    _finish(report, report_json, quiet, opts.rejects)


def _check_outputs(report_json: Path | None, rejects: Path | None = None, out: Path | None = None) -> None:
    """Every output path can be written: checked before anything is read or sent."""
    check_file(report_json, "--report-json")  # - : the report as JSON on stdout, instead of the table
    check_file(rejects, "--rejects", stdout_ok=False)
    check_dir(out, "--out")


def _share(value: str) -> float:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*", value)
    if not m or not 0 <= float(m.group(1)) <= 100:
        raise UsageError(f"--max-remove takes a percentage from 0 to 100 (like 50 or 50%), got {value!r}")
    return float(m.group(1)) / 100


@app.command()
@handle_errors
def sync(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="The full current membership of the segment: CSV or JSONL (optionally .gz); - reads stdin.",
        ),
    ],
    config: ConfigOpt = None,
    segment: SegmentOpt = None,
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
    format: FormatOpt = None,  # noqa: A002
    delimiter: DelimiterOpt = None,
    dry_run: DryRunOpt = False,
    out: OutOpt = None,
    report_json: ReportOpt = None,
    rejects: RejectsOpt = None,
    quiet: QuietOpt = False,
    concurrency: ConcurrencyOpt = None,
    state_dir_: StateDirOpt = None,
    allow_partial: AllowPartialOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Send only what changed since the last acknowledged sync: NEW, MODIFIED and REMOVED profiles."""
    opts = PushOptions(
        file, format, delimiter, None, dry_run, out, rejects, concurrency, allow_partial, wait, state_dir_
    )
    _run(config, segment, opts, SyncOptions(full=full, max_remove=_share(max_remove), force=force), report_json, quiet)


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
    _check_outputs(report_json)
    path = config_path(config)

    def resolved_for(run: RunRow) -> Resolved:
        cfg = load_config(path)
        if run.connector not in cfg.connectors:
            raise StateError(
                f"run {run.id} used connector {run.connector!r}, which {path} does not define",
                hint="Retry with the config the run used (--config).",
            )
        seg = Segment.model_validate(run.settings["segment"])
        return Resolved(
            config_path=str(path),
            connector_name=run.connector,
            connector=cfg.connectors[run.connector],
            segment_key=run.segment,
            segment=seg,
        )

    opts = PushOptions("-", concurrency=concurrency, allow_partial=allow_partial, wait=wait, state_dir=state_dir_)
    cancel = Cancel()
    with _ProgressView(quiet, "retry") as progress, _signals(cancel):
        report = run_retry(state_dir_, run_id, resolved_for, opts, progress=progress, cancel=cancel)
    _finish(report, report_json, quiet, None)


runs_app = typer.Typer(help="The run journal: list runs, show one, prune old ones.", no_args_is_help=False)
app.add_typer(runs_app, name="runs")


state_app = typer.Typer(help="Sync baselines: the last acknowledged state of each segment.", no_args_is_help=True)
app.add_typer(state_app, name="state")


@state_app.command("show")
@handle_errors
def state_show(state_dir_: StateDirOpt = None, fmt: ListingFormatOpt = "table") -> None:
    """Every sync baseline: connector, segment, profiles, last sync run."""
    with Store(state_dir(state_dir_)) as journal:
        scopes = journal.baselines.scopes()
        title = f"sync baselines in {journal.path}"
    columns = [
        ("connector", "connector"),
        ("segment", "segment"),
        ("identifier", "identifier"),
        ("profiles", "profiles"),
        ("updated", "updated (UTC)"),
        ("last_run", "last run"),
    ]
    show_listing(title, columns, [{k: sc[k] for k, _ in columns} for sc in scopes], fmt, "no sync baselines yet")


@state_app.command("export")
@handle_errors
def state_export(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="Where to write it (JSON Lines; .gz compresses; - is stdout).")
    ],
    config: ConfigOpt = None,
    segment: SegmentOpt = None,
    state_dir_: StateDirOpt = None,
) -> None:
    """Write a segment's baseline to a portable file (e.g. a CI artifact)."""
    name = str(file)
    out = ExportFile(name, sys.stdout.buffer)  # checked before anything else is done
    try:
        r = _resolved(config, segment)
        here = Origin.of(r)
        with Store(state_dir(state_dir_)) as journal:
            header = export_baseline(journal.baselines, scope_of(r.connector_name, r.segment_key), here, out)
        out.commit()
    finally:
        out.discard()
    for f, label in (("endpoint", "endpoint"), ("identifier", "identifier"), ("segment_name", "segmentName")):
        if header[f] != getattr(here, f):
            say(
                f"Warning: this baseline was built with {label} {header[f]}, but the config now says "
                f"{getattr(here, f)}; the export records what the baseline was built with."
            )
    where = "stdout" if name == "-" else name
    done = f"exported {header['profiles']:,} profiles of {r.segment_name} to {where}"
    typer.echo(done, err=out.stream)  # not into the data, when that goes to stdout or a device


@state_app.command("import")
@handle_errors
def state_import(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A file made by `canopycli state export`; - reads stdin.")
    ],
    config: ConfigOpt = None,
    segment: SegmentOpt = None,
    state_dir_: StateDirOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Load a baseline exported for another connector, segment or endpoint (never other ids)."
        ),
    ] = False,
) -> None:
    """Replace a segment's baseline with an exported one (refused if it was exported for another segment)."""
    r = _resolved(config, segment)
    root = state_dir(state_dir_)
    scope = scope_of(r.connector_name, r.segment_key)
    here = Origin.of(r)
    source = sys.stdin.buffer if str(file) == "-" else file
    with SegmentLock(root, r.connector_name, r.segment_key).acquire(note="state import"), Store(root) as journal:
        n, _, unchecked = import_baseline(journal.baselines, scope, here, source, force=force)
        journal.baselines.touch(
            scope,
            r.connector_name,
            r.segment_key,
            r.connector.identifier,
            None,
            endpoint=here.endpoint,
            segment_name=here.segment_name,
        )
    if unchecked:
        say(
            f"Warning: {file} was made by an older canopycli and does not record its {' or '.join(unchecked)}, "
            "so that could not be checked."
        )
    typer.echo(f"imported {n:,} profiles into the baseline of {r.segment_name}")


@state_app.command("reset")
@handle_errors
def state_reset(
    config: ConfigOpt = None,
    segment: SegmentOpt = None,
    state_dir_: StateDirOpt = None,
) -> None:
    """Forget a segment's baseline: the next sync sends the whole snapshot as NEW."""
    r = _resolved(config, segment)
    root = state_dir(state_dir_)
    scope = scope_of(r.connector_name, r.segment_key)
    with SegmentLock(root, r.connector_name, r.segment_key).acquire(note="state reset"), Store(root) as journal:
        n = journal.baselines.size(scope)
        journal.baselines.replace(scope, iter(()))
    typer.echo(f"forgot {n:,} profiles of {r.segment_name}; the next sync sends the whole snapshot as NEW")


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
    columns = [
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
    show_listing(title, columns, records, fmt, "no runs yet")


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
    out = _stdout()
    out.print(f"run {run.id}: {run.command} of {run.input} ({run.shown_status}, started {run.started})")
    report.render(out)
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
    older_than: Annotated[str, typer.Option("--older-than", help="Age like 30d, 12h or 90m.")] = "30d",
    state_dir_: StateDirOpt = None,
) -> None:
    """Forget runs (and their stored batches) older than --older-than."""
    m = re.fullmatch(r"([0-9]{1,9})([dhm])", older_than.strip())  # ASCII digits: \d takes any script's
    if not m:
        raise UsageError(f"--older-than takes a number and d, h or m (like 30d), got {older_than!r}")
    n, unit = int(m.group(1)), m.group(2)
    age = dt.timedelta(days=n) if unit == "d" else dt.timedelta(hours=n) if unit == "h" else dt.timedelta(minutes=n)
    try:
        before = dt.datetime.now(dt.UTC) - age
    except OverflowError:
        raise UsageError(f"--older-than {older_than} reaches back past the year 1; use an age like 3650d") from None
    with Store(state_dir(state_dir_)) as journal:
        removed = journal.runs.prune(before)
    typer.echo(f"pruned {removed} run(s) older than {older_than}")


@app.command("validate-config")
@handle_errors
def validate_config(
    path: Annotated[
        Path | None,
        typer.Argument(metavar="PATH", help="Config YAML. Default: --config, $CANOPYCLI_CONFIG or ./canopycli.yaml."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Check a config (schema, env vars, endpoints, references) without sending anything."""
    p = config_path(path or config)
    cfg = load_config(p)
    _render_config(cfg, str(p))


def _render_config(cfg: Config, shown: str) -> None:
    out = _stdout()
    out.print(f"{shown}: valid ({len(cfg.connectors)} connector(s), {len(cfg.segments)} segment(s))")
    for name, c in cfg.connectors.items():
        t = make_table(out, title=f"connector {name}", show_header=False)
        t.add_column("setting")
        t.add_column("value", overflow="fold")
        rows = [
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
        for k, v in rows:
            t.add_row(k, v)
        out.print(t)
    s = make_table(out, title="segments")
    for col in ("segment", "segmentName", "connector", "id_column", "status_column", "params"):
        s.add_column(col, overflow="fold")
    for key, seg in cfg.segments.items():
        params = "every other column" if seg.params is None else ", ".join(f"{p.name}:{p.type}" for p in seg.params)
        s.add_row(key, seg.name or key, seg.connector, seg.id_column, seg.status_column, params)
    out.print(s)


@app.command()
@handle_errors
def sandbox(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8042,
    token: Annotated[
        str | None, typer.Option(help="Token to accept. Default: $CANOPY_TOKEN, else a new random one.")
    ] = None,
    daily_limit: Annotated[int, typer.Option(help="Requests per day before 429 (0: no limit).")] = 50_000,
    fail_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of requests answered 500.")] = 0.0,
    fail_first: Annotated[int, typer.Option(min=0, help="Answer the first N requests with 500.")] = 0,
    fail_requests: Annotated[str, typer.Option(help="Answer these requests (1-based, like 2,5) with 500.")] = "",
    drop_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of requests whose connection is dropped.")
    ] = 0.0,
    slow_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of requests answered only after --slow-seconds.")
    ] = 0.0,
    slow_seconds: Annotated[float, typer.Option(min=0, help="Delay for --slow-rate requests.")] = 35.0,
    latency: Annotated[float, typer.Option(min=0, help="Seconds added to every request.")] = 0.0,
    record: Annotated[Path | None, typer.Option(help="Append accepted batches to this JSONL file.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the injected faults (reproducible runs).")] = None,
    max_requests: Annotated[int | None, typer.Option(min=1, help="Stop after this many requests.")] = None,
    duration: Annotated[float | None, typer.Option(min=0.1, help="Stop after this many seconds.")] = None,
) -> None:
    """Run a local emulator of the Deployteq webhook receiver on 127.0.0.1."""
    tok = token or os.environ.get("CANOPY_TOKEN") or secrets.token_urlsafe(24)
    sb = Sandbox(
        tok,
        port=port,
        daily_limit=daily_limit or None,
        fail_rate=fail_rate,
        fail_first=fail_first,
        fail_requests=_numbers(fail_requests),
        drop_rate=drop_rate,
        slow_rate=slow_rate,
        slow_seconds=slow_seconds,
        latency=latency,
        record=record,
        seed=seed,
        max_requests=max_requests,
    )
    typer.echo(f"endpoint: {sb.endpoint}")
    if not (token or os.environ.get("CANOPY_TOKEN")):
        typer.echo(f"token: {tok}  (sandbox only; export CANOPY_TOKEN={tok} and use token: ${{CANOPY_TOKEN}})")
    typer.echo(f"stats: {sb.base_url}/_sandbox/stats", err=True)
    sys.stdout.flush()
    sb.start()
    deadline = time.monotonic() + duration if duration else None
    try:
        while sb._thread is not None and sb._thread.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                break
            sb._thread.join(timeout=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
        typer.echo(f"sandbox stopped: {json.dumps(sb.snapshot())}", err=True)


def _numbers(text: str) -> set[int]:
    try:
        return {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise UsageError(f"--fail-requests takes request numbers like 2,5, got {text!r}") from None


DEMO_PARAMS = [
    Param(name="firstName", column="first_name"),
    Param(name="city"),
    Param(name="gender", type="gender"),
    Param(name="newsletter", type="optin"),
    Param(name="birthDate", column="birth_date", type="date"),
]


@app.command()
@handle_errors
def demo(
    quiet: QuietOpt = False,
    report_json: ReportOpt = None,
    keep: Annotated[
        bool,
        typer.Option("--keep", metavar="", help="Keep the demo's folder (what the sandbox received, rejected rows)."),
    ] = False,
) -> None:
    """Push the packaged sample segment to a built-in sandbox: no config, no credentials."""
    _check_outputs(report_json)
    workdir = Path(tempfile.mkdtemp(prefix="canopycli-demo-"))
    try:
        _demo(workdir, quiet, report_json, keep)
    finally:
        if not keep:  # the rejects file holds the sample's raw addresses: leave nothing behind
            shutil.rmtree(workdir, ignore_errors=True)


def _demo(workdir: Path, quiet: bool, report_json: Path | None, keep: bool) -> None:
    recording = workdir / "received.jsonl"
    rejects = workdir / "rejects.csv"
    token = secrets.token_urlsafe(24)
    if not quiet:
        fate = "kept (--keep)" if keep else "removed when the demo ends (--keep keeps it)"
        say(f"demo: working in {workdir}, {fate}")
    with Sandbox(token, port=0, record=recording) as sb:
        connector = Connector(endpoint=sb.endpoint, token=token, identifier="hashed_email")  # type: ignore[arg-type]
        seg = Segment(connector="sandbox", id_column="email", params=DEMO_PARAMS)
        resolved = Resolved(
            config_path="(demo)", connector_name="sandbox", connector=connector, segment_key="WelcomeFlow", segment=seg
        )
        sample = resources.files("canopycli") / "data" / "sample_segment.csv"
        with resources.as_file(sample) as sample_path:
            if not quiet:
                say(f"demo: pushing {sample_path.name} to a sandbox webhook at {sb.endpoint}")
            opts = PushOptions(str(sample_path), rejects=rejects, state_dir=workdir / "state")
            with _ProgressView(quiet, "demo") as progress:
                report = run_push(resolved, opts, progress=progress)
        stats = sb.snapshot()
    accepted = f"The sandbox accepted {stats['accepted']} batches ({stats['profiles']:,} profiles)"
    after: tuple[str, ...]
    if keep:
        after = (f"{accepted}, recorded in {recording}", f"Rejected rows, with line numbers and reasons: {rejects}")
    else:
        after = (f"{accepted}. Run `canopycli demo --keep` to keep what it received and the rejected rows.",)
    _finish(report, report_json, quiet, rejects if keep else None, after, None if keep else "--keep keeps them all")


def main() -> None:
    """Console-script entry point."""
    app()
