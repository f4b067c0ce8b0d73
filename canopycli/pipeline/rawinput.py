"""An input's bytes, below the parsers: hashed as they are read, sized, checked to be text.

The input is read once: ``HashingReader`` sits between the file and everything that reads it
(gzip, the text decoder, the parsers), so the SHA-256 that lets ``retry`` re-read the same input
safely comes with the records, not from a pass of its own. The quota check before sending needs
a row count before the rows are read: ``estimate_rows`` makes one from the size and the first
lines (a .gz says its uncompressed size in its last four bytes). The one exception to reading
once: a .gz *file* that a push is about to send is decompressed once without parsing
(``whole_lines``), so a truncated one is refused before anything is sent, not mid-run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from typing import Any

from ..errors import DAMAGED, READ_ERRORS, InputError, read_problem

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


class HashingReader(io.RawIOBase):
    """A file's bytes as they are read, hashed (SHA-256) and counted on the way through."""

    def __init__(self, raw: io.RawIOBase) -> None:
        super().__init__()
        self._raw = raw
        self._sha = hashlib.sha256()
        self.count = 0  # bytes read so far
        self.at_end = False  # the end of the file was reached: the digest is the whole file's

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._raw.readinto(b)
        if n:
            self._sha.update(memoryview(b)[:n])
            self.count += n
        elif n == 0 and len(b):
            self.at_end = True
        return n or 0

    def hexdigest(self) -> str:
        """The SHA-256 of the bytes read so far (reading can go on)."""
        return self._sha.hexdigest()

    def fileno(self) -> int:
        return self._raw.fileno()

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def check_text(head: bytes, shown: str) -> None:
    """Refuse data that is not UTF-8 text: UTF-16/32 (say how to convert it) and binary files."""
    hint = "Convert it to UTF-8: iconv -f {0} -t UTF-8 in.csv > out.csv (or export the segment as UTF-8)."
    for bom, enc in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32")):
        if head.startswith(bom):
            raise InputError(f"{shown}: is {enc} text; canopycli reads UTF-8", hint=hint.format(enc))
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or _nul_interleaved(head):
        raise InputError(f"{shown}: is UTF-16 text; canopycli reads UTF-8", hint=hint.format("UTF-16"))
    if b"\x00" in head:
        raise InputError(
            f"{shown}: looks like a binary file, not CSV or JSONL text",
            hint="Export the segment as UTF-8 CSV or JSONL.",
        )


def _nul_interleaved(head: bytes) -> bool:
    """UTF-16 without a byte order mark: mostly ASCII text with a NUL in every other byte."""
    sample = head[:512]
    sample = sample[: len(sample) // 2 * 2]
    if len(sample) < 4:
        return False
    even, odd = sample[0::2], sample[1::2]
    for zeros, other in ((odd, even), (even, odd)):  # little-endian, big-endian
        if zeros.count(0) >= 0.9 * len(zeros) and other.count(0) <= 0.1 * len(other):
            return True
    return False


def gzip_size(fd: int, size: int) -> int | None:
    """The uncompressed size a .gz file of ``size`` bytes states in its trailer (ISIZE, modulo
    2**32; the last member's), read in place without moving the file's position."""
    if size < 18:  # shorter than an empty gzip member
        return None
    try:
        return int.from_bytes(os.pread(fd, 4, size - 4), "little")
    except OSError:
        return None


def estimate_rows(head: bytes, size: int | None, header_lines: int) -> int | None:
    """About how many rows an input of ``size`` (uncompressed) bytes holds, from its first bytes
    ``head``: exact when ``head`` is all of it, else by the length of the lines in ``head``."""
    if not size:
        return None
    newlines = head.count(b"\n")
    if len(head) >= size:
        lines = newlines + (0 if head.endswith(b"\n") else 1)
    elif newlines:
        lines = round(size * newlines / (head.rindex(b"\n") + 1))
    else:
        return None  # a line longer than the sample: no telling
    return max(lines - header_lines, 0)


def whole_lines(path: str) -> int:
    """Read a .gz file through, decompressing without parsing: its number of lines. A truncated or
    corrupt file is an ``InputError`` here, before anything is sent."""
    lines = 0
    try:
        with gzip.open(path, "rb") as g:
            for chunk in iter(lambda: g.read(_CHUNK), b""):
                lines += chunk.count(b"\n")
    except READ_ERRORS as e:
        raise InputError(
            f"{path}: cannot be read to the end: {read_problem(e)} (somewhere after line {lines:,}); nothing was sent",
            hint=DAMAGED,
        ) from None
    return lines


def file_sha256(path: str, limit: int | None = None) -> tuple[str, int]:
    """The SHA-256 of a file's bytes (of its first ``limit`` bytes) and how many there were."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as fh:
        while limit is None or n < limit:
            chunk = fh.read(_CHUNK if limit is None else min(_CHUNK, limit - n))
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n
