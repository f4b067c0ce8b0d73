"""The relay's durable queue, in the journal: one waiting row per segment + identifier.

An event for an identifier that already waits in the segment *merges* into that row (latest wins:
the row takes the new status and params, ``merged`` counts the events it superseded, ``new_seen``
remembers a NEW among them, ``received`` keeps the first arrival so a busy profile cannot starve
the flush rule). A flush run *takes* rows by marking them with its run id and batch index, and an
acknowledgement deletes them in the transaction that records it (``acked``). Rows of a batch that
was not acknowledged stay taken: the flusher sends that batch again, rebuilt from its rows, with
the same uuid. Only a hashed identifier and the params as sent are stored, never an address.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import NamedTuple

from .db import Effect, Guard, guarded, transaction


class Queued(NamedTuple):
    rowid: int
    customer_id: str
    status: str
    new_seen: bool
    params: bytes  # JSON
    received: float
    merged: int


class Append(NamedTuple):
    """One request's events for one segment: (customer_id, status, params JSON) each."""

    segment: str
    rows: list[tuple[str, str, bytes]]


_UPSERT = (
    "INSERT INTO queue (segment, customer_id, status, new_seen, params, received) VALUES (?1, ?2, ?3, ?3 = 'NEW', ?4, ?5)"
    " ON CONFLICT (segment, customer_id) WHERE run_id IS NULL DO UPDATE SET status = excluded.status,"
    " params = excluded.params, new_seen = new_seen OR excluded.new_seen, merged = merged + 1"
)
_CHUNK = 500  # identifiers looked up in one statement (SQLite's default limit is 32,766 variables)
_COLS = "rowid, customer_id, status, new_seen, params, received, merged"


