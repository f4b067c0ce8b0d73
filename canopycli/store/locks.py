"""The state folder: where the run journal (SQLite) and the push locks live.

``--state-dir``, else ``$CANOPYCLI_STATE_DIR``, else the platform's user state folder
(``~/.local/state/canopycli`` on Linux, following XDG_STATE_HOME).

Locks: one per connector+segment, an ``fcntl.flock`` on a file in ``locks/``. The kernel drops
the lock when its process dies, so a lock left by a crashed or killed push is taken over
without any clean-up. The file holds the holder's pid and run (never the token).

Owner-only: the journal holds hashed emails and, until acknowledged, request bodies. The folder
is created ``0700``; what canopycli creates in it (the journal and SQLite's ``-wal`` and ``-shm``
beside it, ``locks/`` and its files) is ``0600``/``0700``, and tightened to that if found wider.
A folder that already existed with wider modes is left as it is (it may be a folder the user
chose, such as a CI workspace) with a warning on stderr (logger ``canopycli``).

A folder that cannot be used (a file, under a file, read-only) is a ``StateError`` naming it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import stat
import time
from pathlib import Path

import platformdirs

from ..errors import DiskFullError, LockedError, StateError

STATE_ENV = "CANOPYCLI_STATE_DIR"
HINT = "Pass --state-dir DIR or set $CANOPYCLI_STATE_DIR to a folder you can write, or fix the folder's permissions."
FULL_HINT = "Free some space, or pass --state-dir DIR (or set $CANOPYCLI_STATE_DIR) for a folder on another disk."
log = logging.getLogger("canopycli")
_warned: set[Path] = set()


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        p = Path(explicit)
    elif os.environ.get(STATE_ENV):
        p = Path(os.environ[STATE_ENV])
    else:
        p = Path(platformdirs.user_state_dir("canopycli"))
    if not p.is_dir():
        blocker = next((a for a in (*reversed(p.parents), p) if a.exists() and not a.is_dir()), None)
        if blocker is not None:
            what = "is a file" if blocker == p else f"is under {blocker}, which is a file"
            raise StateError(f"the state folder {p} {what}, not a folder", hint=HINT)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.mkdir(mode=0o700)
            os.chmod(p, 0o700)  # exactly: whatever the umask
        except FileExistsError:
            pass  # made by another process meanwhile
        except OSError as e:
            raise os_error(e, f"cannot create the state folder {p}") from e
    if not os.access(p, os.W_OK | os.X_OK):
        raise StateError(f"the state folder {p} is read-only for this user", hint=HINT)
    _warn_if_open(p)
    return p


def _warn_if_open(p: Path) -> None:
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077 and p not in _warned:
        _warned.add(p)
        log.warning(
            f"Warning: the state folder {p} is open to other users (mode {mode:04o}); the files canopycli "
            f"writes in it are owner-only, but to hide their names too: chmod 700 {p}"
        )


def owner_only(path: Path) -> None:
    """Take group and other permissions off one of canopycli's own files or folders (if it is ours)."""
    st = os.stat(path)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, mode & 0o700)


def os_error(e: OSError, what: str) -> StateError:
    """An OS error in the state folder, as a message that says what to do."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"{what}: the disk is full", hint=FULL_HINT)
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StateError(f"{what}: it is read-only for this user ({e.strerror})", hint=HINT)
    return StateError(f"{what}: {e.strerror}", hint=HINT)


class SegmentLock:
    """Held for the length of a push/retry/sync of one connector+segment."""

    def __init__(self, root: Path, connector: str, segment: str) -> None:
        key = hashlib.sha256(f"{connector}\x00{segment}".encode()).hexdigest()[:16]
        locks = root / "locks"
        try:
            if not locks.is_dir():
                if locks.exists():
                    raise StateError(
                        f"{locks} is a file, not a folder", hint="canopycli keeps its locks there: move it away."
                    )
                locks.mkdir(mode=0o700)
                os.chmod(locks, 0o700)
            owner_only(locks)
        except OSError as e:
            raise os_error(e, f"cannot create the lock folder {locks}") from e
        self.path = locks / f"{key}.lock"
        self.segment = segment
        self._fd: int | None = None

    def acquire(self, wait: bool = False, poll: float = 0.2, note: str = "") -> SegmentLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            owner_only(self.path)
        except OSError as e:
            raise os_error(e, f"cannot open the lock file {self.path}") from e
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    holder = self._holder()
                    os.close(fd)
                    raise LockedError(
                        f"another push of {self.segment} is running (pid {holder})",
                        hint="Wait for it to finish, or pass --wait to queue behind it.",
                    ) from None
                time.sleep(poll)
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {note}\n".encode())
        except OSError as e:
            self.release()
            raise os_error(e, f"cannot write the lock file {self.path}") from e
        return self

    def _holder(self) -> str:
        try:
            return self.path.read_text().split()[0]
        except (OSError, IndexError):
            return "unknown"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SegmentLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
