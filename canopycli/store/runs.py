"""Runs and their batches, and the daily request counters, in the journal.

Per run: id, command, pid, start/end, config path, connector and segment names, endpoint URL
(never the token: configs refuse a token in the URL), input path and SHA-256, the settings that
shape batches, row counts, outcome. Per batch: uuid, index, profiles, state (pending / sent /
failed / not_sent / superseded), HTTP status, attempts, last error (token-free), timestamps, and,
until the webhook acknowledges it, the request body: hashed emails or customer ids and params,
enough to resend the batch without the input file. Per endpoint and day: the number of requests
made (Deployteq's daily budget).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import StateError
from ..model import DONE, PENDING, SENT, SUPERSEDED, Batch
from .db import Effect, Guard, guarded, now, sqlite_trouble, transaction


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class RunRow:
    id: str
    command: str
    pid: int | None
    started: str
    finished: str | None
    config_path: str | None
    connector: str
    segment: str
    segment_name: str
    endpoint: str
    input: str | None
    input_sha256: str | None
    settings: dict[str, Any]
    spool_complete: bool
    rows_read: int
    rows_rejected: int
    rows_duplicate: int
    profiles_unchanged: int | None
    status: str
    exit_code: int | None
    stop_reason: str | None
    rows_suppressed: int = 0

    @property
    def shown_status(self) -> str:
        """``running`` only if its process is alive; a dead one was killed or crashed."""
        if self.status == "running" and not _alive(self.pid):
            return "killed"
        return self.status


@dataclass
class BatchRow:
    idx: int
    uuid: str
    profiles: int
    state: str
    status_code: int | None
    attempts: int
    last_error: str | None
    detail: str | None
    updated: str
    removals: int


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RUN_COLS = (
    "id, command, pid, started, finished, config_path, connector, segment, segment_name, endpoint, input, input_sha256,"
    " settings, spool_complete, rows_read, rows_rejected, rows_duplicate, profiles_unchanged, status,"
    " exit_code, stop_reason, rows_suppressed"
)


def _run(row: tuple[Any, ...]) -> RunRow:
    values = list(row)
    values[12] = json.loads(values[12])
    values[13] = bool(values[13])
    return RunRow(*values)


class Runs:
    """Runs and batches on one journal connection (``guard``: what its errors mean)."""

    def __init__(self, db: sqlite3.Connection, guard: Guard) -> None:
        self.db = db
        self.guard = guard

    # -- runs ------------------------------------------------------------------------------

    @guarded
    def start(
        self,
        *,
        command: str,
        config_path: str | None,
        connector: str,
        segment: str,
        segment_name: str,
        endpoint: str,
        input: str | None,  # noqa: A002
        input_sha256: str | None,
        settings: dict[str, Any],
    ) -> str:
        run_id = new_run_id()
        self.db.execute(
            "INSERT INTO runs (id, command, pid, started, config_path, connector, segment, segment_name, endpoint,"
            " input, input_sha256, settings) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, command, os.getpid(), now(), config_path, connector, segment, segment_name, endpoint)
            + (input, input_sha256, json.dumps(settings)),
        )
        self.guard.run, self.guard.sent = run_id, False
        return run_id

    @guarded
    def claim(self, run_id: str) -> None:
        """This process now drives the run (retry)."""
        self.guard.run, self.guard.sent = run_id, True  # the run has been sending already
        self.db.execute("UPDATE runs SET pid=?, status='running', finished=NULL WHERE id=?", (os.getpid(), run_id))

    @guarded
    def spooled(
        self, run_id: str, counts: dict[str, int | None], complete: bool, input_sha256: str | None = None
    ) -> None:
        """``input_sha256``: of the whole input, once it has been read to the end."""
        self.db.execute(
            "UPDATE runs SET rows_read=?, rows_rejected=?, rows_duplicate=?, profiles_unchanged=?, spool_complete=?,"
            " rows_suppressed=COALESCE(?, rows_suppressed),"
            " input_sha256=COALESCE(?, input_sha256) WHERE id=?",
            (
                counts["rows_read"],
                counts["rows_rejected"],
                counts["rows_duplicate"],
                counts.get("profiles_unchanged"),
                int(complete),
                counts.get("rows_suppressed"),
                input_sha256,
                run_id,
            ),
        )

    @guarded
    def finish(
        self, run_id: str, status: str, exit_code: int, stop_reason: str | None, finished: str | None = None
    ) -> None:
        """``finished``: the report's own end time, so the journal and ``--report-json`` agree."""
        self.db.execute(
            "UPDATE runs SET finished=?, status=?, exit_code=?, stop_reason=? WHERE id=?",
            (finished or now(), status, exit_code, stop_reason, run_id),
        )

    @guarded
    def get(self, run_id: str) -> RunRow:
        row = self.db.execute(f"SELECT {_RUN_COLS} FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StateError(f"no run {run_id!r} in {self.guard.path}", hint="List runs with: canopycli runs")
        return _run(row)

    @guarded
    def last(self) -> RunRow:
        row = self.db.execute(
            f"SELECT {_RUN_COLS} FROM runs WHERE command != 'dry-run' ORDER BY started DESC, rowid DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise StateError(f"no runs in {self.guard.path} yet", hint="Push something first, or check --state-dir.")
        return _run(row)

    @guarded
    def recent(self, limit: int = 20) -> list[RunRow]:
        sql = f"SELECT {_RUN_COLS} FROM runs ORDER BY started DESC, rowid DESC LIMIT ?"
        return [_run(r) for r in self.db.execute(sql, (limit,)).fetchall()]

    @guarded
    def prune(self, before: dt.datetime) -> int:
        """Forget runs that started before ``before`` (and old request counters)."""
        cutoff = before.astimezone(dt.UTC).isoformat(timespec="milliseconds")
        with transaction(self.db) as db:
            db.execute(
                "DELETE FROM batches WHERE run_id IN (SELECT id FROM runs WHERE started < ? AND status != 'running')",
                (cutoff,),
            )
            n = db.execute("DELETE FROM runs WHERE started < ? AND status != 'running'", (cutoff,)).rowcount
            db.execute("DELETE FROM requests WHERE day < ?", (cutoff[:10],))
        try:
            self.db.execute("VACUUM")
        except sqlite3.OperationalError as e:
            if sqlite_trouble(e) != "full":
                raise
            # the runs are pruned all the same; shrinking the file needs room for a copy of it
        return int(n)

    # -- batches ---------------------------------------------------------------------------

    @guarded
    def add_batch(self, run_id: str, batch: Batch, read: tuple[int, str, int | None] | None = None) -> None:
        """A batch about to be sent, without its body: the body is stored only if the batch ends
        unacknowledged (``record``). One killed in flight is rebuilt by ``retry`` from the input,
        checked by its SHA-256 (push), or found again by the next diff (sync). ``read``: how much
        of the input had been read (bytes, their SHA-256, the input's size), for that check."""
        t = now()
        n, sha, size = read if read is not None else (None, None, None)
        self.db.execute(
            "INSERT INTO batches (run_id, idx, uuid, profiles, state, created, updated, removals,"
            " read_bytes, read_sha256, input_size) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, batch.index, batch.uuid, batch.profiles, PENDING, t, t, batch.removals, n, sha, size),
        )
        self.guard.sent = True  # from here on, it may be on the wire

    @guarded
    def read_prefix(self, run_id: str) -> tuple[int, str, int | None] | None:
        """How much of its input a run had read when it journaled its last batch (see ``add_batch``)."""
        row = self.db.execute(
            "SELECT read_bytes, read_sha256, input_size FROM batches WHERE run_id=? AND read_sha256 IS NOT NULL"
            " ORDER BY idx DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), row[2])

    @guarded
    def record(
        self,
        run_id: str,
        idx: int,
        state: str,
        status_code: int | None,
        attempts: int,
        error: str | None,
        detail: str | None,
        *,
        body: bytes | None = None,
        effects: Effect | None = None,
    ) -> None:
        """A batch's outcome, in one transaction with ``effects`` if it was acknowledged (a sync
        batch's baseline moves).

        An acknowledged batch's body is dropped (it is never needed again); an unacknowledged one
        keeps ``body``, so ``retry`` can resend it without the input file.
        """
        keep = "body=NULL" if state == SENT else "body=COALESCE(body, ?)"
        args: tuple[Any, ...] = (state, status_code, attempts, error, detail, now())
        args += (run_id, idx) if state == SENT else (body, run_id, idx)
        with transaction(self.db) as db:
            db.execute(
                f"UPDATE batches SET state=?, status_code=?, attempts=attempts+?, last_error=?, detail=?, updated=?, {keep}"
                " WHERE run_id=? AND idx=?",
                args,
            )
            if state == SENT and effects is not None:
                effects(db)

    @guarded
    def bodiless(self, run_id: str) -> int:
        """Unacknowledged batches whose body was never stored (their run was killed in flight)."""
        sql = "SELECT COUNT(*) FROM batches WHERE run_id=? AND state NOT IN (?,?) AND body IS NULL"
        return int(self.db.execute(sql, (run_id, *DONE)).fetchone()[0])

    @guarded
    def states(self, run_id: str) -> dict[int, tuple[str, str]]:
        rows = self.db.execute("SELECT idx, uuid, state FROM batches WHERE run_id=?", (run_id,)).fetchall()
        return {idx: (uuid, state) for idx, uuid, state in rows}

    @guarded
    def batches(self, run_id: str) -> list[BatchRow]:
        rows = self.db.execute(
            "SELECT idx, uuid, profiles, state, status_code, attempts, last_error, detail, updated, removals"
            " FROM batches WHERE run_id=? ORDER BY idx",
            (run_id,),
        ).fetchall()
        return [BatchRow(*r) for r in rows]

    @guarded
    def unacked(self, run_id: str) -> Iterator[Batch]:
        """Batches to resend, with their stored bodies, one at a time."""
        sql = "SELECT idx FROM batches WHERE run_id=? AND state NOT IN (?,?) AND body IS NOT NULL ORDER BY idx"
        idxs = [r[0] for r in self.db.execute(sql, (run_id, *DONE)).fetchall()]
        for idx in idxs:
            row = self.db.execute(
                "SELECT uuid, profiles, body, removals FROM batches WHERE run_id=? AND idx=?", (run_id, idx)
            ).fetchone()
            uuid, profiles, body, removals = row
            yield Batch(idx, uuid, bytes(body), [""] * profiles, [], removals)

    @guarded
    def count_unacked(self, run_id: str) -> int:
        sql = "SELECT COUNT(*) FROM batches WHERE run_id=? AND state NOT IN (?,?)"
        return int(self.db.execute(sql, (run_id, *DONE)).fetchone()[0])

    @guarded
    def supersede(self, connector: str, segment: str) -> int:
        """Unacknowledged batches of earlier syncs of this segment are never sent: the new diff replaces them."""
        return int(
            self.db.execute(
                "UPDATE batches SET state=?, body=NULL, updated=? WHERE state NOT IN (?,?) AND run_id IN"
                " (SELECT id FROM runs WHERE command='sync' AND connector=? AND segment=?)",
                (SUPERSEDED, now(), *DONE, connector, segment),
            ).rowcount
        )


class RequestCounts:
    """Requests made per endpoint and UTC day (Deployteq's daily budget)."""

    def __init__(self, db: sqlite3.Connection, guard: Guard) -> None:
        self.db = db
        self.guard = guard

    @guarded
    def count(self, endpoint: str, day: str) -> int:
        row = self.db.execute("SELECT count FROM requests WHERE endpoint=? AND day=?", (endpoint, day)).fetchone()
        return int(row[0]) if row else 0

    @guarded
    def save(self, endpoint: str, day: str, count: int) -> None:
        """Record ``count`` for the day, unless a higher count is recorded already."""
        self.db.execute(
            "INSERT INTO requests (endpoint, day, count) VALUES (?,?,?)"
            " ON CONFLICT(endpoint, day) DO UPDATE SET count=MAX(count, excluded.count)",
            (endpoint, day, count),
        )
