"""Every error canopycli raises on purpose, and the exit codes they map to.

    CanopyError                 base; carries ``exit_code`` and an optional ``hint``
     ├── UsageError             exit 2: bad options, nothing sent
     │    ├── ConfigError       exit 2: the YAML config is invalid (lists every problem)
     │    └── InputError        exit 2: the input file is missing, binary or lacks a column
     ├── StateError             exit 2: the state folder or journal cannot be used, or a run is unknown
     │    └── DiskFullError     the disk holding the state folder (or the temporary folder) is full
     ├── OutputError            exit 2: an output path (--report-json, --rejects, --out, ...) cannot be written
     ├── QuotaError             exit 3: today's request budget cannot cover the push
     ├── CredentialsError       exit 4: Deployteq rejected the token outside a run (the SOAP campaign list)
     ├── ServiceError           exit 1: a call outside a run failed (a timeout, an unreadable SOAP reply)
     ├── LockedError            exit 5: another push of the same connector+segment is running
     └── MassRemovalError       exit 6: a sync would remove more of a segment than --max-remove

Delivery outcomes (a batch that failed, a 429, a 401) are not exceptions: they are
recorded in the report, and the exit code is derived from it (``Report.exit_code``).
Only ``cli.py`` turns these into process exit codes and messages.

An error raised after a run has started (a full disk, a journal that cannot be written)
carries ``run_id`` and ``sent`` (whether any batch had been handed to the webhook): then the
exit code is ``FAILED`` and the message names ``canopycli retry RUN_ID``, because part of the
data may already have arrived and pushing it again would spend requests twice.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from enum import IntEnum


class ExitCode(IntEnum):
    """The process exit codes: a public contract (cron jobs and CI scripts test them)."""

    OK = 0  # everything valid was delivered (or the dry run succeeded)
    FAILED = 1  # some batches failed
    USAGE = 2  # usage, config or unreadable input: nothing sent
    DAILY_LIMIT = 3  # daily limit reached: some profiles not sent
    CREDENTIALS = 4  # the webhook rejected the credentials
    LOCKED = 5  # another push of the same connector+segment is running
    MASS_REMOVAL = 6  # a sync would remove more than --max-remove of the segment: nothing sent
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    TERMINATED = 143  # SIGTERM


class CanopyError(Exception):
    """Base of every deliberate canopycli error."""

    exit_code: ExitCode = ExitCode.USAGE

    run_id: str | None = None  # set when the error interrupted a journaled run
    sent: bool = False  # ... and some of its batches had been sent already

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def during_run(self, run_id: str | None, sent: bool) -> CanopyError:
        """Mark the error as having stopped ``run_id`` (the CLI then points at ``retry``)."""
        if run_id and self.run_id is None:
            self.run_id, self.sent = run_id, sent
            if sent:
                self.exit_code = ExitCode.FAILED
        return self

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class UsageError(CanopyError):
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The config file is invalid; ``problems`` holds one ``location: message`` per issue."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"{path}: {len(problems)} config {noun}:\n{lines}",
            hint="Fix the config and check it with: canopycli validate-config " + path,
        )


class InputError(UsageError):
    pass


class StateError(CanopyError):
    exit_code = ExitCode.USAGE


class DiskFullError(StateError):
    """SQLite's "database or disk is full", or ENOSPC/EDQUOT from the OS."""


class OutputError(CanopyError):
    """An output file or folder cannot be written (checked before anything is sent)."""

    exit_code = ExitCode.USAGE


class QuotaError(CanopyError):
    exit_code = ExitCode.DAILY_LIMIT


class CredentialsError(CanopyError):
    """Deployteq rejected the credentials of a call made outside a run (a run's 401 is an outcome)."""

    exit_code = ExitCode.CREDENTIALS


class ServiceError(CanopyError):
    """A call made outside a run failed for a reason other than the credentials."""

    exit_code = ExitCode.FAILED


class LockedError(CanopyError):
    exit_code = ExitCode.LOCKED


class MassRemovalError(CanopyError):
    exit_code = ExitCode.MASS_REMOVAL


# Secrets seen in this process (tokens from configs). Anything printed by the CLI passes
# through ``scrub``, a last line of defence behind code that never formats a token.
_SECRETS: set[str] = set()


def register_secret(secret: str) -> None:
    if secret and len(secret) >= 4:
        _SECRETS.add(secret)


def scrub(text: str) -> str:
    for s in _SECRETS:
        text = text.replace(s, "***")
    return text


# --- read errors: the same words for the same damage, wherever an input is read ---------------

READ_ERRORS = (OSError, EOFError, zlib.error)
DAMAGED = "The input looks truncated or corrupt: export or download it again (`gzip -t FILE` checks a .gz)."


def read_problem(e: BaseException) -> str:
    """What a read error means, in words (never the data)."""
    if isinstance(e, EOFError):
        return "the compressed data ends too early"
    if isinstance(e, (gzip.BadGzipFile, zlib.error)):
        return "the compressed data is corrupt"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__


def checked_lines(fh: Iterable[bytes], name: str) -> Iterator[bytes]:
    """The lines of an opened (maybe gzipped) file; a read error (a truncated or corrupt .gz) is an
    ``InputError`` naming the file, not a crash."""
    n = 0
    try:
        for n, line in enumerate(fh, 1):  # noqa: B007
            yield line
    except READ_ERRORS as e:
        raise InputError(f"{name}: cannot be read after line {n}: {read_problem(e)}", hint=DAMAGED) from None
