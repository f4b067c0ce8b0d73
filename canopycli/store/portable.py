"""Portable baselines: ``state export`` writes one to a file, ``state import`` loads one.

An export is JSON Lines: a header naming what the baseline belongs to, then ``[id, digest]``
(hex) per profile, in key order; ``.gz`` compresses. An import is all or nothing, and refused
when the file belongs to another segment or another kind of id.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from ..config import Resolved
from ..errors import InputError, OutputError, StateError, checked_lines
from ..outputs import check_file, reason
from .baseline import DIGEST_BYTES, Baselines
from .db import now

STATE_FORMAT = "canopycli-state"
# The header names what the baseline belongs to. Since 1.1 it also has ``segment_name`` and
# ``endpoint``; the version stays 1 (the lines are unchanged, and 1.0 ignores header keys it does
# not know), and an import of a 1.0 export checks the fields it has and warns about the others.
STATE_VERSION = 1
_REEXPORT = "Nothing was imported. Export the baseline again (canopycli state export), or use an earlier copy."
_LABELS = {"connector": "connector", "segment": "segment", "segment_name": "segmentName", "endpoint": "endpoint"}


@dataclass(frozen=True)
class Origin:
    """What a baseline belongs to: the webhook that acknowledged it, as which segment, with which ids."""

    connector: str
    segment: str  # the segment's key in the config
    segment_name: str  # the segmentName sent
    endpoint: str
    identifier: str

    @classmethod
    def of(cls, r: Resolved) -> Origin:
        return cls(r.connector_name, r.segment_key, r.segment_name, r.connector.endpoint, r.connector.identifier)

    def describe(self, fields: list[str]) -> str:
        return describe(vars(self), fields)


def describe(values: dict[str, Any], fields: list[str]) -> str:
    """``fields`` of ``values`` in words, as messages name them (``segmentName 'X', endpoint https://...``)."""
    return ", ".join(f"{_LABELS.get(f, f)} {_shown(f, values[f])}" for f in fields)


def _shown(field: str, value: object) -> str:
    return str(value) if field in ("endpoint", "identifier") else repr(value)


class ExportFile:
    """Where ``state export`` (or ``engagements export``) writes, checked and opened before
    anything else is done.

    A file is written beside its name (owner-only, like the journal: it holds the hashed ids) and
    renamed into place once complete, so a failed export leaves an earlier one as it was; a
    symlink, a device or a FIFO is written through as it is. ``-`` is stdout (never compressed);
    a name ending in ``.gz`` is gzip.
    """

    def __init__(self, name: str, stdout: BinaryIO, command: str = "state export") -> None:
        self.name = name
        self.stream = name == "-"  # stdout, a device, a FIFO: messages then go to stderr
        self._tmp: Path | None = None
        self._raw: BinaryIO
        if name == "-":
            self._raw = stdout
        else:
            path = Path(name)
            check_file(path, command)
            try:
                if path.is_symlink() or (path.exists() and not path.is_file()):  # /dev/stdout, a FIFO, a link
                    self.stream = True  # /dev/stdout may lead to the very file stdout is redirected to
                    self._raw = open(path, "wb")  # noqa: SIM115 - closed by commit/discard
                else:
                    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                    self._tmp = Path(tmp)
                    self._raw = os.fdopen(fd, "wb")
            except OSError as e:
                raise _cannot_write(name, e) from e
        self.fh: BinaryIO = self._raw
        if name != "-" and name.endswith(".gz"):
            self.fh = cast("BinaryIO", gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0))

    def write(self, data: bytes) -> None:
        try:
            self.fh.write(data)
        except BrokenPipeError:
            if self.name == "-":  # the reader went away (`| head`): the CLI stops quietly
                raise
            raise _cannot_write(self.name, BrokenPipeError(32, "Broken pipe")) from None
        except OSError as e:
            raise _cannot_write(self.name, e) from e

    def commit(self) -> None:
        try:
            if self.name == "-":
                self._raw.flush()
                return
            if self.fh is not self._raw:
                self.fh.close()
            self._raw.flush()
            if self._tmp is not None:
                os.fsync(self._raw.fileno())
                self._raw.close()
                os.replace(self._tmp, self.name)
                self._tmp = None
            elif self.name != "-":
                self._raw.close()
        except BrokenPipeError:
            if self.name == "-":
                raise
            raise _cannot_write(self.name, BrokenPipeError(32, "Broken pipe")) from None
        except OSError as e:
            raise _cannot_write(self.name, e) from e

    def discard(self) -> None:
        """After a failure: the temporary file goes, ``name`` is left as it was (a no-op after ``commit``)."""
        if self.name == "-" or self._raw.closed:
            return
        with contextlib.suppress(OSError, ValueError):
            self.fh.close()  # gzip: its trailer, into the file about to go
        with contextlib.suppress(OSError):
            self._raw.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _cannot_write(name: str, e: OSError) -> OutputError:
    where = "stdout" if name == "-" else name
    return OutputError(
        f"cannot write {where}: {reason(e)}", hint="Nothing was exported; an earlier export there is unchanged."
    )


