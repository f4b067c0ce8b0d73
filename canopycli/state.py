"""The state folder: where the run journal (SQLite) and the push locks live.

``--state-dir``, else ``$CANOPYCLI_STATE_DIR``, else the platform's user state folder
(``~/.local/state/canopycli`` on Linux, following XDG_STATE_HOME).

Locks: one per connector+segment, an ``fcntl.flock`` on a file in ``locks/``. The kernel drops
the lock when its process dies, so a lock left by a crashed or killed push is taken over
without any clean-up. The file holds the holder's pid and run (never the token).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path

import platformdirs

from .errors import LockedError, StateError

STATE_ENV = "CANOPYCLI_STATE_DIR"


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        p = Path(explicit)
    elif os.environ.get(STATE_ENV):
        p = Path(os.environ[STATE_ENV])
    else:
        p = Path(platformdirs.user_state_dir("canopycli"))
    try:
        p.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise StateError(
            f"cannot create the state folder {p}: {e.strerror}", hint="Pass --state-dir or set $CANOPYCLI_STATE_DIR."
        ) from None
    return p


class SegmentLock:
    """Held for the length of a push/retry/sync of one connector+segment."""

    def __init__(self, root: Path, connector: str, segment: str) -> None:
        key = hashlib.sha256(f"{connector}\x00{segment}".encode()).hexdigest()[:16]
        (root / "locks").mkdir(exist_ok=True)
        self.path = root / "locks" / f"{key}.lock"
        self.segment = segment
        self._fd: int | None = None

    def acquire(self, wait: bool = False, poll: float = 0.2, note: str = "") -> SegmentLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
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
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {note}\n".encode())
        self._fd = fd
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
