"""The run journal: SQLite (WAL) in the state folder.

What it holds, per run: id, command, pid, start/end, config path, connector and segment names,
endpoint URL (never the token: configs refuse a token in the URL), input path and SHA-256,
the settings that shape batches, row counts, outcome. Per batch: uuid, index, profiles, state
(pending / sent / failed / not_sent), HTTP status, attempts, last error (token-free), timestamps,
and, until the webhook acknowledges it, the request body: hashed emails or customer ids and
params, enough to resend the batch without the input file. Per endpoint and day: the number of
requests made (Deployteq's daily budget).

Every state change is committed at once; with WAL and ``synchronous=NORMAL`` a killed process
loses nothing that was committed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .batch import Batch
from .errors import StateError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    pid INTEGER,
    started TEXT NOT NULL,
    finished TEXT,
    config_path TEXT,
    connector TEXT NOT NULL,
    segment TEXT NOT NULL,
    segment_name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    input TEXT,
    input_sha256 TEXT,
    settings TEXT NOT NULL,
    spool_complete INTEGER NOT NULL DEFAULT 0,
    rows_read INTEGER NOT NULL DEFAULT 0,
    rows_rejected INTEGER NOT NULL DEFAULT 0,
    rows_duplicate INTEGER NOT NULL DEFAULT 0,
    profiles_unchanged INTEGER,
    status TEXT NOT NULL DEFAULT 'running',
    exit_code INTEGER,
    stop_reason TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    profiles INTEGER NOT NULL,
    state TEXT NOT NULL,
    status_code INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    detail TEXT,
    removals INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    body BLOB,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS requests (
    endpoint TEXT NOT NULL,
    day TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (endpoint, day)
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started);
CREATE TABLE IF NOT EXISTS baseline (
    scope TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (scope, customer_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS baseline_moves (
    scope TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    digest BLOB  -- NULL: removed
);
CREATE TABLE IF NOT EXISTS scopes (
    scope TEXT PRIMARY KEY,
    connector TEXT NOT NULL,
    segment TEXT NOT NULL,
    identifier TEXT NOT NULL,
    updated TEXT NOT NULL,
    last_run TEXT
);
"""

PENDING, SENT, FAILED, NOT_SENT = "pending", "sent", "failed", "not_sent"
SUPERSEDED = "superseded"  # an unacknowledged sync batch made obsolete by a newer sync
DONE = (SENT, SUPERSEDED)  # never sent again


