"""Intake: records -> normalized events -> the queue, and engagement events -> the journal,
committed before the request is answered.

Records are normalized by the same ``Normalizer`` as push's JSONL lines (identity, hashing,
status, params), in the request's worker thread. One writer thread owns the ``intake`` connection
and commits the events of every request waiting at that moment in one transaction (a group
commit: under load, one fsync serves many requests); each request is released once its events are
committed. If the writer thread stops (its journal connection cannot be opened, a bug), every
request waiting for it, and every later one, is answered with the reason rather than left waiting
for ever, and ``/healthz`` says so.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from orjson import JSONEncodeError, dumps

from ..config import Resolved
from ..errors import CanopyError, StateError
from ..model import Reject
from ..pipeline.normalize import Normalizer
from ..store import Store
from ..store.engagements import Event
from ..store.queue import Append
from .core import Accepted, Item, ShuttingDown
from .metrics import Metrics

log = logging.getLogger("canopycli.relay")

GROUP_ROWS = 20_000  # at most this many events in one commit

# Called after each commit: (segment, new waiting rows, when they arrived).
OnCommit = Callable[[str, int, float], None]


@dataclass
class _Job:
    """What one request hands the writer: profile events for the queue, or engagement events
    (``POST /v1/engagements``) for the journal; ``done`` is set once they are committed."""

    appends: list[Append]
    done: Future[list[int]]
    engagements: list[Event] | None = None

    @property
    def size(self) -> int:
        return sum(len(a.rows) for a in self.appends) + len(self.engagements or ())


class Intake:
    def __init__(self, root: Path, resolved: Mapping[str, Resolved], metrics: Metrics, on_commit: OnCommit) -> None:
        self.root = root
        self.metrics, self.on_commit = metrics, on_commit
        self.normalizers = {
            key: (
                Normalizer(r.segment, r.connector.identifier, None, "NEW", source_name=f"segment {key}"),
                threading.Lock(),
            )
            for key, r in resolved.items()
        }
        self.limits = {key: r.connector.max_body_bytes - 400 for key, r in resolved.items()}
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.closed = False
        self.failure: CanopyError | None = None  # why the writer thread stopped, if it did
        self.lock = threading.Lock()  # a job is handed over only while the writer still takes them
        self.thread = threading.Thread(target=self._write, name="relay-intake", daemon=True)
        self.thread.start()

    def accept(self, items: list[Item]) -> Accepted:
        """Normalize ``items`` and queue the valid ones; returns once they are committed."""
        self._check_open()
        answer = Accepted()
        rows: dict[str, list[tuple[str, str, bytes]]] = {}
        for item in items:
            got = self._normalize(item)
            if isinstance(got, str):
                answer.rejected.append((item.pos, got))
                self.metrics.event(item.segment, "rejected")
            else:
                rows.setdefault(item.segment, []).append(got)
        answer.rejected.sort()
        if not rows:
            return answer
        job = _Job([Append(s, r) for s, r in rows.items()], Future())
        with self.lock:
            self._check_open()
            self.jobs.put(job)
        job.done.result()  # raises what the commit raised: nothing was queued then
        for segment, r in rows.items():
            self.metrics.event(segment, "accepted", len(r))
            answer.accepted += len(r)
        return answer

    def record(self, events: list[Event]) -> int:
        """Store engagement events (a uuid already stored is kept once); returns once they are
        committed, with how many were new."""
        self._check_open()
        job = _Job([], Future(), events)
        with self.lock:
            self._check_open()
            self.jobs.put(job)
        return job.done.result()[0]

    def _check_open(self) -> None:
        if self.failure is not None:  # a new one each time: a raised exception keeps its traceback
            raise StateError(self.failure.message, hint=self.failure.hint)
        if self.closed:
            raise ShuttingDown

    def _normalize(self, item: Item) -> tuple[str, str, bytes] | str:
        normalizer, lock = self.normalizers[item.segment]
        with lock:
            got = normalizer(item.pos, item.record)
        if isinstance(got, Reject):
            return got.reason
        customer = got.customer
        assert isinstance(customer, dict)  # not encoded: the parts are needed apart
        try:
            params = dumps(customer["params"])
        except JSONEncodeError:
            return "a value is not valid UTF-8 text"
        if len(params) > self.limits[item.segment]:
            return f"profile alone is larger than the {self.limits[item.segment] + 400:,}-byte request limit"
        return got.customer_id, customer["r42Status"], params

    def _write(self) -> None:
        try:
            with Store(self.root, "intake") as store:  # the connection lives in the thread that uses it
                self._loop(store)
        except Exception as e:  # noqa: BLE001 - the requests must be told, not left waiting
            log.exception("the intake stopped")
            failure = e if isinstance(e, CanopyError) else StateError(f"the intake stopped ({type(e).__name__})")
            with self.lock:
                self.failure = failure
            self._refuse_waiting(failure)

    def _loop(self, store: Store) -> None:
        stop = False
        while not stop:
            job = self.jobs.get()
            if job is None:
                return
            group, n = [job], job.size
            while n < GROUP_ROWS:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
                n += more.size
            try:
                self._commit(store, group)
            except BaseException as e:
                for j in group:
                    if not j.done.done():
                        j.done.set_exception(e)
                raise

    def _commit(self, store: Store, group: list[_Job]) -> None:
        """The group's queue events in one transaction, each request's engagements in one of
        their own; a request whose transaction failed is answered with the error (nothing of it
        was stored)."""
        queued = [j for j in group if j.engagements is None]
        for j in group:
            if j.engagements is not None:
                try:
                    j.done.set_result([store.engagements.store(j.engagements)])
                except BaseException as e:
                    j.done.set_exception(e)
        if not queued:
            return
        at = time.time()
        try:
            made = store.queue.append([a for j in queued for a in j.appends], now=at)
        except BaseException as e:  # the requests are answered with the error: nothing was queued
            for j in queued:
                j.done.set_exception(e)
            return
        i = 0
        for j in queued:
            mine = made[i : i + len(j.appends)]
            i += len(j.appends)
            for a, m in zip(j.appends, mine, strict=True):
                self.on_commit(a.segment, m, at)
            j.done.set_result(mine)

    def close(self) -> None:
        """Stop taking requests; those already handed over are committed first."""
        with self.lock:
            self.closed = True
            self.jobs.put(None)
        self.thread.join()
        self._refuse_waiting(ShuttingDown())  # only if the writer stopped before reaching the None

    def _refuse_waiting(self, error: Exception) -> None:
        while True:
            try:
                late = self.jobs.get_nowait()
            except queue.Empty:
                break
            if late is not None:
                late.done.set_exception(error)
