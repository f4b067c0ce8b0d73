"""The flusher: one thread that sends each segment's queued events as journaled runs.

The flush rule, per segment: a batch leaves as soon as ``batch_size`` events wait (only full
batches then: a partial one waits for the clock), and everything waiting leaves once the oldest
waiting event is older than ``flush_interval`` (or on ``POST /v1/flush``, or ``--drain``). Before
new events, a segment's earlier batches that were not acknowledged are sent again, rebuilt from
their queue rows with their uuids, so a profile is never sent under two uuids and a later change
never overtakes an earlier one.

What Deployteq answers decides what happens next: 401 pauses the connector (``/healthz`` says
why; one probe a minute), a spent daily budget pauses it until the next UTC day, a permanent
refusal (another 4xx) fails the batch for good (its events are accounted as failed, in the
journal), anything else is tried again with a growing pause. Events keep queueing meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RelaySettings, Resolved
from ..deployteq.far import far_side
from ..deployteq.quota import DailyQuota, next_reset
from ..errors import CanopyError, LockedError, scrub
from ..model import STOP_CREDENTIALS, STOP_DAILY_LIMIT, State
from ..pipeline.diff import scope_of
from ..pipeline.drive import Cancel, Run, Wiring, drive, finish
from ..pipeline.queued import COMMAND, FlushStage, QueueResend, plan, relay_settings
from ..pipeline.report import Report
from ..pipeline.stages import Stage
from ..store import Store
from ..store.db import now as iso_now
from ..store.locks import SegmentLock
from .metrics import Metrics

log = logging.getLogger("canopycli.relay")

TAKE_BATCHES = 100  # one flush takes at most this many batches' worth of waiting events
PROBE_AFTER_401 = 60.0  # seconds between probes of a connector Deployteq refused
LOCK_BUSY_RETRY = 5.0
MAX_BACKOFF = 300.0
PERMANENT = frozenset({400, 404, 405, 409, 410, 411, 413, 414, 415, 422})  # sending again cannot help


@dataclass
class Segment:
    """What the flusher knows of one segment (read by ``status`` from other threads)."""

    key: str
    resolved: Resolved
    waiting: int = 0
    taken: int = 0
    oldest: float | None = None
    last_flush: str | None = None
    last_error: str | None = None
    retry_at: float = 0.0
    failures: int = 0
    forced: bool = False


@dataclass
class Pause:
    until: float
    reason: str


def _flush_at(s: Segment) -> int:
    """How many waiting events make a segment due: a full batch for the webhook, one for SOAP
    (real time: every event goes at once)."""
    conn = s.resolved.connector
    return 1 if conn.api == "soap" else conn.batch_size


class Flusher:
    def __init__(
        self,
        root: Path,
        config_path: str,
        resolved: Mapping[str, Resolved],
        settings: RelaySettings,
        metrics: Metrics,
        wiring: Wiring | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root, self.config_path, self.settings, self.metrics = root, config_path, settings, metrics
        self.wiring = wiring or Wiring()
        self.clock = clock
        self.segments = {k: Segment(k, r) for k, r in resolved.items()}
        self.pauses: dict[str, Pause] = {}  # by connector
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.drain = False
        self.cancel = Cancel()
        self.requests_today: dict[str, int] = {}  # by endpoint
        self.thread = threading.Thread(target=self._main, name="relay-flusher", daemon=True)
        self.store: Store | None = None
        self.crashed: str | None = None

    # -- what other threads call ------------------------------------------------------------

    def load(self, store: Store) -> None:
        """The queue as the last process left it (counts and ages), before anything is accepted."""
        stats = store.queue.stats()
        with self.lock:
            for key, (waiting, taken, oldest) in stats.items():
                if key in self.segments:
                    s = self.segments[key]
                    s.waiting, s.taken, s.oldest = waiting, taken, oldest
        for s in self.segments.values():
            self.metrics.set_queue(s.key, s.waiting + s.taken, self._age(s))
            conn = s.resolved.connector
            self.requests_today[conn.endpoint] = DailyQuota(store.requests, conn.endpoint, conn.daily_limit).used

    def committed(self, segment: str, made: int, at: float) -> None:
        """Intake committed ``made`` new waiting rows for ``segment`` (the rest merged)."""
        with self.lock:
            s = self.segments[segment]
            s.waiting += made
            if s.oldest is None and made:
                s.oldest = at
            full = s.waiting >= _flush_at(s)
        self.metrics.set_queue(segment, s.waiting + s.taken, self._age(s))
        if full:
            self.wake.set()

    def request_flush(self, segment: str | None) -> list[str]:
        keys = [segment] if segment is not None else sorted(self.segments)
        with self.lock:
            for k in keys:
                self.segments[k].forced = True
                self.segments[k].retry_at = 0.0
        self.wake.set()
        return keys

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self.lock:
            for s in self.segments.values():
                age = self._age(s)
                out[s.key] = {
                    "queued": s.waiting + s.taken,
                    "oldest_age_s": None if age is None else round(age, 3),
                    "last_flush": s.last_flush,
                    "last_error": s.last_error,
                    "requests_today": self.requests_today.get(s.resolved.connector.endpoint, 0),
                }
        return {"segments": out}

    def health(self) -> str | None:
        if self.crashed is not None:
            return self.crashed
        with self.lock:
            refused = [p.reason for p in self.pauses.values() if "401" in p.reason]
        return "; ".join(refused) or None

    def start(self) -> None:
        self.thread.start()

    def stop(self, drain: bool) -> None:
        """Stop after the current request (``drain``: after flushing everything that waits)."""
        self.drain = drain
        if not drain:
            self.cancel.set("terminated")
        self.stopping.set()
        self.wake.set()
        self.thread.join()

    # -- the thread -------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            with Store(self.root, "flusher") as store:
                self.store = store
                while not self.stopping.is_set():
                    self._cycle(store)
                    self.wake.wait(self._sleep_for())
                    self.wake.clear()
                if self.drain:
                    self._drain(store)
        except Exception as e:  # noqa: BLE001 - the service must say why it stopped flushing
            log.exception("the flusher stopped")
            self.crashed = f"the flusher stopped: {e.__class__.__name__}; restart the relay (queued events are kept)"

    def _drain(self, store: Store) -> None:
        for _ in range(10_000):  # bounded: each pass sends or fails something
            self.request_flush(None)
            self._cycle(store)
            with self.lock:
                left = [s for s in self.segments.values() if s.waiting or s.taken]
            if not left or all(self._paused(s) or s.retry_at > self.clock() for s in left):
                return

    def _sleep_for(self) -> float:
        t = self.clock()
        soon = 1.0
        with self.lock:
            for s in self.segments.values():
                if s.oldest is not None:
                    soon = min(soon, max(0.05, s.oldest + self.settings.flush_interval - t))
        return soon

    def _cycle(self, store: Store) -> None:
        for s in list(self.segments.values()):
            if self.cancel.reason is not None:
                return
            try:
                self._segment(store, s)
            except CanopyError as e:
                self._failed(s, e.message)
            self.metrics.set_queue(s.key, s.waiting + s.taken, self._age(s))

    def _segment(self, store: Store, s: Segment) -> None:
        t = self.clock()
        if self._paused(s) or (s.retry_at > t and not s.forced):
            return
        for run_id in store.queue.taken_runs(s.key):
            if not self._run(store, s, QueueResend(store, run_id), run_id):
                return
        with self.lock:
            interval_due = s.oldest is not None and t - s.oldest >= self.settings.flush_interval
            forced, s.forced = s.forced, False
            size = _flush_at(s)
            due = s.waiting > 0 and (forced or interval_due or s.waiting >= size)
        if not due:
            return
        rows = store.queue.waiting(s.key, size * TAKE_BATCHES)
        planned = plan(store, scope_of(s.resolved.connector_name, s.key), rows, s.resolved)
        if not (forced or interval_due):  # full batches only; the rest waits for the clock
            planned.send = planned.send[: len(planned.send) // size * size]
        if planned.echoes or planned.held:
            store.queue.drop([r.rowid for r in planned.echoes + planned.held])
            self.metrics.event(s.key, "suppressed", len(planned.echoes))
            self.metrics.event(s.key, "held", len(planned.held))
        if planned.send or planned.echoes or planned.held:
            report = Report(COMMAND, s.resolved.segment_name, s.resolved.connector_name, f"relay:{s.key}")
            self._run(store, s, FlushStage(store, s.resolved, planned, report), None, report)
        self._recount(store, s)

    def _run(self, store: Store, s: Segment, stage: Stage, run_id: str | None, report: Report | None = None) -> bool:
        """Drive one flush (or the resend of one); True when every batch was acknowledged."""
        r, conn = s.resolved, s.resolved.connector
        lock = SegmentLock(self.root, r.connector_name, s.key)
        try:
            lock.acquire(False, note="relay")
        except LockedError:
            self._failed(s, "another canopycli run holds this segment; flushing after it", LOCK_BUSY_RETRY)
            return False
        resumed = run_id is not None  # a resend: the run has sent before
        with lock:
            quota = DailyQuota(store.requests, conn.endpoint, conn.daily_limit)
            if quota.remaining() == 0:
                self._pause(s, next_reset().timestamp(), f"today's {conn.daily_limit:,} requests are spent")
                return False
            report = report or Report(COMMAND, r.segment_name, r.connector_name, f"relay:{s.key}")
            if run_id is None:
                run_id = store.runs.start(
                    command=COMMAND, config_path=self.config_path, connector=r.connector_name, segment=s.key,
                    segment_name=r.segment_name, endpoint=conn.endpoint, input=f"relay:{s.key}",
                    input_sha256=None, settings=relay_settings(r),
                )  # fmt: skip
                stage.begin(run_id)
            else:
                store.runs.claim(run_id)
            report.run_id = run_id
            far = far_side(r, store.path, self.wiring.transport, conn.concurrency)
            try:
                drive(
                    Run(
                        store,
                        run_id,
                        stage,
                        report,
                        quota,
                        conn,
                        None,
                        None,
                        self.wiring,
                        None,
                        self.cancel,
                        resumed,
                        far=far,
                    )
                )
            finally:
                far.close()
            stage.finish()
            done = finish(store, run_id, report)
            self.requests_today[conn.endpoint] = quota.used
            return self._outcome(store, s, run_id, done)

    def _outcome(self, store: Store, s: Segment, run_id: str, report: Report) -> bool:
        self.metrics.flushes.labels(s.key).inc()
        delivered = sum(b.profiles for b in report.batches if b.outcome == "delivered")
        self.metrics.event(s.key, "delivered", delivered)
        for row in report.batches:
            self.metrics.deployteq_requests.labels(s.key, row.key or row.outcome).inc(row.attempts)
        conn = s.resolved.connector
        if report.stop_reason == STOP_CREDENTIALS:
            why = (
                f"Deployteq refused connector {s.resolved.connector_name!r} (401): fix its token; probing once a minute"
            )
            self._pause(s, self.clock() + PROBE_AFTER_401, why)
            return False
        if report.stop_reason == STOP_DAILY_LIMIT:
            self._pause(s, next_reset().timestamp(), f"today's {conn.daily_limit or 0:,} requests are spent (429)")
            return False
        with self.lock:
            self.pauses.pop(s.resolved.connector_name, None)
        failed = [j for j in store.runs.batches(run_id) if j.state not in (State.SENT, State.SUPERSEDED)]
        for j in failed:
            if j.state == State.FAILED and j.status_code in PERMANENT:
                n = store.queue.delete_batch(run_id, j.idx)
                self.metrics.event(s.key, "failed", n)
        transient = [j for j in failed if not (j.state == State.FAILED and j.status_code in PERMANENT)]
        if transient:
            s.failures += 1
            wait = min(MAX_BACKOFF, 5.0 * 2 ** (s.failures - 1))
            self._failed(s, f"run {run_id}: {len(transient)} batch(es) not acknowledged; sending again", wait)
            self._recount(store, s)
            return False
        with self.lock:
            s.failures, s.retry_at = 0, 0.0
            s.last_flush = iso_now()
            s.last_error = None if not failed else f"run {run_id}: {len(failed)} batch(es) refused for good"
        self._recount(store, s)
        return True

    # -- bookkeeping ------------------------------------------------------------------------

    def _recount(self, store: Store, s: Segment) -> None:
        waiting, taken, _ = store.queue.stats_of(s.key)
        oldest = store.queue.oldest_waiting(s.key)
        with self.lock:
            s.waiting, s.taken, s.oldest = waiting, taken, oldest

    def _failed(self, s: Segment, why: str, retry_in: float = 0.0) -> None:
        why = scrub(why)  # shown on /v1/status: a second line of defence, as for the logs
        log.warning("segment %s: %s", s.key, why)
        with self.lock:
            s.last_error = why
            s.retry_at = self.clock() + retry_in

    def _pause(self, s: Segment, until: float, why: str) -> None:
        why = scrub(why)
        log.warning("connector %s: %s", s.resolved.connector_name, why)
        with self.lock:
            self.pauses[s.resolved.connector_name] = Pause(until, why)
            s.last_error = why

    def _paused(self, s: Segment) -> bool:
        with self.lock:
            p = self.pauses.get(s.resolved.connector_name)
            return p is not None and p.until > self.clock()

    def _age(self, s: Segment) -> float | None:
        return None if s.oldest is None else max(0.0, self.clock() - s.oldest)
