"""Opening the journal: one SQLite file (WAL) in the state folder, a connection per role.

``connect(path, role)`` opens a connection for one use of the journal: ``cli`` (a command: push,
sync, retry, runs, state), and later the relay's ``intake`` and ``flusher``. Each role has its
own connection, used by one thread (SQLite's WAL lets a writer and readers work side by side and
serializes writers with the busy timeout), never one connection shared behind a lock.

Every state change is committed at once; with WAL and ``synchronous=NORMAL`` a killed process
loses nothing that was committed. Writes that belong together go through ``transaction()``.

The database is created ``0600`` before SQLite opens it, so SQLite's ``-wal`` and ``-shm`` files
(which take the database's mode) are owner-only from their first byte; older files left wider are
tightened. SQLite errors the machine causes (a full disk, a read-only or damaged file) become a
``StateError`` (``DiskFullError``) saying what to do (``Guard``); once a run has started it is
marked ``during_run`` (exit 1 if batches may have been sent, and the CLI names ``canopycli retry
RUN_ID``): every outcome committed before the error is kept and a failed write is rolled back
whole, so the run can be finished once the cause is fixed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import inspect
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

from ..errors import DiskFullError, StateError
from . import schema
from .locks import os_error, owner_only

JOURNAL = "journal.sqlite3"
ROLES = ("cli", "intake", "flusher")
BUSY_TIMEOUT = 30  # seconds a write waits for another connection's
_CACHE_KIB = 16384  # 16 MiB: baseline upserts touch pages all over the index

Effect = Callable[[sqlite3.Connection], None]
"""A write committed in the same transaction as something else (a batch's acknowledgement)."""


def now() -> str:
    """The one timestamp format (journal, reports, exports): UTC, ISO 8601, milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, *, immediate: bool = False) -> Iterator[sqlite3.Connection]:
    """BEGIN ... COMMIT, or ROLLBACK on any exception (re-raised). ``immediate`` takes the write
    lock at once (a read-then-write that another process must not interleave)."""
    db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (a full disk, an I/O error): the original error matters
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def connect(path: Path, role: str) -> sqlite3.Connection:
    """The journal at ``path``, created owner-only if new, migrated to the current schema."""
    if role not in ROLES:
        raise ValueError(f"unknown journal role {role!r} (one of {', '.join(ROLES)})")
    guard = Guard(path)
    _prepare(path)
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as e:
        guard.fail(e)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # The relay answers 202 once its events are committed: that commit survives power loss too.
        db.execute("PRAGMA synchronous=FULL" if role == "intake" else "PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db, path)
    except sqlite3.Error as e:
        db.close()
        guard.fail(e)
    except BaseException:
        db.close()
        raise
    return db


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Apply the migrations the journal lacks (all or none); see ``schema``."""
    if version(db) == schema.VERSION:
        return
    with transaction(db, immediate=True):  # two processes opening an old journal: one migrates
        at = version(db)  # again, inside: the other one may have migrated meanwhile
        if at > schema.VERSION:
            raise StateError(
                f"the run journal {path} was written by a newer canopycli "
                f"(schema version {at}; this one knows up to {schema.VERSION})",
                hint="Upgrade canopycli, or pass --state-dir DIR for a folder of its own.",
            )
        for number in range(at + 1, schema.VERSION + 1):
            schema.MIGRATIONS[number - 1](db)
        db.execute(f"PRAGMA user_version = {schema.VERSION}")


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


# --- what a SQLite error means -----------------------------------------------------------------

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


class Guard:
    """What a SQLite error on one journal connection means for the user.

    ``run``: the run this process drives (for the resume hint), ``sent``: whether it may have
    sent something. Shared by the parts of a ``Store`` that use the connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run: str | None = None
        self.sent = False

    def trouble(self, e: sqlite3.Error) -> StateError | None:
        """A SQLite error the machine caused, as what to do next (None: a bug, raised as it is)."""
        kind = sqlite_trouble(e)
        if kind is None:
            return None
        message, fix, otherwise = _WHAT_TO_DO[kind]
        message = message.format(p=self.path, e=e)
        cls = DiskFullError if kind == "full" else StateError
        if self.run is None:
            return cls(message, hint=f"{fix}, {otherwise}")
        # a run is at stake: it stays in this journal (so no --state-dir), and the CLI names its retry
        return cls(message, hint=f"{fix}.").during_run(self.run, self.sent)  # type: ignore[return-value]

    def fail(self, e: sqlite3.Error) -> NoReturn:
        err = self.trouble(e)
        if err is None:
            raise e
        raise err from e


_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(fn: _F) -> _F:
    """A method (of an object with a ``guard``) whose SQLite errors, when the machine caused them,
    become a ``StateError``."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(self, *args, **kwargs)
            except sqlite3.Error as e:
                self.guard.fail(e)

        return cast("_F", gen)

    @functools.wraps(fn)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as e:
            self.guard.fail(e)

    return cast("_F", call)
