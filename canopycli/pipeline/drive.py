"""The machinery every run shares: journal each batch, send it, record its outcome, close the run.

It talks to a ``Stage`` (``stages.py``) and never asks which one it has: what an acknowledgement
does besides (sync's baseline moves), whether a cancel stops reading, and which counts the run
records are the stage's. Each batch is journaled (pending) before it may be sent, with how much of
the input had been read (so ``retry`` can check that prefix of the file), and its outcome is
committed as soon as it is known.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..config import Connector
from ..deployteq.deliver import Deliverer, Transport, deliver
from ..deployteq.quota import DailyQuota, retry_when
from ..deployteq.realtime import NOT_FOUND
from ..deployteq.webhook import WebhookTransport
from ..errors import CanopyError, StateError
from ..model import (
    DONE,
    FAILED,
    SENT,
    STOP_DAILY_LIMIT,
    STOP_DAMAGED_INPUT,
    STOP_INTERRUPTED,
    STOP_TERMINATED,
    Batch,
    Result,
    State,
)
from ..outputs import write_failed
from ..store import Store as Journal
from .read import Source
from .report import Report
from .stages import Stage


class Cancel:
    """Set from a signal handler: stop taking new batches, let in-flight ones finish."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.sender: Deliverer | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.sender is not None:
            self.sender.halt(reason)


ProgressHook = Callable[[Report], None]


@dataclass
class Wiring:
    """How requests go out: injectable for tests (``httpx.MockTransport``) and fake sleeps."""

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Run:
    """One run being driven: where it is journaled, what produces its batches, where they go."""

    journal: Journal
    run_id: str
    stage: Stage
    report: Report
    quota: DailyQuota
    connector: Connector
    source: Source | None = None  # what the stage reads, if anything (its read position is journaled)
    concurrency: int | None = None
    transport: Wiring = field(default_factory=Wiring)
    progress: ProgressHook | None = None
    cancel: Cancel = field(default_factory=Cancel)
    resumed: bool = False  # retry: the run has sent before (an error then says so)
    far: Transport[Any] | None = None  # the far side (``deployteq.far``); None: the connector's webhook
    writes: str = "a file"  # what a failed write mid-run was writing, for its message


def drive(run: Run) -> None:
    """Send the stage's batches and record every outcome; an error marks the run for ``retry``."""
    try:
        _deliver(run)
    except OSError as e:  # the rejects file or the disk, mid-run
        raise write_failed(e, run.writes).during_run(run.run_id, run.resumed or run.report.requests > 0) from e
    except CanopyError as e:
        raise e.during_run(run.run_id, run.resumed or run.report.requests > 0) from None


def _deliver(run: Run) -> None:
    stage, cancel, journal, quota, report = run.stage, run.cancel, run.journal, run.quota, run.report

    def until_cancelled(it: Iterable[Batch]) -> Iterator[Batch]:
        for b in it:
            if cancel.reason is not None and stage.stops_reading_on_cancel:
                return
            yield b

    def on_result(r: Result) -> None:
        state = State.of(r.outcome)
        effects = stage.on_ack(r.batch) if state == SENT else None
        journal.runs.record(
            run.run_id, r.batch.index, state, r.status_code, r.attempts, r.error, r.detail,
            body=r.batch.body, effects=effects,
        )  # fmt: skip
        if r.outcome == FAILED:
            stage.on_failure(r.batch, r.error, r.detail)
        quota.save()
        report.add_result(r)
        if run.progress is not None:
            run.progress(report)

    conn = run.connector
    concurrency = run.concurrency or conn.concurrency
    far = run.far or WebhookTransport(conn, transport=run.transport.transport, concurrency=concurrency)
    sender = Deliverer(
        far,
        concurrency=concurrency,
        retries=conn.retries,
        backoff=conn.backoff,
        sleep=run.transport.sleep,
        before_request=quota.take,
        on_count=quota.observe,
    )
    cancel.sender = sender
    completed = False
    try:
        with sender:
            deliver(until_cancelled(journaled(run, stage.batches())), sender, on_result)
        completed = cancel.reason is None or not stage.stops_reading_on_cancel
    finally:
        quota.save()
        report.calls = far.calls
        report.stop_reason = cancel.reason or sender.stop_reason
        if report.stop_reason == STOP_DAILY_LIMIT:
            report.retry_hint = (sender.retry_hint + "; " if sender.retry_hint else "") + f"retry {retry_when()}"
        counts = stage.counts(completed)
        if counts is not None:
            whole = run.source.origin()["input_sha256"] if run.source is not None else None
            journal.runs.spooled(run.run_id, counts, completed, whole)
        cancel.sender = None


def journaled(run: Run, stream: Iterator[Batch]) -> Iterator[Batch]:
    """Write each new batch to the journal (pending) before it may be sent.

    A batch the run journaled before (retry) is checked to have come out identical, and is sent
    again unless it was acknowledged."""
    journal, run_id = run.journal, run.run_id
    known = journal.runs.states(run_id)
    for b in stream:
        if b.index not in known:
            journal.runs.add_batch(run_id, b, _read_so_far(run.source))
            yield b
            continue
        uuid, state = known[b.index]
        if uuid != b.uuid:
            raise StateError(
                f"run {run_id}: batch {b.index + 1} came out different when the input was read again",
                hint="The input or its mapping changed since the run; push the file as a new run instead.",
            )
        if state not in DONE:
            yield b


def _read_so_far(source: Source | None) -> tuple[int, str, int | None] | None:
    if source is None:
        return None
    o = source.origin()
    return None if o["read_sha256"] is None else (o["read_bytes"], o["read_sha256"], o["size"])


def finish(journal: Journal, run_id: str, live: Report) -> Report:
    """Close the run in the journal and report it from there (so retry reports the whole run)."""
    run = journal.runs.get(run_id)
    report = Report.from_journal(run, journal.runs.batches(run_id), live.command)
    report.stop_reason, report.retry_hint, report.reject_samples = (
        live.stop_reason,
        live.retry_hint,
        live.reject_samples,
    )
    report.damage = live.damage
    if run.settings.get("api") == "soap":  # per-profile delivery: calls and faults too
        report.calls = live.calls or 0
        report.per_profile(NOT_FOUND)
    if report.damage is None and run.stop_reason == STOP_DAMAGED_INPUT:  # a retry of a run that read damaged input
        report.damage = (
            f"{run.input}: run {run.id} stopped reading its input where it was damaged; the lines from there on "
            "were rejected, not sent (see the message and --rejects of the push). Fix the input and push them again"
        )
    report.finish()
    status = live.stop_reason if live.stop_reason in (STOP_INTERRUPTED, STOP_TERMINATED) else "finished"
    stop = live.stop_reason or (STOP_DAMAGED_INPUT if report.damage is not None else None)
    journal.runs.finish(run_id, status, int(report.exit_code), stop, report.finished)
    return report
