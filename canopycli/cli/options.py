"""Shared options, each defined once: the typer annotations, and decorators that share them.

``push`` and ``sync`` take the same fourteen options. Rather than repeat them in both signatures,
``@run_options`` adds them to the command's signature (typer reads ``inspect.signature``) and
hands the command one ``RunOptions`` with their values; ``@segment_options`` does the same for
the state commands (``SegmentOptions``).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.models import ArgumentInfo

from ..config import Resolved, config_path, load_config, resolve
from ..errors import UsageError
from ..pipeline.run import PushOptions

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config YAML. Default: $CANOPYCLI_CONFIG, else ./canopycli.yaml."),
]
SegmentOpt = Annotated[
    str | None, typer.Option("--segment", "-s", help="Segment key in the config (needed if it has several).")
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="csv or jsonl; push also takes engine or copernica (JSON Lines of custom-connector payloads or "
        "Copernica callbacks). Default: from the file name.",
    ),
]
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
NoSuppressOpt = Annotated[
    bool, typer.Option("--no-suppress", help="Send to profiles the segment's suppress: would hold back, this once.")
]
OlderThanOpt = Annotated[str, typer.Option("--older-than", help="Age like 180d, 12h or 90m.")]


def cutoff(older_than: str) -> dt.datetime:
    """``--older-than``: now (UTC) minus the age."""
    m = re.fullmatch(r"([0-9]{1,9})([dhm])", older_than.strip())  # ASCII digits: \d takes any script's
    if not m:
        raise UsageError(f"--older-than takes a number and d, h or m (like 30d), got {older_than!r}")
    n, unit = int(m.group(1)), m.group(2)
    age = dt.timedelta(days=n) if unit == "d" else dt.timedelta(hours=n) if unit == "h" else dt.timedelta(minutes=n)
    try:
        return dt.datetime.now(dt.UTC) - age
    except OverflowError:
        raise UsageError(f"--older-than {older_than} reaches back past the year 1; use an age like 3650d") from None


ListingFormatOpt = Annotated[
    str,
    typer.Option(
        "--format", help="table (for people), tsv or json (for scripts: raw values, one row per line / a JSON array)."
    ),
]


@dataclass(frozen=True)
class RunOptions:
    """The options push and sync share, as given on the command line."""

    config: Path | None = None
    segment: str | None = None
    format: str | None = None
    delimiter: str | None = None
    dry_run: bool = False
    out: Path | None = None
    report_json: Path | None = None
    rejects: Path | None = None
    quiet: bool = False
    concurrency: int | None = None
    state_dir: Path | None = None
    allow_partial: bool = False
    wait: bool = False
    no_suppress: bool = False

    def push_options(self, file: str, status: str | None = None) -> PushOptions:
        """What the library's run needs: the input and how to read, send and record it."""
        return PushOptions(
            input=file,
            format=self.format,
            delimiter=self.delimiter,
            status=status,
            dry_run=self.dry_run,
            out_dir=self.out,
            rejects=self.rejects,
            concurrency=self.concurrency,
            allow_partial=self.allow_partial,
            wait=self.wait,
            state_dir=self.state_dir,
            suppress=not self.no_suppress,
        )


@dataclass(frozen=True)
class SegmentOptions:
    """The options of the commands that act on one segment's baseline (state export, import, reset)."""

    config: Path | None = None
    segment: str | None = None
    state_dir: Path | None = None

    def resolved(self) -> Resolved:
        return resolved(self.config, self.segment)


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


_CONFIG = _option("config", ConfigOpt, None)
_SEGMENT = _option("segment", SegmentOpt, None)
_STATE_DIR = _option("state_dir", StateDirOpt, None)

# In --help, --config and --segment come right after the command's arguments, then the command's
# own options, then the rest: the order the commands have always shown.
_RUN_LEADING = (_CONFIG, _SEGMENT)
_RUN_TRAILING = (
    _option("format", FormatOpt, None),
    _option("delimiter", DelimiterOpt, None),
    _option("dry_run", DryRunOpt, False),
    _option("out", OutOpt, None),
    _option("report_json", ReportOpt, None),
    _option("rejects", RejectsOpt, None),
    _option("quiet", QuietOpt, False),
    _option("concurrency", ConcurrencyOpt, None),
    _STATE_DIR,
    _option("allow_partial", AllowPartialOpt, False),
    _option("wait", WaitOpt, False),
    _option("no_suppress", NoSuppressOpt, False),
)
SHARED = _RUN_LEADING + _RUN_TRAILING


def _is_argument(p: inspect.Parameter) -> bool:
    return any(isinstance(m, ArgumentInfo) for m in typing.get_args(p.annotation)[1:])


def _shared_options(
    make: Callable[..., Any], leading: tuple[inspect.Parameter, ...], trailing: tuple[inspect.Parameter, ...]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator that gives a command shared options: the command declares its arguments, its own
    options and a keyword-only ``options``; the command typer sees takes ``leading`` after its
    arguments and ``trailing`` after its own options, and ``options`` is ``make(**their values)``."""
    shared = leading + trailing
    names = {p.name for p in shared}

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "options"]
        if any(p.name in names for p in own):
            raise TypeError(f"{fn.__name__} declares a shared option itself")
        arguments = [p for p in own if _is_argument(p)]
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if not _is_argument(p)]
        signature = inspect.Signature([*arguments, *leading, *rest, *trailing], return_annotation=None)

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> None:
            values = {p.name: kwargs.pop(p.name, p.default) for p in shared}
            fn(*args, options=make(**values), **kwargs)

        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return command

    return decorate


run_options = _shared_options(RunOptions, _RUN_LEADING, _RUN_TRAILING)
"""push and sync: the fourteen options they share, as one ``options: RunOptions``."""

segment_options = _shared_options(SegmentOptions, (_CONFIG, _SEGMENT, _STATE_DIR), ())
"""state export, import and reset: --config, --segment and --state-dir, as one ``options: SegmentOptions``."""


def resolved(config: Path | None, segment: str | None) -> Resolved:
    """The segment named by --segment (or the only one) of the config named by --config."""
    path = config_path(config)
    return resolve(load_config(path), segment, str(path))
