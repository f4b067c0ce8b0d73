"""The typer app and what every command shares: error handling, the consoles, signals, progress.

This is the one place exceptions become exit codes and one-line messages (``handle_errors``),
results go to stdout (``emit``) and diagnostics to stderr (``say``). The commands live in one
module per group (``push``, ``runs``, ``state``, ``config``, ``sandbox``); importing
``canopycli.cli`` registers them all.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .. import __version__
from ..errors import CanopyError, ExitCode, OutputError, scrub
from ..model import STOP_INTERRUPTED, STOP_TERMINATED
from ..outputs import reason
from ..pipeline.report import Report
from ..pipeline.run import Cancel

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


# --- the consoles: results on stdout, diagnostics on stderr ---------------------------------


class _Stdout(Console):
    def on_broken_pipe(self) -> None:
        # rich exits the process with 1 here; a reader that went away (``| head``) is no failure
        # of the run, so ``emit`` decides (the run's own exit code stands).
        raise BrokenPipeError


def stdout_console() -> Console:
    # Piped output (cron mail, CI logs) is not squeezed into 80 columns; tables drop their box
    # drawing when stdout is not a terminal (see ``render.make_table``).
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140
    return _Stdout(file=sys.stdout, highlight=False, soft_wrap=False, width=wide)


def stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


def say(message: str) -> None:
    """A diagnostic line on stderr, token-free."""
    typer.echo(scrub(message), err=True)


def emit(show: Callable[[Console], object], run_id: str | None = None, sent: bool = False) -> None:
    """Write results to stdout. A reader that went away (``| head``) is not an error; a full device is."""
    try:
        show(stdout_console())
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


# --- errors -> exit codes --------------------------------------------------------------------


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
        except BrokenPipeError:  # stdout's reader went away (`| head`): what it wanted, it has
            _silence_stdout()
            return None
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


# --- a run in the foreground: signals and the progress line ----------------------------------


@contextmanager
def signals(cancel: Cancel) -> Iterator[None]:
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


class ProgressView:
    """A rich progress line on stderr, only when stderr is a terminal and not --quiet."""

    def __init__(self, quiet: bool, label: str) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: Any = None
        self.label = label

    def __enter__(self) -> ProgressView:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=stderr_console(),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None)
        return self

    def __call__(self, report: Report) -> None:
        self.update(
            f"{self.label}: {report.rows_read:,} rows read, {len(report.batches):,} batches done, "
            f"{report.profiles_delivered:,} profiles delivered"
        )

    def update(self, description: str, completed: int | None = None, total: int | None = None) -> None:
        """The line's text; with ``total``, a bar of ``completed`` out of it."""
        if self._progress is not None:
            self._progress.update(self._task, description=description, completed=completed, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