class Queue:
    """The queue on one journal connection (the relay's ``intake`` or ``flusher`` role)."""

    def __init__(self, db: sqlite3.Connection, guard: Guard) -> None:
        self.db = db
        self.guard = guard

    @guarded
    def append(self, requests: Iterable[Append], now: float | None = None) -> list[int]:
        """Queue the events of several requests in one transaction (a group commit); for each
        request, how many new waiting rows it made (the others merged into waiting ones)."""
        at = time.time() if now is None else now
        made: list[int] = []
        with transaction(self.db, immediate=True) as db:
            for req in requests:
                ids = {cid for cid, _, _ in req.rows}
                waiting = self._waiting_ids(req.segment, list(ids))
                made.append(len(ids - waiting))
                db.executemany(_UPSERT, [(req.segment, cid, st, params, at) for cid, st, params in req.rows])
        return made

    def _waiting_ids(self, segment: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` wait in ``segment`` already (by the unique index on waiting rows)."""
        found: set[str] = set()
        for i in range(0, len(ids), _CHUNK):
            part = ids[i : i + _CHUNK]
            sql = (
                "SELECT customer_id FROM queue WHERE segment=? AND run_id IS NULL"
                f" AND customer_id IN ({','.join('?' * len(part))})"
            )
            found.update(r[0] for r in self.db.execute(sql, (segment, *part)))
        return found

    @guarded
    def waiting(self, segment: str, limit: int) -> list[Queued]:
        """The oldest waiting rows of a segment, in arrival order."""
        sql = f"SELECT {_COLS} FROM queue WHERE segment=? AND run_id IS NULL ORDER BY rowid LIMIT ?"
        return [Queued(*r) for r in self.db.execute(sql, (segment, limit))]

    @guarded
    def take(self, run_id: str, idx: int, rows: list[tuple[int, str]]) -> None:
        """Rows (rowid, status to send) go into batch ``idx`` of ``run_id``."""
        with transaction(self.db) as db:
            db.executemany(
                "UPDATE queue SET run_id=?, idx=?, status=? WHERE rowid=?", [(run_id, idx, s, r) for r, s in rows]
            )

    @guarded
    def drop(self, rowids: list[int]) -> None:
        """Waiting rows that will never be sent (echoes of the baseline, a profile too large)."""
        with transaction(self.db) as db:
            db.executemany("DELETE FROM queue WHERE rowid=?", [(r,) for r in rowids])

    @staticmethod
    def acked(run_id: str, idx: int) -> Effect:
        """What acknowledging a batch does to the queue, in the ack's transaction: its rows go."""

        def delete(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM queue WHERE run_id=? AND idx=?", (run_id, idx))

        return delete

    @guarded
    def taken_runs(self, segment: str) -> list[str]:
        """Flush runs of a segment that still have rows taken (batches not acknowledged), oldest first."""
        sql = "SELECT run_id, MIN(rowid) FROM queue WHERE segment=? AND run_id IS NOT NULL GROUP BY run_id"
        return [r[0] for r in sorted(self.db.execute(sql, (segment,)), key=lambda r: r[1])]

    @guarded
    def batch_rows(self, run_id: str) -> dict[int, list[Queued]]:
        """A run's taken rows by batch, in batch order: what its unacknowledged batches are rebuilt from."""
        out: dict[int, list[Queued]] = {}
        sql = f"SELECT idx, {_COLS} FROM queue WHERE run_id=? ORDER BY idx, rowid"
        for idx, *rest in self.db.execute(sql, (run_id,)):
            out.setdefault(idx, []).append(Queued(*rest))
        return out

    @guarded
    def release(self, run_id: str, idx: int | None = None) -> int:
        """Taken rows go back to waiting (their batch was never journaled: the process died
        between taking and journaling). A row whose identifier has a newer waiting row merges
        into that one."""
        where, args = ("run_id=?", (run_id,)) if idx is None else ("run_id=? AND idx=?", (run_id, idx))
        with transaction(self.db, immediate=True) as db:
            rows = db.execute(f"SELECT rowid, segment, customer_id, new_seen, merged FROM queue WHERE {where}", args)
            n = 0
            for rowid, segment, cid, new_seen, merged in rows.fetchall():
                newer = db.execute(
                    "UPDATE queue SET merged = merged + ?, new_seen = new_seen OR ? WHERE segment=? AND customer_id=?"
                    " AND run_id IS NULL",
                    (merged + 1, new_seen, segment, cid),
                ).rowcount
                if newer:
                    db.execute("DELETE FROM queue WHERE rowid=?", (rowid,))
                else:
                    db.execute("UPDATE queue SET run_id=NULL, idx=NULL WHERE rowid=?", (rowid,))
                n += 1
        return n

    @guarded
    def delete_batch(self, run_id: str, idx: int) -> int:
        """The rows of a batch that failed for good (its outcome is in the journal)."""
        with transaction(self.db) as db:
            return int(db.execute("DELETE FROM queue WHERE run_id=? AND idx=?", (run_id, idx)).rowcount)

    @guarded
    def stats(self) -> dict[str, tuple[int, int, float | None]]:
        """Per segment: rows waiting, rows taken (in unacknowledged batches), the oldest arrival."""
        sql = "SELECT segment, SUM(run_id IS NULL), SUM(run_id IS NOT NULL), MIN(received) FROM queue GROUP BY segment"
        return {s: (int(w), int(t), oldest) for s, w, t, oldest in self.db.execute(sql)}

    @guarded
    def stats_of(self, segment: str) -> tuple[int, int, float | None]:
        row = self.db.execute(
            "SELECT COALESCE(SUM(run_id IS NULL), 0), COALESCE(SUM(run_id IS NOT NULL), 0), MIN(received)"
            " FROM queue WHERE segment=?",
            (segment,),
        ).fetchone()
        return int(row[0]), int(row[1]), row[2]

    @guarded
    def oldest_waiting(self, segment: str) -> float | None:
        """When the oldest waiting event arrived (by the age index: taken rows are few)."""
        row = self.db.execute(
            "SELECT received FROM queue WHERE segment=? AND run_id IS NULL ORDER BY received LIMIT 1", (segment,)
        ).fetchone()
        return None if row is None else float(row[0])
