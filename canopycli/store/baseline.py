"""Sync baselines in the journal, and the scratch database a sync's diff runs in.

A baseline (per connector + segment: a *scope*) holds one row per profile: the id and a 16-byte
digest of its params as sent. It moves only for batches the webhook acknowledged: ``moves()`` is
the effect ``Runs.record`` commits with the acknowledgement, appended to ``baseline_moves`` and
folded into ``baseline`` in key order later (``Baselines.fold``). ``scopes`` records what each
baseline belongs to (connector, segment, identifier, and since 1.1 endpoint and segmentName).

``Snapshot`` is the diff's scratch database: a private temporary SQLite file with the journal
attached, so memory stays flat whatever the size of the snapshot or the baseline.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

from ..errors import DiskFullError, StateError
from .db import Effect, Guard, guarded, now, sqlite_trouble, transaction

DIGEST_BYTES = 16  # of a profile's params as sent (BLAKE2b)
_CHUNK = 10_000


def moves(scope: str, changes: list[tuple[str, bytes | None]]) -> Effect:
    """The baseline moves of an acknowledged sync batch: (id, params digest, None for a removal).

    Appended, in the ack's transaction: durable at once, and cheap. Upserting 500 random ids
    straight into the baseline's index dirtied ~500 pages an ack; ``Baselines.fold`` applies the
    moves in key order instead, touching each page once."""

    def move(db: sqlite3.Connection) -> None:
        db.executemany(
            "INSERT INTO baseline_moves (scope, customer_id, digest) VALUES (?,?,?)",
            [(scope, cid, d) for cid, d in changes],
        )

    return move


class Baselines:
    """The sync baselines on one journal connection (``guard``: what its errors mean)."""

    def __init__(self, db: sqlite3.Connection, guard: Guard) -> None:
        self.db = db
        self.guard = guard

    @property
    def path(self) -> Path:
        return self.guard.path

    @guarded
    def fold(self, scope: str | None = None) -> None:
        """Apply acknowledged moves to the baseline (the latest move of an id wins)."""
        scopes = [scope] if scope else [r[0] for r in self.db.execute("SELECT DISTINCT scope FROM baseline_moves")]
        latest = (
            "SELECT customer_id, digest FROM baseline_moves WHERE rowid IN"
            " (SELECT MAX(rowid) FROM baseline_moves WHERE scope = ?1 GROUP BY customer_id)"
        )
        for sc in scopes:
            with transaction(self.db) as db:
                db.execute(
                    f"INSERT INTO baseline (scope, customer_id, digest) SELECT ?1, customer_id, digest FROM ({latest})"
                    " WHERE digest IS NOT NULL ORDER BY customer_id"
                    " ON CONFLICT(scope, customer_id) DO UPDATE SET digest = excluded.digest",
                    (sc,),
                )
                db.execute(
                    f"DELETE FROM baseline WHERE scope = ?1 AND customer_id IN (SELECT customer_id FROM ({latest}) WHERE digest IS NULL)",
                    (sc,),
                )
                self._remember_removals(db, sc, latest)
                db.execute("DELETE FROM baseline_moves WHERE scope = ?", (sc,))

    @staticmethod
    def _remember_removals(db: sqlite3.Connection, scope: str, latest: str) -> None:
        """Acknowledged removals are remembered (``baseline_removed``), so the relay can drop an
        echo of one; an id acknowledged again since is forgotten there. Each step is skipped when
        it has nothing to do: a sync of a million ids pays no extra pass for it."""
        if db.execute("SELECT 1 FROM baseline_moves WHERE scope = ? AND digest IS NULL LIMIT 1", (scope,)).fetchone():
            db.execute(
                f"INSERT OR IGNORE INTO baseline_removed (scope, customer_id) SELECT ?1, customer_id FROM ({latest})"
                " WHERE digest IS NULL",
                (scope,),
            )
        if db.execute("SELECT 1 FROM baseline_removed WHERE scope = ? LIMIT 1", (scope,)).fetchone():
            db.execute(
                "DELETE FROM baseline_removed WHERE scope = ?1 AND customer_id IN"
                f" (SELECT customer_id FROM ({latest}) WHERE digest IS NOT NULL)",
                (scope,),
            )

    @guarded
    def touch(
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
        self.db.execute(
            "INSERT INTO scopes (scope, connector, segment, identifier, updated, last_run, endpoint, segment_name)"
            " VALUES (?1,?2,?3,?4,?5,?6, COALESCE(?7, (SELECT endpoint FROM runs WHERE id=?6)),"
            " COALESCE(?8, (SELECT segment_name FROM runs WHERE id=?6)))"
            " ON CONFLICT(scope) DO UPDATE SET updated=excluded.updated, last_run=COALESCE(excluded.last_run, last_run),"
            " identifier=excluded.identifier, endpoint=COALESCE(excluded.endpoint, endpoint),"
            " segment_name=COALESCE(excluded.segment_name, segment_name)",
            (scope, connector, segment, identifier, now(), run_id, endpoint, segment_name),
        )

    @guarded
    def scope(self, scope: str) -> dict[str, Any] | None:
        """What a baseline is about: connector, segment, identifier, endpoint, segment_name (None: never synced)."""
        row = self.db.execute(
            "SELECT connector, segment, identifier, endpoint, segment_name FROM scopes WHERE scope=?", (scope,)
        ).fetchone()
        keys = ("connector", "segment", "identifier", "endpoint", "segment_name")
        return None if row is None else dict(zip(keys, row, strict=True))

    @guarded
    def scopes(self) -> list[dict[str, Any]]:
        self.fold()
        rows = self.db.execute(
            "SELECT s.scope, s.connector, s.segment, s.identifier, s.updated, s.last_run,"
            " (SELECT COUNT(*) FROM baseline b WHERE b.scope = s.scope) FROM scopes s ORDER BY s.scope"
        ).fetchall()
        keys = ("scope", "connector", "segment", "identifier", "updated", "last_run", "profiles")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    @guarded
    def size(self, scope: str) -> int:
        self.fold(scope)
        return int(self.db.execute("SELECT COUNT(*) FROM baseline WHERE scope=?", (scope,)).fetchone()[0])

    @guarded
    def rows(self, scope: str) -> Iterator[tuple[str, bytes]]:
        self.fold(scope)
        yield from self.db.execute(
            "SELECT customer_id, digest FROM baseline WHERE scope=? ORDER BY customer_id", (scope,)
        )

    @guarded
    def known(self, scope: str, ids: list[str]) -> tuple[dict[str, bytes], set[str]]:
        """For the relay's echo check (after ``fold``): the params digest acknowledged for each of
        ``ids`` that the baseline holds, and which of them had a removal acknowledged."""
        digests: dict[str, bytes] = {}
        removed: set[str] = set()
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            sql = f"SELECT customer_id, digest FROM baseline WHERE scope=? AND customer_id IN ({marks})"
            digests.update(self.db.execute(sql, (scope, *part)))
            sql = f"SELECT customer_id FROM baseline_removed WHERE scope=? AND customer_id IN ({marks})"
            removed.update(r[0] for r in self.db.execute(sql, (scope, *part)))
        return digests, removed

    @guarded
    def replace(self, scope: str, rows: Iterator[tuple[str, bytes]]) -> int:
        """The scope's baseline becomes exactly ``rows`` (all or nothing)."""
        n = 0
        with transaction(self.db) as db:
            db.execute("DELETE FROM baseline WHERE scope=?", (scope,))
            db.execute("DELETE FROM baseline_moves WHERE scope=?", (scope,))
            while chunk := [(scope, cid, d) for cid, d in itertools.islice(rows, _CHUNK)]:
                db.executemany("INSERT INTO baseline (scope, customer_id, digest) VALUES (?,?,?)", chunk)
                n += len(chunk)
        return n