def now() -> str:
    """The one timestamp format (journal, reports, exports): UTC, ISO 8601, milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


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


class Journal:
    def __init__(self, root: Path) -> None:
        self.path = root / "journal.sqlite3"
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA cache_size=-16384")  # 16 MiB: baseline upserts touch pages all over the index
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(batches)")}
            if "removals" not in cols:  # a journal from before sync
                self.db.execute("ALTER TABLE batches ADD COLUMN removals INTEGER NOT NULL DEFAULT 0")
        except sqlite3.DatabaseError as e:
            raise StateError(
                f"cannot use the journal {self.path}: {e}", hint="Check the state folder (--state-dir)."
            ) from None
        os.chmod(self.path, 0o600)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _x(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.db.execute(sql, args)

    # -- runs ------------------------------------------------------------------------------

    def start_run(
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
        self._x(
            "INSERT INTO runs (id, command, pid, started, config_path, connector, segment, segment_name, endpoint,"
            " input, input_sha256, settings) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                command,
                os.getpid(),
                now(),
                config_path,
                connector,
                segment,
                segment_name,
                endpoint,
                input,
                input_sha256,
                json.dumps(settings),
            ),
        )
        return run_id

    def claim(self, run_id: str) -> None:
        """This process now drives the run (retry)."""
        self._x("UPDATE runs SET pid=?, status='running', finished=NULL WHERE id=?", (os.getpid(), run_id))

    def spooled(self, run_id: str, counts: dict[str, int | None], complete: bool) -> None:
        self._x(
            "UPDATE runs SET rows_read=?, rows_rejected=?, rows_duplicate=?, profiles_unchanged=?, spool_complete=? WHERE id=?",
            (
                counts["rows_read"],
                counts["rows_rejected"],
                counts["rows_duplicate"],
                counts.get("profiles_unchanged"),
                int(complete),
                run_id,
            ),
        )

    def finish_run(
        self, run_id: str, status: str, exit_code: int, stop_reason: str | None, finished: str | None = None
    ) -> None:
        """``finished``: the report's own end time, so the journal and ``--report-json`` agree."""
        self._x(
            "UPDATE runs SET finished=?, status=?, exit_code=?, stop_reason=? WHERE id=?",
            (finished or now(), status, exit_code, stop_reason, run_id),
        )

    def run(self, run_id: str) -> RunRow:
        row = self._x(f"SELECT {_RUN_COLS} FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StateError(f"no run {run_id!r} in {self.path}", hint="List runs with: canopycli runs")
        return _run(row)

    def last_run(self) -> RunRow:
        row = self._x(
            f"SELECT {_RUN_COLS} FROM runs WHERE command != 'dry-run' ORDER BY started DESC, rowid DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise StateError(f"no runs in {self.path} yet", hint="Push something first, or check --state-dir.")
        return _run(row)

    def runs(self, limit: int = 20) -> list[RunRow]:
        rows = self._x(f"SELECT {_RUN_COLS} FROM runs ORDER BY started DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [_run(r) for r in rows]

    def prune(self, before: dt.datetime) -> int:
        """Forget runs that started before ``before`` (and old request counters)."""
        cutoff = before.astimezone(dt.UTC).isoformat(timespec="milliseconds")
        with self._lock:
            self.db.execute("BEGIN")
            self.db.execute(
                "DELETE FROM batches WHERE run_id IN (SELECT id FROM runs WHERE started < ? AND status != 'running')",
                (cutoff,),
            )
            n = self.db.execute("DELETE FROM runs WHERE started < ? AND status != 'running'", (cutoff,)).rowcount
            self.db.execute("DELETE FROM requests WHERE day < ?", (cutoff[:10],))
            self.db.execute("COMMIT")
        self.db.execute("VACUUM")
        return n

    # -- batches ---------------------------------------------------------------------------

    def add_batch(self, run_id: str, batch: Batch) -> None:
        """A batch about to be sent, without its body: the body is stored only if the batch ends
        unacknowledged (``record``). One killed in flight is rebuilt by ``retry`` from the input,
        checked by its SHA-256 (push), or found again by the next diff (sync)."""
        t = now()
        self._x(
            "INSERT INTO batches (run_id, idx, uuid, profiles, state, created, updated, removals) VALUES (?,?,?,?,?,?,?,?)",
            (run_id, batch.index, batch.uuid, batch.profiles, PENDING, t, t, batch.removals),
        )

    def bodiless(self, run_id: str) -> int:
        """Unacknowledged batches whose body was never stored (their run was killed in flight)."""
        sql = "SELECT COUNT(*) FROM batches WHERE run_id=? AND state NOT IN (?,?) AND body IS NULL"
        return int(self._x(sql, (run_id, *DONE)).fetchone()[0])

    def states(self, run_id: str) -> dict[int, tuple[str, str]]:
        rows = self._x("SELECT idx, uuid, state FROM batches WHERE run_id=?", (run_id,)).fetchall()
        return {idx: (uuid, state) for idx, uuid, state in rows}

    def record(
        self,
        run_id: str,
        idx: int,
        state: str,
        status_code: int | None,
        attempts: int,
        error: str | None,
        detail: str | None,
        baseline: tuple[str, list[tuple[str, bytes | None]]] | None = None,
        body: bytes | None = None,
    ) -> None:
        """A batch's outcome, in one transaction with the baseline move it implies (sync runs).

        ``baseline`` is (scope, [(id, params digest, or None for a removal)]) of a sync batch; it
        moves only if the batch was acknowledged.
        An acknowledged batch's body is dropped (it is never needed again); an unacknowledged one
        keeps ``body``, so ``retry`` can resend it without the input file.
        """
        keep = "body=NULL" if state == SENT else "body=COALESCE(body, ?)"
        args: tuple[Any, ...] = (state, status_code, attempts, error, detail, now())
        args += (run_id, idx) if state == SENT else (body, run_id, idx)
        with self._lock:
            self.db.execute("BEGIN")
            try:
                self.db.execute(
                    f"UPDATE batches SET state=?, status_code=?, attempts=attempts+?, last_error=?, detail=?, updated=?, {keep}"
                    " WHERE run_id=? AND idx=?",
                    args,
                )
                if state == SENT and baseline is not None:
                    self._move_baseline(*baseline)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _move_baseline(self, scope: str, changes: list[tuple[str, bytes | None]]) -> None:
        # Appended, in the ack's transaction: durable at once, and cheap. Upserting 500 random
        # ids straight into the baseline's index dirtied ~500 pages an ack; ``fold_baseline``
        # applies the moves in key order instead, touching each page once.
        self.db.executemany(
            "INSERT INTO baseline_moves (scope, customer_id, digest) VALUES (?,?,?)",
            [(scope, cid, d) for cid, d in changes],
        )

    def fold_baseline(self, scope: str | None = None) -> None:
        """Apply acknowledged moves to the baseline (the latest move of an id wins)."""
        with self._lock:
            scopes = [scope] if scope else [r[0] for r in self.db.execute("SELECT DISTINCT scope FROM baseline_moves")]
            for sc in scopes:
                self.db.execute("BEGIN")
                try:
                    latest = (
                        "SELECT customer_id, digest FROM baseline_moves WHERE rowid IN"
                        " (SELECT MAX(rowid) FROM baseline_moves WHERE scope = ?1 GROUP BY customer_id)"
                    )
                    self.db.execute(
                        f"INSERT INTO baseline (scope, customer_id, digest) SELECT ?1, customer_id, digest FROM ({latest})"
                        " WHERE digest IS NOT NULL ORDER BY customer_id"
                        " ON CONFLICT(scope, customer_id) DO UPDATE SET digest = excluded.digest",
                        (sc,),
                    )
                    self.db.execute(
                        f"DELETE FROM baseline WHERE scope = ?1 AND customer_id IN (SELECT customer_id FROM ({latest}) WHERE digest IS NULL)",
                        (sc,),
                    )
                    self.db.execute("DELETE FROM baseline_moves WHERE scope = ?", (sc,))
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise

    def batches(self, run_id: str) -> list[BatchRow]:
        rows = self._x(
            "SELECT idx, uuid, profiles, state, status_code, attempts, last_error, detail, updated, removals"
            " FROM batches WHERE run_id=? ORDER BY idx",
            (run_id,),
        ).fetchall()
        return [BatchRow(*r) for r in rows]

    def unacked(self, run_id: str) -> Iterator[Batch]:
        """Batches to resend, with their stored bodies, one at a time."""
        idxs = [
            r[0]
            for r in self._x(
                "SELECT idx FROM batches WHERE run_id=? AND state NOT IN (?,?) AND body IS NOT NULL ORDER BY idx",
                (run_id, *DONE),
            ).fetchall()
        ]
        for idx in idxs:
            row = self._x(
                "SELECT uuid, profiles, body, removals FROM batches WHERE run_id=? AND idx=?", (run_id, idx)
            ).fetchone()
            uuid, profiles, body, removals = row
            yield Batch(idx, uuid, bytes(body), [""] * profiles, [], removals)

    def count_unacked(self, run_id: str) -> int:
        sql = "SELECT COUNT(*) FROM batches WHERE run_id=? AND state NOT IN (?,?)"
        return int(self._x(sql, (run_id, *DONE)).fetchone()[0])

    # -- sync baselines ----------------------------------------------------------------------

    def touch_scope(self, scope: str, connector: str, segment: str, identifier: str, run_id: str | None) -> None:
        self._x(
            "INSERT INTO scopes (scope, connector, segment, identifier, updated, last_run) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT(scope) DO UPDATE SET updated=excluded.updated, last_run=COALESCE(excluded.last_run, last_run),"
            " identifier=excluded.identifier",
            (scope, connector, segment, identifier, now(), run_id),
        )

    def scopes(self) -> list[dict[str, Any]]:
        self.fold_baseline()
        rows = self._x(
            "SELECT s.scope, s.connector, s.segment, s.identifier, s.updated, s.last_run,"
            " (SELECT COUNT(*) FROM baseline b WHERE b.scope = s.scope) FROM scopes s ORDER BY s.scope"
        ).fetchall()
        keys = ("scope", "connector", "segment", "identifier", "updated", "last_run", "profiles")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def baseline_size(self, scope: str) -> int:
        self.fold_baseline(scope)
        return int(self._x("SELECT COUNT(*) FROM baseline WHERE scope=?", (scope,)).fetchone()[0])

    def baseline_rows(self, scope: str) -> Iterator[tuple[str, bytes]]:
        self.fold_baseline(scope)
        yield from self.db.execute(
            "SELECT customer_id, digest FROM baseline WHERE scope=? ORDER BY customer_id", (scope,)
        )

    def replace_baseline(self, scope: str, rows: Iterator[tuple[str, bytes]]) -> int:
        """The scope's baseline becomes exactly ``rows`` (all or nothing)."""
        n = 0
        with self._lock:
            self.db.execute("BEGIN")
            try:
                self.db.execute("DELETE FROM baseline WHERE scope=?", (scope,))
                self.db.execute("DELETE FROM baseline_moves WHERE scope=?", (scope,))
                while chunk := [(scope, cid, d) for cid, d in itertools.islice(rows, 10_000)]:
                    self.db.executemany("INSERT INTO baseline (scope, customer_id, digest) VALUES (?,?,?)", chunk)
                    n += len(chunk)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return n

    def supersede(self, connector: str, segment: str) -> int:
        """Unacknowledged batches of earlier syncs of this segment are never sent: the new diff replaces them."""
        return self._x(
            "UPDATE batches SET state=?, body=NULL, updated=? WHERE state NOT IN (?,?) AND run_id IN"
            " (SELECT id FROM runs WHERE command='sync' AND connector=? AND segment=?)",
            (SUPERSEDED, now(), *DONE, connector, segment),
        ).rowcount

    # -- daily request counter ---------------------------------------------------------------

    def requests_on(self, endpoint: str, day: str) -> int:
        row = self._x("SELECT count FROM requests WHERE endpoint=? AND day=?", (endpoint, day)).fetchone()
        return int(row[0]) if row else 0

    def set_requests(self, endpoint: str, day: str, count: int) -> None:
        self._x(
            "INSERT INTO requests (endpoint, day, count) VALUES (?,?,?) ON CONFLICT(endpoint, day) DO UPDATE SET count=MAX(count, excluded.count)",
            (endpoint, day, count),
        )


_RUN_COLS = (
    "id, command, pid, started, finished, config_path, connector, segment, segment_name, endpoint, input, input_sha256,"
    " settings, spool_complete, rows_read, rows_rejected, rows_duplicate, profiles_unchanged, status,"
    " exit_code, stop_reason"
)


def _run(row: tuple[Any, ...]) -> RunRow:
    values = list(row)
    values[12] = json.loads(values[12])
    values[13] = bool(values[13])
    return RunRow(*values)
