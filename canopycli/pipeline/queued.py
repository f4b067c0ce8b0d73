"""The relay's stages: queued events -> batches (``FlushStage``), and a flush run's unacknowledged
batches rebuilt from their queue rows (``QueueResend``). ``drive.py`` journals, sends and records
them as it does for push and sync.

What a flush sends is decided before the run starts (``plan``): the queue holds one waiting row
per identifier already (latest wins, ``store/queue.py``); a NEW among the merged events of an
identifier Deployteq has not acknowledged goes out as NEW even if a MODIFIED came later; a NEW or
MODIFIED whose params equal what the baseline holds for the identifier is an echo and is dropped;
so is a REMOVED whose removal the baseline saw acknowledged.

A batch's body is a function of its rows (their order, identifiers, the status sent and the
params), so a batch rebuilt from its rows after a crash has the uuid it was journaled with.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from orjson import Fragment, dumps

from ..config import Resolved
from ..deployteq.far import encoder_for
from ..model import Batch, Profile, Reject
from ..store import Store
from ..store.baseline import moves
from ..store.db import Effect
from ..store.queue import Queue, Queued
from .batch import batches
from .diff import params_digest, scope_of
from .report import Report
from .stages import Effects, batch_shape
from .suppress import id_column

COMMAND = "relay"


def relay_settings(resolved: Resolved) -> dict[str, Any]:
    """What shapes a flush run's batches (journaled with the run, as push's settings are)."""
    return batch_shape(resolved)


def profile(row: Queued, status: str) -> Profile:
    """A queue row as the wire object a push would have built (the same bytes), line = its rowid."""
    wire = b'{"customerId":' + dumps(row.customer_id) + b',"r42Status":"' + status.encode() + b'","params":'
    digest = None if status == "REMOVED" else params_digest(row.params)
    return Profile(row.rowid, row.customer_id, Fragment(wire + row.params + b"}"), digest)


@dataclass
class Plan:
    """What one flush takes: rows to send (with the status each is sent as), echoes to drop."""

    send: list[tuple[Queued, str]] = field(default_factory=list)
    echoes: list[Queued] = field(default_factory=list)
    held: list[Queued] = field(default_factory=list)  # NEW/MODIFIED a segment's suppress: holds back

    @property
    def superseded(self) -> int:
        return sum(r.merged for r, _ in self.send) + sum(r.merged for r in self.echoes + self.held)


def plan(store: Store, scope: str, rows: list[Queued], resolved: Resolved | None = None) -> Plan:
    """Decide per waiting row: send (as which status), drop as an echo of the baseline, or hold
    back (the segment's ``suppress:``)."""
    store.baselines.fold(scope)
    ids = [r.customer_id for r in rows]
    digests, removed = store.baselines.known(scope, ids)
    types = resolved.segment.suppress if resolved is not None else []
    held = (
        store.engagements.suppressed(id_column(resolved.connector.identifier), ids, types) if resolved and types else {}
    )
    out = Plan()
    for r in rows:
        if r.customer_id in held and r.status != "REMOVED":
            out.held.append(r)
            continue
        acked = digests.get(r.customer_id)
        status = r.status
        if status == "MODIFIED" and r.new_seen and acked is None:
            status = "NEW"  # entered and changed within one flush: Deployteq has not seen it yet
        if status == "REMOVED":
            echo = acked is None and r.customer_id in removed
        else:
            echo = acked is not None and acked == params_digest(r.params)
        if echo:
            out.echoes.append(r)
        else:
            out.send.append((r, status))
    return out


def queue_effects(scope: str, run_id: str, batch: Batch) -> Effects:
    """An acknowledged batch: its queue rows go, and the baseline moves as a sync's would."""
    digests = batch.digests if batch.digests is not None else [None] * batch.profiles
    steps: list[Effect] = [
        Queue.acked(run_id, batch.index),
        moves(scope, list(zip(batch.customer_ids, digests, strict=True))),
    ]

    def both(db: Any) -> None:
        for step in steps:
            step(db)

    return both


class FlushStage:
    """A flush: the planned rows -> batches; each batch's rows are taken just before it is
    journaled and sent, so a cancelled flush leaves the rest waiting."""

    command = COMMAND
    stops_reading_on_cancel = True

    def __init__(self, store: Store, resolved: Resolved, planned: Plan, report: Report) -> None:
        self.store, self.resolved, self.planned, self.report = store, resolved, planned, report
        self.scope = scope_of(resolved.connector_name, resolved.segment_key)
        self.run_id = ""
        self.too_large: list[int] = []
        self.taken = 0
        self.merged = {row.rowid: row.merged for row, _ in planned.send}
        self.superseded = sum(r.merged for r in planned.echoes + planned.held)  # of the rows taken so far

    def prepare(self) -> None:
        pass

    def requests_needed(self) -> int | None:
        size = self.resolved.connector.batch_size
        return -(-len(self.planned.send) // size)

    def begin(self, run_id: str) -> None:
        self.run_id = run_id
        r = self.resolved
        self.store.baselines.touch(self.scope, r.connector_name, r.segment_key, r.connector.identifier, run_id)

    def batches(self) -> Iterator[Batch]:
        status = {row.rowid: s for row, s in self.planned.send}
        profiles = (profile(row, s) for row, s in self.planned.send)
        encoder = encoder_for(relay_settings(self.resolved), self.resolved.connector.endpoint)
        for b in batches(profiles, encoder, self.resolved.connector.batch_size, self._reject):
            self.store.queue.take(self.run_id, b.index, [(line, status[line]) for line in b.lines])
            self.taken += b.profiles
            self.superseded += sum(self.merged[line] for line in b.lines)
            yield b

    def _reject(self, r: Reject) -> None:
        self.too_large.append(r.line)
        self.superseded += self.merged[r.line]
        self.report.add_reject(r.line, r.reason, False)
        self.store.queue.drop([r.line])

    def on_ack(self, batch: Batch) -> Effects:
        return queue_effects(self.scope, self.run_id, batch)

    def on_failure(self, batch: Batch, error: str | None, detail: str | None) -> None:
        pass

    def counts(self, complete: bool) -> dict[str, int | None]:
        p = self.planned
        superseded = p.superseded if complete else self.superseded  # the rest stays queued, merged
        read = len(p.echoes) + len(p.held) + superseded
        read += len(p.send) if complete else self.taken + len(self.too_large)
        return {
            "rows_suppressed": len(p.held),
            "rows_read": read,
            "rows_rejected": len(self.too_large),
            "rows_duplicate": superseded,
            "profiles_unchanged": len(p.echoes),
        }

    def finish(self) -> None:
        self.store.baselines.fold(self.scope)

    def close(self) -> None:
        pass


class QueueResend:
    """A flush run's unacknowledged batches, rebuilt from their queue rows (the process may have
    died before it stored a body); ``drive.journaled`` checks each against its journaled uuid."""

    command = COMMAND
    stops_reading_on_cancel = True

    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.run = store.runs.get(run_id)
        self.scope = scope_of(self.run.connector, self.run.segment)
        self.rows = store.queue.batch_rows(run_id)

    def prepare(self) -> None:
        pass

    def requests_needed(self) -> int | None:
        return len(self.rows)

    def begin(self, run_id: str) -> None:
        pass

    def batches(self) -> Iterator[Batch]:
        encoder = encoder_for(self.run.settings, self.run.endpoint)
        for idx, rows in self.rows.items():
            made, _ = encoder.encode([profile(r, r.status) for r in rows], idx)
            yield from made[:1]  # its rows fitted one body when it was made

    def on_ack(self, batch: Batch) -> Effects:
        return queue_effects(self.scope, self.run_id, batch)

    def on_failure(self, batch: Batch, error: str | None, detail: str | None) -> None:
        pass

    def counts(self, complete: bool) -> dict[str, int | None]:
        """The run's counts as journaled, with every journaled batch read (a run killed in flight
        never recorded its counts)."""
        run = self.store.runs.get(self.run_id)  # as it is now
        batched = sum(b.profiles for b in self.store.runs.batches(self.run_id))
        other = run.rows_rejected + run.rows_duplicate + run.rows_suppressed + (run.profiles_unchanged or 0)
        return {
            "rows_read": other + batched,
            "rows_rejected": run.rows_rejected,
            "rows_duplicate": run.rows_duplicate,
            "profiles_unchanged": run.profiles_unchanged,
        }

    def finish(self) -> None:
        self.store.baselines.fold(self.scope)

    def close(self) -> None:
        pass
