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

The database is created ``0600`` before SQLite opens it, so SQLite's ``-wal`` and ``-shm`` files
(which take the database's mode) are owner-only from their first byte; older files left wider are
tightened. SQLite errors the machine causes (a full disk, a read-only or damaged file) become a
``StateError`` (``DiskFullError``) saying what to do; once a run has started it is marked
``during_run`` (exit 1 if batches may have been sent, and the CLI names ``canopycli retry
RUN_ID``): every outcome committed before the error is kept and a failed write is rolled back
whole, so the run can be finished once the cause is fixed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import inspect
import itertools
import json
import os
import secrets
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

from ..errors import DiskFullError, StateError
from ..model import DONE, PENDING, SENT, SUPERSEDED, Batch
from .locks import os_error, owner_only

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
    read_bytes INTEGER,  -- the input read when the batch was journaled: its length, its SHA-256
    read_sha256 TEXT,    -- and the input's size then (a run killed mid-way: retry checks that prefix)
    input_size INTEGER,
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
    last_run TEXT,
    endpoint TEXT,      -- the webhook that acknowledged the baseline (NULL: before canopycli 1.1)
    segment_name TEXT   -- the segmentName it was sent as (NULL: before canopycli 1.1)
);
"""


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


# What a failure of SQLite says about the machine (primary result codes from sqlite3.h, and the
# messages, for errors that carry no code). Anything else (a constraint, a syntax error) is a bug.
_KINDS = (
    ("full", {13}, ("disk is full",)),
    ("readonly", {3, 8}, ("readonly", "read-only")),
    ("busy", {5, 6}, ("database is locked",)),
    ("damaged", {11, 26}, ("not a database", "malformed")),
    ("cantopen", {14}, ("unable to open",)),
    ("io", {10}, ("i/o error",)),
)
_WHAT_TO_DO = {  # kind: (the message, the fix, what else to do when no run is at stake)
    "full": (
        "the disk holding the run journal {p} is full",
        "Free some space",
        "or pass --state-dir DIR (or set $CANOPYCLI_STATE_DIR) for a folder on another disk.",
    ),
    "readonly": (
        "the run journal {p} is read-only for this user ({e})",
        "Fix the permissions of the state folder and its files",
        "or pass --state-dir DIR (or set $CANOPYCLI_STATE_DIR) for a folder you can write.",
    ),
    "busy": (
        "the run journal {p} stayed locked by another process ({e})",
        "Let the other canopycli command finish",
        "and try again.",
    ),
    "damaged": (
        "{p} is not a canopycli run journal, or it is damaged ({e})",
        "Move it aside (the runs and sync baselines in it are then forgotten)",
        "or pass --state-dir DIR.",
    ),
    "cantopen": (
        "cannot open the run journal {p} ({e})",
        "Check that the state folder and the journal are yours and writable",
        "or pass --state-dir DIR.",
    ),
    "io": ("cannot read or write the run journal {p} ({e})", "Check the disk", "or pass --state-dir DIR."),
}


def sqlite_trouble(e: sqlite3.Error) -> str | None:
    """The kind of a SQLite error the machine causes (``full``, ``readonly``...), None for a bug."""
    if not isinstance(e, sqlite3.OperationalError) and type(e) is not sqlite3.DatabaseError:
        return None
    code = getattr(e, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(e).lower()
    for kind, codes, words in _KINDS:
        if primary in codes or any(w in text for w in words):
            return kind
    return None


_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(fn: _F) -> _F:
    """A journal method whose SQLite errors, when the machine caused them, become a ``StateError``."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(self: Journal, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(self, *args, **kwargs)
            except sqlite3.Error as e:
                self._raise(e)

        return cast("_F", gen)

    @functools.wraps(fn)
    def call(self: Journal, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as e:
            self._raise(e)

    return cast("_F", call)


def _prepare(path: Path) -> None:
    """Create the database 0600 before SQLite opens it (SQLite gives -wal and -shm the database's
    mode), and tighten a database or side file that an older release left readable by others."""
    if path.is_dir():
        raise StateError(
            f"the run journal {path} is a folder, not a file", hint="Move it away, or pass --state-dir DIR."
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            st = os.fstat(fd)
            if st.st_size == 0:
                os.fchmod(fd, 0o600)  # new: exactly 0600, whatever the umask
            elif stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
        finally:
            os.close(fd)
        for side in ("-wal", "-shm", "-journal"):
            p = path.with_name(path.name + side)
            if p.exists():
                owner_only(p)
    except OSError as e:
        raise os_error(e, f"cannot open the run journal {path}") from e


class Journal:
    def __init__(self, root: Path) -> None:
        self.path = root / "journal.sqlite3"
        self._lock = threading.Lock()
        self._run: str | None = None  # the run this process drives, for the resume hint of an error
        self._sent = False  # whether that run may have sent something
        _prepare(self.path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        except sqlite3.Error as e:
            self._raise(e)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA cache_size=-16384")  # 16 MiB: baseline upserts touch pages all over the index
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(batches)")}
            if "removals" not in cols:  # a journal from before sync
                self.db.execute("ALTER TABLE batches ADD COLUMN removals INTEGER NOT NULL DEFAULT 0")
            for col, kind in (("read_bytes", "INTEGER"), ("read_sha256", "TEXT"), ("input_size", "INTEGER")):
                if col not in cols:  # a journal from before the input was read once
                    self.db.execute(f"ALTER TABLE batches ADD COLUMN {col} {kind}")
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(scopes)")}
            for col in ("endpoint", "segment_name"):  # a journal from before 1.1
                if col not in cols:
                    self.db.execute(f"ALTER TABLE scopes ADD COLUMN {col} TEXT")
        except sqlite3.Error as e:
            self.db.close()
            self._raise(e)

    def _raise(self, e: sqlite3.Error) -> NoReturn:
        err = self._trouble(e)
        if err is None:
            raise e
        raise err from e

    def _trouble(self, e: sqlite3.Error) -> StateError | None:
        """A SQLite error the machine caused, as what to do next (None: a bug, raised as it is)."""
        kind = sqlite_trouble(e)
        if kind is None:
            return None
        message, fix, otherwise = _WHAT_TO_DO[kind]
        message = message.format(p=self.path, e=e)
        cls = DiskFullError if kind == "full" else StateError
        if self._run is None:
            return cls(message, hint=f"{fix}, {otherwise}")
        # a run is at stake: it stays in this journal (so no --state-dir), and the CLI names its retry
        return cls(message, hint=f"{fix}.").during_run(self._run, self._sent)  # type: ignore[return-value]

    def _rollback(self) -> None:
        # SQLite may have rolled back already (a full disk, an I/O error): the original error matters
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")

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

    @_guarded
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
        self._run, self._sent = run_id, False
        return run_id

    @_guarded
    def claim(self, run_id: str) -> None:
        """This process now drives the run (retry)."""
        self._run, self._sent = run_id, True  # the run has been sending already
        self._x("UPDATE runs SET pid=?, status='running', finished=NULL WHERE id=?", (os.getpid(), run_id))

    @_guarded
    def spooled(
        self, run_id: str, counts: dict[str, int | None], complete: bool, input_sha256: str | None = None
    ) -> None:
        """``input_sha256``: of the whole input, once it has been read to the end."""
        self._x(
            "UPDATE runs SET rows_read=?, rows_rejected=?, rows_duplicate=?, profiles_unchanged=?, spool_complete=?,"
            " input_sha256=COALESCE(?, input_sha256) WHERE id=?",
            (
                counts["rows_read"],
                counts["rows_rejected"],
                counts["rows_duplicate"],
                counts.get("profiles_unchanged"),
                int(complete),
                input_sha256,
                run_id,
            ),
        )

    @_guarded
    def finish_run(
        self, run_id: str, status: str, exit_code: int, stop_reason: str | None, finished: str | None = None
    ) -> None:
        """``finished``: the report's own end time, so the journal and ``--report-json`` agree."""
        self._x(
            "UPDATE runs SET finished=?, status=?, exit_code=?, stop_reason=? WHERE id=?",
            (finished or now(), status, exit_code, stop_reason, run_id),
        )

    @_guarded
    def run(self, run_id: str) -> RunRow:
        row = self._x(f"SELECT {_RUN_COLS} FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StateError(f"no run {run_id!r} in {self.path}", hint="List runs with: canopycli runs")
        return _run(row)

    @_guarded
    def last_run(self) -> RunRow:
        row = self._x(
            f"SELECT {_RUN_COLS} FROM runs WHERE command != 'dry-run' ORDER BY started DESC, rowid DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise StateError(f"no runs in {self.path} yet", hint="Push something first, or check --state-dir.")
        return _run(row)

    @_guarded
    def runs(self, limit: int = 20) -> list[RunRow]:
        rows = self._x(f"SELECT {_RUN_COLS} FROM runs ORDER BY started DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [_run(r) for r in rows]

    @_guarded
    def prune(self, before: dt.datetime) -> int:
        """Forget runs that started before ``before`` (and old request counters)."""
        cutoff = before.astimezone(dt.UTC).isoformat(timespec="milliseconds")
        with self._lock:
            self.db.execute("BEGIN")
            try:
                self.db.execute(
                    "DELETE FROM batches WHERE run_id IN (SELECT id FROM runs WHERE started < ? AND status != 'running')",
                    (cutoff,),
                )
                n = self.db.execute("DELETE FROM runs WHERE started < ? AND status != 'running'", (cutoff,)).rowcount
                self.db.execute("DELETE FROM requests WHERE day < ?", (cutoff[:10],))
                self.db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        try:
            self.db.execute("VACUUM")
        except sqlite3.OperationalError as e:
            if sqlite_trouble(e) != "full":
                raise
            # the runs are pruned all the same; shrinking the file needs room for a copy of it
        return n

    # -- batches ---------------------------------------------------------------------------

    @_guarded
    def add_batch(self, run_id: str, batch: Batch, read: tuple[int, str, int | None] | None = None) -> None:
        """A batch about to be sent, without its body: the body is stored only if the batch ends
        unacknowledged (``record``). One killed in flight is rebuilt by ``retry`` from the input,
        checked by its SHA-256 (push), or found again by the next diff (sync). ``read``: how much
        of the input had been read (bytes, their SHA-256, the input's size), for that check."""
        t = now()
        n, sha, size = read if read is not None else (None, None, None)
        self._x(
            "INSERT INTO batches (run_id, idx, uuid, profiles, state, created, updated, removals,"
            " read_bytes, read_sha256, input_size) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, batch.index, batch.uuid, batch.profiles, PENDING, t, t, batch.removals, n, sha, size),
        )
        self._sent = True  # from here on, it may be on the wire

    @_guarded
    def read_prefix(self, run_id: str) -> tuple[int, str, int | None] | None:
        """How much of its input a run had read when it journaled its last batch (see ``add_batch``)."""
        row = self._x(
            "SELECT read_bytes, read_sha256, input_size FROM batches WHERE run_id=? AND read_sha256 IS NOT NULL"
            " ORDER BY idx DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), row[2])

    @_guarded
    def bodiless(self, run_id: str) -> int:
        """Unacknowledged batches whose body was never stored (their run was killed in flight)."""
        sql = "SELECT COUNT(*) FROM batches WHERE run_id=? AND state NOT IN (?,?) AND body IS NULL"
        return int(self._x(sql, (run_id, *DONE)).fetchone()[0])

    @_guarded
    def states(self, run_id: str) -> dict[int, tuple[str, str]]:
        rows = self._x("SELECT idx, uuid, state FROM batches WHERE run_id=?", (run_id,)).fetchall()
        return {idx: (uuid, state) for idx, uuid, state in rows}

    @_guarded
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
        effects: Callable[[sqlite3.Connection], None] | None = None,
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
                if state == SENT and effects is not None:  # what the ack does besides (a stage's on_ack)
                    effects(self.db)
                self.db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def _move_baseline(self, scope: str, changes: list[tuple[str, bytes | None]]) -> None:
        # Appended, in the ack's transaction: durable at once, and cheap. Upserting 500 random
        # ids straight into the baseline's index dirtied ~500 pages an ack; ``fold_baseline``
        # applies the moves in key order instead, touching each page once.
        self.db.executemany(
            "INSERT INTO baseline_moves (scope, customer_id, digest) VALUES (?,?,?)",
            [(scope, cid, d) for cid, d in changes],
        )

    @_guarded
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
                    self._rollback()
                    raise

    @_guarded
    def batches(self, run_id: str) -> list[BatchRow]:
        rows = self._x(
            "SELECT idx, uuid, profiles, state, status_code, attempts, last_error, detail, updated, removals"
            " FROM batches WHERE run_id=? ORDER BY idx",
            (run_id,),
        ).fetchall()
        return [BatchRow(*r) for r in rows]

    @_guarded
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

    @_guarded
    def count_unacked(self, run_id: str) -> int:
        sql = "SELECT COUNT(*) FROM batches WHERE run_id=? AND state NOT IN (?,?)"
        return int(self._x(sql, (run_id, *DONE)).fetchone()[0])

    # -- sync baselines ----------------------------------------------------------------------

    @_guarded
    def touch_scope(
        self,
        scope: str,
        connector: str,
        segment: str,
        identifier: str,
        run_id: str | None,
        *,
        endpoint: str | None = None,
        segment_name: str | None = None,
    ) -> None:
        """Record what a baseline is about; ``endpoint`` and ``segment_name`` default to the run's."""
        self._x(
            "INSERT INTO scopes (scope, connector, segment, identifier, updated, last_run, endpoint, segment_name)"
            " VALUES (?1,?2,?3,?4,?5,?6, COALESCE(?7, (SELECT endpoint FROM runs WHERE id=?6)),"
            " COALESCE(?8, (SELECT segment_name FROM runs WHERE id=?6)))"
            " ON CONFLICT(scope) DO UPDATE SET updated=excluded.updated, last_run=COALESCE(excluded.last_run, last_run),"
            " identifier=excluded.identifier, endpoint=COALESCE(excluded.endpoint, endpoint),"
            " segment_name=COALESCE(excluded.segment_name, segment_name)",
            (scope, connector, segment, identifier, now(), run_id, endpoint, segment_name),
        )

    @_guarded
    def scope(self, scope: str) -> dict[str, Any] | None:
        """What a baseline is about: connector, segment, identifier, endpoint, segment_name (None: never synced)."""
        row = self._x(
            "SELECT connector, segment, identifier, endpoint, segment_name FROM scopes WHERE scope=?", (scope,)
        ).fetchone()
        keys = ("connector", "segment", "identifier", "endpoint", "segment_name")
        return None if row is None else dict(zip(keys, row, strict=True))

    @_guarded
    def scopes(self) -> list[dict[str, Any]]:
        self.fold_baseline()
        rows = self._x(
            "SELECT s.scope, s.connector, s.segment, s.identifier, s.updated, s.last_run,"
            " (SELECT COUNT(*) FROM baseline b WHERE b.scope = s.scope) FROM scopes s ORDER BY s.scope"
        ).fetchall()
        keys = ("scope", "connector", "segment", "identifier", "updated", "last_run", "profiles")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    @_guarded
    def baseline_size(self, scope: str) -> int:
        self.fold_baseline(scope)
        return int(self._x("SELECT COUNT(*) FROM baseline WHERE scope=?", (scope,)).fetchone()[0])

    @_guarded
    def baseline_rows(self, scope: str) -> Iterator[tuple[str, bytes]]:
        self.fold_baseline(scope)
        yield from self.db.execute(
            "SELECT customer_id, digest FROM baseline WHERE scope=? ORDER BY customer_id", (scope,)
        )

    @_guarded
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
                self._rollback()
                raise
        return n

    @_guarded
    def supersede(self, connector: str, segment: str) -> int:
        """Unacknowledged batches of earlier syncs of this segment are never sent: the new diff replaces them."""
        return self._x(
            "UPDATE batches SET state=?, body=NULL, updated=? WHERE state NOT IN (?,?) AND run_id IN"
            " (SELECT id FROM runs WHERE command='sync' AND connector=? AND segment=?)",
            (SUPERSEDED, now(), *DONE, connector, segment),
        ).rowcount

    # -- daily request counter ---------------------------------------------------------------

    @_guarded
    def requests_on(self, endpoint: str, day: str) -> int:
        row = self._x("SELECT count FROM requests WHERE endpoint=? AND day=?", (endpoint, day)).fetchone()
        return int(row[0]) if row else 0

    @_guarded
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