def export_baseline(baselines: Baselines, scope: str, here: Origin, out: ExportFile) -> dict[str, Any]:
    """Write the scope's baseline as JSON Lines: a header, then ``[id, digest]`` per profile.

    The header says what the baseline belongs to as the journal recorded it (``here`` for what a
    journal from before 1.1 did not record), so an export is never labelled with a connector
    setting changed since the baseline was built. A segment never synced (nor imported) there is
    an error: most likely the wrong state folder, and an empty export would pass for a baseline."""
    known = baselines.scope(scope)
    if known is None:
        raise StateError(
            f"no sync baseline of {here.segment_name} (connector {here.connector!r}) in {baselines.path}: "
            "it was never synced or imported there",
            hint="Check --state-dir (or $CANOPYCLI_STATE_DIR), or run `canopycli sync` first.",
        )
    origin = {f: known.get(f) or getattr(here, f) for f in ("connector", "segment", "segment_name", "endpoint")}
    origin["identifier"] = known.get("identifier") or here.identifier
    n = baselines.size(scope)
    header = {"format": STATE_FORMAT, "version": STATE_VERSION, **origin, "profiles": n, "exported": now()}
    out.write(orjson.dumps(header) + b"\n")
    for cid, digest in baselines.rows(scope):
        out.write(orjson.dumps([cid, digest.hex()]) + b"\n")
    return header


def import_baseline(
    baselines: Baselines, scope: str, here: Origin, source: Path | BinaryIO, *, force: bool = False
) -> tuple[int, dict[str, Any], list[str]]:
    """Replace the scope's baseline with the file's (all or nothing), if it belongs here.

    Refused unless it was exported for the same connector, segment, segmentName and endpoint
    (``force`` takes it anyway) and with the same identifier (never forced: hashed emails are
    no baseline for customer ids). Returns the count, the header, and the fields an older export
    does not record (so they could not be checked)."""
    name = "stdin" if not isinstance(source, Path) else str(source)
    with contextlib.ExitStack() as opened:
        lines = checked_lines(_open_export(source, name, opened), name)  # a cut .gz: InputError
        header = _header(lines, name)
        theirs = header.get("identifier")
        if not theirs:
            raise InputError(f"{name}: the header does not say which ids the file holds; it is damaged", hint=_REEXPORT)
        if theirs != here.identifier:
            raise InputError(
                f"{name}: holds {theirs} ids, but connector {here.connector!r} uses {here.identifier}"
                + ("" if not force else "; --force cannot mix them"),
                hint="Import it with the config (connector) it was exported from.",
            )
        missing = [f for f in _LABELS if not header.get(f)]
        differ = [f for f in _LABELS if f not in missing and header[f] != getattr(here, f)]
        if differ and not force:
            raise InputError(
                f"{name}: exported from {describe(header, differ)}; this is {here.describe(differ)}",
                hint="Import it with the config and --segment it was exported from, "
                "or pass --force to load it into this segment anyway.",
            )

        def rows() -> Iterator[tuple[str, bytes]]:
            n = 0
            for n, raw in enumerate(lines, 1):  # noqa: B007
                try:
                    cid, digest = orjson.loads(raw)
                    value = bytes.fromhex(digest)
                except (ValueError, TypeError):
                    value = b""
                    cid = None
                if not isinstance(cid, str) or len(value) != DIGEST_BYTES:
                    raise InputError(f"{name}:{n + 1}: not an [id, digest] line; the file is damaged", hint=_REEXPORT)
                yield cid, value
            if header.get("profiles") not in (None, n):  # raised inside the transaction: nothing changes
                raise InputError(
                    f"{name}: the header says {header['profiles']} profiles, the file holds {n}; it is truncated",
                    hint=_REEXPORT,
                )

        try:
            count = baselines.replace(scope, rows())
        except sqlite3.IntegrityError:
            raise InputError(f"{name}: an id appears twice; the file is damaged", hint=_REEXPORT) from None
    return count, header, [_LABELS[f] for f in missing]


def _open_export(source: Path | BinaryIO, name: str, opened: contextlib.ExitStack) -> BinaryIO:
    """The file (or stdin), gunzipped if it starts with gzip's magic bytes; ``opened`` closes it."""
    try:
        raw = opened.enter_context(open(source, "rb")) if isinstance(source, Path) else source  # noqa: SIM115
    except OSError as e:
        raise InputError(f"{name}: cannot open: {e.strerror}") from None
    buffered = raw if hasattr(raw, "peek") else io.BufferedReader(cast("io.RawIOBase", raw))
    try:
        gz = is_gzip(buffered.peek(2))  # type: ignore[attr-defined]
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e.strerror}") from None
    if gz:
        return cast("BinaryIO", opened.enter_context(gzip.GzipFile(fileobj=buffered, mode="rb")))
    return cast("BinaryIO", buffered)


def _header(lines: Iterator[bytes], name: str) -> dict[str, Any]:
    try:
        header = orjson.loads(next(lines, b""))
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != STATE_FORMAT:
        raise InputError(f"{name}: not a canopycli state export", hint="Make one with: canopycli state export FILE")
    if header.get("version") != STATE_VERSION:
        raise InputError(f"{name}: state format version {header.get('version')} is not supported here")
    return header


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(head: bytes) -> bool:
    """Whether data starting with ``head`` is gzip (its magic bytes), whatever the file is called."""
    return head[:2] == GZIP_MAGIC
