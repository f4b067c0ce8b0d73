"""Sources of records: a file (or stdin) -> a stream of ``(line_number, record)``.

``Source`` is the seam: what a push or a sync reads from, whatever it is (a file today, a durable
queue next). ``FileSource`` is the file or stdin: CSV or JSONL, optionally gzipped, read once
(the SHA-256 that ``retry`` checks is taken on the way, ``rawinput.py``). Records are described in
``records.py``; the CSV reader is ``csvread.py``. Line numbers are physical: the line a record
starts on.

Everything streams: one line at a time from the (optionally gzipped) byte stream. Problems
that make the whole input unusable (missing file, binary or UTF-16 data, no header, a stream
that breaks before the first record) raise ``InputError`` before the first record is produced,
so nothing has been sent yet. Damage found later (a quoted field that is never closed, a
truncated .gz) stops reading there: the lines it spoils come out as ``Unreadable`` records and
``Source.damage`` says what happened and where, for the run to end with exit 2.
"""

from __future__ import annotations

import gzip
import io
import itertools
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypedDict

from ..errors import DAMAGED, READ_ERRORS, InputError, read_problem
from .csvread import csv_records, header_looks_like_data, read_header, shown_columns, sniff_delimiter
from .rawinput import GZIP_MAGIC, HashingReader, check_text, estimate_rows, gzip_size, whole_lines
from .records import Format, Record, Unreadable, jsonl_records

__all__ = [
    "FileSource",
    "Format",
    "Origin",
    "Record",
    "Source",
    "RecordsSource",
    "Unreadable",
    "detect_format",
    "header_looks_like_data",
    "open_source",
    "shown_columns",
    "sniff_delimiter",
]

_SNIFF = 8192
_BUFFER = 1 << 16
_SUFFIXES: dict[str, Format] = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class Origin(TypedDict):
    """What ``retry`` needs to rebuild a source, and how far it has been read.

    ``input``: the file (its absolute path) or ``-``; ``input_sha256``: the SHA-256 of all its
    bytes, once they have all been read (None before, and for stdin); ``read_bytes`` and
    ``read_sha256``: the bytes read so far and their SHA-256 (None: stdin); ``size``: the file's
    size when it was opened. A run killed mid-way is rebuilt after checking that prefix."""

    input: str
    input_sha256: str | None
    read_bytes: int
    read_sha256: str | None
    size: int | None


class Source(Protocol):
    """Records to push or sync, with the columns they have (CSV: from the header)."""

    name: str  # for messages: the path as given, <stdin>
    format: Format
    columns: list[str] | None
    records: Iterator[tuple[int, Record]]
    estimated_rows: int | None  # about how many rows there are (None: no telling)
    # Set when reading stopped at damage (an unclosed quote, a truncated stream), once the records
    # are exhausted: ``file:line: what happened`` and what to do with the input before a push.
    damage: str | None
    damage_fix: str | None

    def verify(self) -> None:
        """Before anything is sent: refuse an input that cannot be read to the end, where that can
        be known cheaply (a .gz file), instead of stopping mid-run."""

    def origin(self) -> Origin:
        """What retry needs to read this input again, and how far it has been read."""
        ...

    def close(self) -> None: ...


@dataclass
class FileSource:
    """An opened file or stdin: its format, its columns (CSV: from the header) and its records."""

    name: str
    format: Format
    columns: list[str] | None
    records: Iterator[tuple[int, Record]]
    delimiter: str | None = None
    _stream: IO[bytes] | IO[str] | None = field(default=None, repr=False)
    _raw: IO[bytes] | None = field(default=None, repr=False)
    estimated_rows: int | None = None  # from the file size and the first lines
    damage: str | None = None
    damage_fix: str | None = None
    compressed: bool = False
    _hashing: HashingReader | None = field(default=None, repr=False)  # None: stdin
    _path: str | None = field(default=None, repr=False)  # the file's absolute path (None: stdin)
    _size: int | None = None

    def verify(self) -> None:
        """A .gz file is decompressed once without parsing, so a truncated or corrupt one is refused
        now; its exact line count then replaces the estimate. Nothing to do for other inputs."""
        if self.compressed and self._path is not None:
            self.estimated_rows = max(whole_lines(self.name) - (1 if self.format == "csv" else 0), 0)

    def origin(self) -> Origin:
        h = self._hashing
        if h is None or self._path is None:
            return Origin(input="-", input_sha256=None, read_bytes=0, read_sha256=None, size=None)
        digest = h.hexdigest()
        whole = digest if h.at_end else None
        return Origin(input=self._path, input_sha256=whole, read_bytes=h.count, read_sha256=digest, size=self._size)

    def close(self) -> None:
        if self._raw is sys.stdin.buffer:
            return  # never close the process's stdin
        for f in (self._stream, self._raw):
            if f is not None and f is not sys.stdin.buffer:
                f.close()


