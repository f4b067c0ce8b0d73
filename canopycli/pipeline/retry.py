"""Retry: finish a run from the journal.

Unacknowledged batches are resent from the journal (same body, same uuid). A push that died
before it had read all of its input, or with batches in flight (a push stores a batch's body only
once it ends unacknowledged), is rebuilt from its input: after checking that the file is the one
the run read (its SHA-256, or the SHA-256 of the part it had read), the batches it journaled are
checked to come out identical and the ones it never reached are added. A sync is never diffed
again: its unsent rest is found by the next sync.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..config import Resolved, Segment, redact_url
from ..deployteq.far import far_side
from ..deployteq.quota import DailyQuota
from ..errors import StateError
from ..store import Store as Journal
from ..store.locks import SegmentLock, state_dir
from ..store.runs import RunRow
from . import diff
from .drive import Cancel, ProgressHook, Run, Wiring, drive, finish
from .payloads import adapt_payloads, reading_format
from .queued import QueueResend
from .rawinput import file_sha256
from .read import Source, open_source
from .report import Report
from .stages import ChangeStage, Resend, Stage
from .suppress import Held

# How a run of each command is resumed (a push, unless its command says otherwise).
Resume = Callable[[Journal, RunRow, Report, contextlib.ExitStack], tuple[Stage, Source | None]]


def run_retry(
    journal_root: Path | None,
    run_id: str | None,
    resolved_for: Callable[[RunRow], Resolved],
    opts: RetryOptions,
    *,
    transport: Wiring | None = None,
    progress: ProgressHook | None = None,
    cancel: Cancel | None = None,
) -> Report:
    """Resend a run's unacknowledged batches (and finish reading its input if it died early)."""
    root = state_dir(journal_root)
    with Journal(root) as journal:
        run = journal.runs.get(run_id) if run_id else journal.runs.last()
    resolved = resolved_for(run)
    conn = resolved.connector
    if conn.endpoint != run.endpoint:
        raise StateError(
            f"run {run.id} was sent to {redact_url(run.endpoint)}, "
            f"but connector {run.connector!r} now points at {redact_url(conn.endpoint)}",
            hint="Retry with the config the run used (--config), so the batches reach the same webhook.",
        )
    lock = SegmentLock(root, run.connector, run.segment)
    with lock.acquire(opts.wait, note="retry"), Journal(root) as journal, contextlib.ExitStack() as opened:
        run = journal.runs.get(run.id)
        journal.runs.claim(run.id)
        report = Report("retry", run.segment_name, run.connector, run.input or "-", run_id=run.id)
        resume = _RESUMES.get(run.command, _resume_push)
        stage, source = resume(journal, run, report, opened)
        opened.callback(stage.close)
        stage.prepare()
        quota = DailyQuota(journal.requests, conn.endpoint, conn.daily_limit)
        quota.check(stage.requests_needed(), opts.allow_partial)
        wiring = transport or Wiring()
        far = far_side(resolved, journal.path, wiring.transport, opts.concurrency or conn.concurrency)
        opened.callback(far.close)
        drive(
            Run(
                journal, run.id, stage, report, quota, conn, source, opts.concurrency,
                wiring, progress, cancel or Cancel(), resumed=True, far=far,
            )
        )  # fmt: skip
        stage.finish()
        return finish(journal, run.id, report)


class RetryOptions(Protocol):
    """What ``retry`` takes of the push options (``PushOptions`` has these)."""

    concurrency: int | None
    allow_partial: bool
    wait: bool


def _resume_push(
    journal: Journal, run: RunRow, report: Report, opened: contextlib.ExitStack
) -> tuple[Stage, Source | None]:
    # identifier: email keeps no address in the journal: its profiles come from the input again
    keeps_bodies = run.settings.get("identifier") != "email"
    if keeps_bodies and run.spool_complete and not journal.runs.bodiless(run.id):
        return Resend(journal, run.id), None
    # killed before it had read everything, or with batches in flight: rebuild from the input
    source = reopen(journal, run)
    opened.callback(source.close)
    # the input is read again: the rows the run held back are held back again, or its batches
    # would come out different (journaled() refuses that)
    held = Held.for_run(journal, run.settings)
    return ChangeStage(run.settings, run.endpoint, source, report, None, resumed=True, held=held), source


def _resume_sync(
    journal: Journal, run: RunRow, report: Report, opened: contextlib.ExitStack
) -> tuple[Stage, Source | None]:
    return diff.resend(journal, run, report), None


def _resume_relay(
    journal: Journal, run: RunRow, report: Report, opened: contextlib.ExitStack
) -> tuple[Stage, Source | None]:
    """A relay flush: its unacknowledged batches, rebuilt from their rows in the queue."""
    return QueueResend(journal, run.id), None


_RESUMES: dict[str, Resume] = {"sync": _resume_sync, "relay": _resume_relay}


def reopen(journal: Journal, run: RunRow) -> Source:
    """The input of a run that was stopped mid-way, checked to be the bytes it read: the whole
    file's SHA-256 if the run read it to the end (or was journaled by 1.0), else the SHA-256 of the
    part it had read when it journaled its last batch, and the file's size then."""
    what = f"run {run.id} was stopped before it had read or recorded all of its batches"
    if not run.input or run.input == "-":
        raise StateError(
            f"{what}, and it read stdin: the rest cannot be rebuilt",
            hint="Push the data again as a new run (batches already delivered keep their uuids).",
        )
    if not Path(run.input).exists():
        raise StateError(
            f"{what}; they are rebuilt from {run.input}, which is gone", hint="Restore the file to finish the run."
        )
    if not _same_input(journal, run, run.input):
        raise StateError(
            f"{what}; they are rebuilt from {run.input}, but the file has changed since",
            hint="Restore the original file to finish the run, or push the new file as a new run.",
        )
    s = run.settings
    source = open_source(run.input, reading_format(s["format"]), s["delimiter"])
    adapt_payloads(source, s, Segment.model_validate(s["segment"]))
    return source


def _same_input(journal: Journal, run: RunRow, path: str) -> bool:
    if run.input_sha256:
        return file_sha256(path)[0] == run.input_sha256
    read = journal.runs.read_prefix(run.id)
    if read is None:  # no batch was journaled: nothing was sent, there is nothing to compare
        return True
    length, digest, size = read
    if size is not None and Path(path).stat().st_size != size:
        return False
    return file_sha256(path, length) == (digest, length)
