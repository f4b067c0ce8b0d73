"""Output paths (``--report-json``, ``--rejects``, ``--out``, ``state export FILE``), checked up front.

A path that cannot be written must stop a run *before* anything is sent: finding out after a
million profiles were delivered that the report cannot be saved helps nobody. ``check_file``
and ``check_dir`` raise ``OutputError`` (exit 2) naming the option, the path and the reason.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import OutputError

STDOUT = "-"  # for commands that can write their file to stdout


def reason(e: OSError) -> str:
    """A short, human reason for an OS error (``No space left on device``), without a traceback."""
    return e.strerror or errno.errorcode.get(e.errno or 0, type(e).__name__)


def check_file(path: str | os.PathLike[str] | None, option: str, stdout_ok: bool = True) -> None:
    """``path`` can be created or overwritten as a file (nothing is written yet); ``-`` is stdout
    where the option allows it, and refused (not a file named ``-``) where it does not."""
    if path is None:
        return
    if str(path) == STDOUT:
        if stdout_ok:
            return
        raise OutputError(f"{option} needs a file name; - (stdout) is taken by the results", hint="Nothing was sent.")
    p = Path(path)
    problem = None
    if p.is_dir():
        problem = "is a folder; give a file name"
    elif p.exists():
        if not os.access(p, os.W_OK):
            problem = "is not writable"
    else:
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.exists():
            problem = f"its folder {parent} does not exist"
        elif not parent.is_dir():
            problem = f"{parent} is not a folder"
        elif not os.access(parent, os.W_OK | os.X_OK):
            problem = f"its folder {parent} is not writable"
    if problem:
        raise OutputError(f"{option} {p}: {problem}", hint="Nothing was sent. Choose another path and run it again.")


def check_dir(path: str | os.PathLike[str] | None, option: str) -> None:
    """``path`` is a folder that exists or can be created (it is created now)."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{option} {p}: is a file, not a folder", hint="Nothing was sent. Give a folder.")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{option} {p}: cannot create the folder: {reason(e)}", hint="Nothing was sent.") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {p}: the folder is not writable", hint="Nothing was sent.")


def write_failed(e: OSError, what: str) -> OutputError:
    """An error for a write that failed mid-run (a full disk, a vanished folder)."""
    name = f" {e.filename}" if e.filename else ""
    return OutputError(f"cannot write {what}{name}: {reason(e)}", hint="Free some space or fix the path.")