def detect_format(name: str, explicit: str | None) -> Format | None:
    if explicit:
        if explicit not in ("csv", "jsonl"):
            raise InputError(f"unknown --format {explicit!r}; use csv or jsonl (push also reads engine or copernica)")
        return explicit  # type: ignore[return-value]
    suffixes = [s.lower() for s in Path(name).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return _SUFFIXES.get(suffixes[-1]) if suffixes else None


def open_source(path: str, fmt: str | None = None, delimiter: str | None = None) -> FileSource:
    """Open ``path`` (``-`` for stdin) and check it can be read, before anything is sent."""
    fmt_ = detect_format(path, fmt) if (path != "-" or fmt) else None
    if path == "-":
        return _open_stream(sys.stdin.buffer, "<stdin>", fmt_, delimiter)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file", hint="Check the path; use - to read from stdin.")
    if p.is_dir():
        raise InputError(f"{path}: is a folder, not a file")
    try:
        hashing = HashingReader(open(p, "rb", buffering=0))  # noqa: SIM115 - closed by FileSource.close
        size = os.fstat(hashing.fileno()).st_size
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror}") from None
    raw = io.BufferedReader(hashing, _BUFFER)
    if fmt_ is None:
        raw.close()
        raise InputError(
            f"{path}: cannot tell the format from the file name",
            hint="Name it .csv, .tsv, .jsonl or .ndjson (optionally .gz), or pass --format csv|jsonl.",
        )
    try:
        return _open_stream(raw, path, fmt_, delimiter, hashing, size)
    except BaseException:
        raw.close()
        raise


def _open_stream(
    raw: IO[bytes],
    shown: str,
    fmt_: Format | None,
    delimiter: str | None,
    hashing: HashingReader | None = None,
    size: int | None = None,
) -> FileSource:
    """``hashing``, ``size``: a file's (None: stdin)."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
    stream: IO[bytes] = buffered
    text_size = size
    try:
        compressed = buffered.peek(2)[:2] == GZIP_MAGIC
        if compressed:
            stream = io.BufferedReader(gzip.GzipFile(fileobj=buffered))  # type: ignore[arg-type,type-var]
            text_size = gzip_size(hashing.fileno(), size) if hashing is not None and size else None
        head = stream.peek(_SNIFF)[:_SNIFF]  # type: ignore[attr-defined]
    except READ_ERRORS as e:
        raise InputError(f"{shown}: cannot be read: {read_problem(e)}", hint=DAMAGED) from None
    check_text(head, shown)
    if not head.strip(b"\xef\xbb\xbf \r\n\t"):
        raise InputError(
            f"{shown}: is empty", hint="Expected a header line and rows (CSV) or one JSON object per line (JSONL)."
        )
    if fmt_ is None:  # stdin without --format: JSONL starts with '{'
        fmt_ = "jsonl" if head.lstrip(b"\xef\xbb\xbf \r\n\t").startswith(b"{") else "csv"
    estimate = estimate_rows(head, text_size, fmt_ == "csv")
    path = str(Path(shown).resolve()) if hashing is not None else None
    source = FileSource(
        shown, fmt_, None, iter(()), None, stream, raw, estimate, None, None, compressed, hashing, path, size
    )
    if fmt_ == "jsonl":
        return _started(source, jsonl_records(stream, source))
    # C-level decoding and parsing; bytes that are not UTF-8 become lone surrogates, and the row
    # that holds them is rejected when it is normalized and encoded (normalize.py), not the whole file.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    source._stream = text
    source.columns, source.delimiter = read_header(text, shown, delimiter)
    return _started(source, csv_records(source, text, source.columns, source.delimiter))


def _started(source: FileSource, records: Iterator[tuple[int, Record]]) -> FileSource:
    """Read the first record now, so that a stream that breaks before it is an ``InputError``
    raised before anything is sent (the records generator raises it there)."""
    first = next(records, None)
    source.records = records if first is None else itertools.chain((first,), records)
    return source


@dataclass
class RecordsSource:
    """Records handed over in Python (the API's ``canopycli.push(iterable_of_dicts, ...)``): each
    dict is read as a JSONL line would be, numbered from 1. Like stdin, it cannot be read again:
    ``retry`` resends what the journal holds and says so for the rest."""

    records: Iterator[tuple[int, Record]]
    name: str = "<records>"
    format: Format = "jsonl"
    columns: list[str] | None = None
    estimated_rows: int | None = None
    damage: str | None = None
    damage_fix: str | None = None

    @classmethod
    def of(cls, items: Iterable[Any]) -> RecordsSource:
        def numbered() -> Iterator[tuple[int, Record]]:
            for n, item in enumerate(items, 1):
                if isinstance(item, dict):
                    yield n, item
                else:
                    yield n, Unreadable(f"not a dict (got {type(item).__name__})", repr(item)[:200])

        return cls(numbered())

    def verify(self) -> None:
        pass

    def origin(self) -> Origin:
        return Origin(input="-", input_sha256=None, read_bytes=0, read_sha256=None, size=None)

    def close(self) -> None:
        pass