# --- the diff's scratch database ---------------------------------------------------------------


# A snapshot row as staged: its line, id, params digest, params (JSON), and the row as read
# (serialized by the caller, for --rejects; empty when there is no --rejects).
Staged = tuple[int, str, bytes, bytes, bytes]


class Counts(NamedTuple):
    staged: int  # rows with an id that occurs once
    changed: int  # NEW and MODIFIED
    removed: int  # in the baseline, not in the snapshot
    baseline: int  # the baseline's size


def scratch_error(e: sqlite3.Error) -> StateError | None:
    """The diff's scratch database failed (before anything was sent); None: a bug."""
    kind = sqlite_trouble(e)
    if kind == "full":
        return DiskFullError(
            "the temporary folder ran out of space for the sync's scratch database; nothing was sent",
            hint="Free some space there, or point $SQLITE_TMPDIR (or $TMPDIR) at a folder with room.",
        )
    if kind is not None:
        return StateError(
            f"the sync's scratch database in the temporary folder failed ({e}); nothing was sent",
            hint="Check $SQLITE_TMPDIR (or $TMPDIR, else /var/tmp or /tmp): it must be a writable folder.",
        )
    return None


_F = TypeVar("_F", bound=Callable[..., Any])


def _before_sending(fn: _F) -> _F:
    """A step of the diff's preparation: a SQLite error the machine causes is a ``scratch_error``."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as e:
            err = scratch_error(e)
            if err is None:
                raise
            raise err from e

    return cast("_F", call)


class Snapshot:
    """The diff's scratch database: a snapshot staged, diffed against a scope's baseline.

    A private temporary file in SQLite's temporary folder ($SQLITE_TMPDIR, $TMPDIR, /var/tmp or
    /tmp), created 0600 and unlinked at once by SQLite: nothing of it is left when closed. The
    journal is attached as ``j``. Tables: ``snap`` (the staged rows), ``held`` (ids of rows
    rejected for something other than their id: in the snapshot, so never removed), ``dup`` (ids
    that occur more than once), ``changes`` (the rows to send as NEW or MODIFIED: only row ids,
    a copy of the params would double the disk traffic) and ``gone`` (ids to remove).

    The preparation (up to ``diff``) raises ``scratch_error``s: nothing was sent yet. Reading
    the changes raises SQLite's own errors.
    """

    @_before_sending
    def __init__(self, journal: Path, cache_kib: int = 32768) -> None:
        self.db = sqlite3.connect("", isolation_level=None)
        try:
            self.db.execute(f"PRAGMA cache_size=-{cache_kib}")
            self.db.execute("ATTACH DATABASE ? AS j", (str(journal),))
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    @_before_sending
    def origin(self, scope: str) -> dict[str, str | None] | None:
        """What the scope's baseline was built with (endpoint, segment_name, identifier; a value is
        None if recorded before 1.1); None if the scope has no baseline."""
        row = self.db.execute(
            "SELECT endpoint, segment_name, identifier FROM j.scopes WHERE scope = ?", (scope,)
        ).fetchone()
        if row is None or not self.db.execute("SELECT 1 FROM j.baseline WHERE scope = ?", (scope,)).fetchone():
            return None
        return dict(zip(("endpoint", "segment_name", "identifier"), row, strict=True))

    @_before_sending
    def stage(self, rows: Iterable[Staged], held: list[tuple[str]]) -> None:
        """Stage the snapshot's rows; ``held`` is a list the rows' producer appends ids to as it
        goes (rows rejected for a bad cell), emptied here after each chunk."""
        db = self.db
        db.execute(
            "CREATE TABLE snap (line INTEGER NOT NULL, id TEXT NOT NULL, digest BLOB NOT NULL, params BLOB NOT NULL,"
            " record BLOB NOT NULL)"
        )
        db.execute("CREATE TABLE held (id TEXT NOT NULL)")
        it = iter(rows)
        with transaction(db):
            while chunk := list(itertools.islice(it, _CHUNK)):
                db.executemany("INSERT INTO snap VALUES (?,?,?,?,?)", chunk)
                db.executemany("INSERT INTO held VALUES (?)", held)
                held.clear()
            db.executemany("INSERT INTO held VALUES (?)", held)  # rejected rows after the last chunk
            held.clear()
        db.execute("CREATE INDEX held_id ON held(id)")
        db.execute("CREATE INDEX snap_id ON snap(id)")
        db.execute("CREATE TABLE dup AS SELECT id FROM snap GROUP BY id HAVING COUNT(*) > 1")
        db.execute("CREATE UNIQUE INDEX dup_id ON dup(id)")

    @_before_sending
    def duplicates(self) -> list[tuple[int, str, bytes]]:
        """(line, id, record) of every row whose id occurs more than once, by line."""
        query = "SELECT s.line, s.id, s.record FROM snap s JOIN dup d ON d.id = s.id ORDER BY s.line"
        return self.db.execute(query).fetchall()

    @_before_sending
    def diff(self, scope: str) -> Counts:
        """Compare the staged rows (but duplicates) with the scope's baseline ('' for none: all NEW)."""
        db = self.db
        db.execute(
            "CREATE TABLE changes AS SELECT s.rowid AS rid, (b.digest IS NULL) AS is_new"
            " FROM snap s LEFT JOIN j.baseline b ON b.scope = ? AND b.customer_id = s.id"
            " WHERE (b.digest IS NULL OR b.digest != s.digest) AND s.id NOT IN (SELECT id FROM dup)"
            " ORDER BY s.rowid",
            (scope,),
        )
        db.execute(
            "CREATE TABLE gone AS SELECT b.customer_id AS id FROM j.baseline b"
            " WHERE b.scope = ? AND NOT EXISTS (SELECT 1 FROM snap s WHERE s.id = b.customer_id)"
            " AND NOT EXISTS (SELECT 1 FROM held h WHERE h.id = b.customer_id) ORDER BY b.customer_id",
            (scope,),
        )
        (staged,) = db.execute("SELECT COUNT(*) FROM snap WHERE id NOT IN (SELECT id FROM dup)").fetchone()
        (changed,) = db.execute("SELECT COUNT(*) FROM changes").fetchone()
        (removed,) = db.execute("SELECT COUNT(*) FROM gone").fetchone()
        (baseline,) = db.execute("SELECT COUNT(*) FROM j.baseline WHERE scope = ?", (scope,)).fetchone()
        return Counts(staged, changed, removed, baseline)

    def changes(self) -> Iterator[tuple[int, str, bytes, bytes, int]]:
        """(line, id, params, digest, is_new) of the rows to send as NEW or MODIFIED, in file order.
        The cursor itself: no layer between SQLite and the batches."""
        return self.db.execute(
            "SELECT s.line, s.id, s.params, s.digest, c.is_new FROM changes c JOIN snap s ON s.rowid = c.rid"
            " ORDER BY c.rowid"
        )

    def gone(self) -> Iterator[tuple[str]]:
        """(id,) of each profile to send as REMOVED, in key order (the cursor itself)."""
        return self.db.execute("SELECT id FROM gone ORDER BY rowid")

    def record(self, line: int) -> bytes | None:
        """The row as staged on ``line`` (for a profile too large for a request: rare, so indexed only then)."""
        self.db.execute("CREATE INDEX IF NOT EXISTS snap_line ON snap(line)")
        got = self.db.execute("SELECT record FROM snap WHERE line = ?", (line,)).fetchone()
        return None if got is None else cast("bytes", got[0])
