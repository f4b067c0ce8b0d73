"""Readers: a file (or stdin) -> a stream of ``(line_number, record)``.

A record is a ``list`` of cells in the header's order (CSV: no dict is built per row), a
``dict`` (a JSONL object), or a ``str`` giving the reason the physical record could not be read
(a JSONL line that is not a JSON object, a CSV row with the wrong number of fields). Line numbers are physical: the line a record starts on.

Everything streams: one line at a time from the (optionally gzipped) byte stream. Problems
that make the whole input unusable (missing file, binary data, no header) raise
``InputError`` before the first record is produced, so nothing has been sent yet.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from .errors import InputError

Format = Literal["csv", "jsonl"]
Record = list[str] | dict[str, Any] | str
_SNIFF = 8192
_DELIMITERS = (",", ";", "\t", "|")
_SUFFIXES: dict[str, Format] = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

csv.field_size_limit(10 * 1024 * 1024)


@dataclass
class Source:
    """An opened input: its format, its columns (CSV: from the header) and its records."""

    name: str
    format: Format
    columns: list[str] | None
    records: Iterator[tuple[int, Record]]
    delimiter: str | None = None
    _stream: IO[bytes] | None = field(default=None, repr=False)
    _raw: IO[bytes] | None = field(default=None, repr=False)
    estimated_rows: int | None = None  # from the file size and the first lines, for sizing tables

    def close(self) -> None:
        if self._raw is sys.stdin.buffer:
            return  # never close the process's stdin
        for f in (self._stream, self._raw):
            if f is not None and f is not sys.stdin.buffer:
                f.close()


def detect_format(name: str, explicit: str | None) -> Format | None:
    if explicit:
        if explicit not in ("csv", "jsonl"):
            raise InputError(f"unknown --format {explicit!r}; use csv or jsonl")
        return explicit  # type: ignore[return-value]
    suffixes = [s.lower() for s in Path(name).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return _SUFFIXES.get(suffixes[-1]) if suffixes else None


def open_source(path: str, fmt: str | None = None, delimiter: str | None = None) -> Source:
    """Open ``path`` (``-`` for stdin) and check it can be read, before anything is sent."""
    fmt_ = detect_format(path, fmt) if (path != "-" or fmt) else None
    raw: IO[bytes]
    size: int | None = None
    if path == "-":
        raw = sys.stdin.buffer
        shown = "<stdin>"
    else:
        shown = path
        p = Path(path)
        if not p.exists():
            raise InputError(f"{path}: no such file", hint="Check the path; use - to read from stdin.")
        if p.is_dir():
            raise InputError(f"{path}: is a folder, not a file")
        try:
            raw = open(p, "rb")  # noqa: SIM115 - closed by Source.close
            size = p.stat().st_size
        except OSError as e:
            raise InputError(f"{path}: cannot open: {e.strerror}") from None
        if fmt_ is None:
            raw.close()
            raise InputError(
                f"{path}: cannot tell the format from the file name",
                hint="Name it .csv, .jsonl or .ndjson (optionally .gz), or pass --format csv|jsonl.",
            )
    try:
        return _open_stream(raw, shown, fmt_, delimiter, size)
    except BaseException:
        if raw is not sys.stdin.buffer:
            raw.close()
        raise


def _open_stream(raw: IO[bytes], shown: str, fmt_: Format | None, delimiter: str | None, size: int | None) -> Source:
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
    stream: IO[bytes] = buffered
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=buffered)  # type: ignore[assignment]
        stream = io.BufferedReader(stream)  # type: ignore[arg-type,type-var]
    try:
        head = stream.peek(_SNIFF)[:_SNIFF]  # type: ignore[attr-defined]
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(f"{shown}: cannot read: {e}", hint="Is the .gz file complete?") from None
    if b"\x00" in head:
        raise InputError(
            f"{shown}: looks like a binary file, not CSV or JSONL text",
            hint="Export the segment as UTF-8 CSV or JSONL.",
        )
    if not head.strip(b"\xef\xbb\xbf \r\n\t"):
        raise InputError(
            f"{shown}: is empty", hint="Expected a header line and rows (CSV) or one JSON object per line (JSONL)."
        )
    if fmt_ is None:  # stdin without --format: JSONL starts with '{'
        fmt_ = "jsonl" if head.lstrip(b"\xef\xbb\xbf \r\n\t").startswith(b"{") else "csv"
    estimate = None
    if size and head.count(b"\n") and stream is buffered:  # not for gzip: its size says little
        estimate = int(size / (len(head) / head.count(b"\n")))
    if fmt_ == "jsonl":
        return Source(shown, "jsonl", None, _jsonl_records(stream), None, stream, raw, estimate)
    # C-level decoding and parsing; bytes that are not UTF-8 become lone surrogates, and the row
    # that holds them is rejected when it is normalized and encoded (normalize.py), not the whole file.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")  # type: ignore[type-var]
    header_line = text.readline()
    if _has_surrogates(header_line):
        raise InputError(f"{shown}:1: the header is not valid UTF-8", hint="Re-export the file as UTF-8.")
    delim = delimiter or sniff_delimiter(header_line)
    if len(delim) != 1:
        raise InputError(f"--delimiter must be one character, got {delim!r}")
    header = [h.strip() for h in next(csv.reader([header_line], delimiter=delim), [])]
    if not any(header):
        raise InputError(f"{shown}:1: the header line is empty")
    seen: set[str] = set()
    dupes = [h for h in header if h in seen or seen.add(h)]  # type: ignore[func-returns-value]
    if dupes:
        raise InputError(f"{shown}:1: repeated column name(s) in the header: {', '.join(sorted(set(dupes)))}")
    return Source(shown, "csv", header, _csv_records(text, header, delim), delim, text, raw, estimate)  # type: ignore[arg-type]


def _has_surrogates(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def sniff_delimiter(header: str) -> str:
    """The most frequent of , ; TAB | in the header line (``,`` when there is none)."""
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_records(text: IO[str], header: list[str], delim: str) -> Iterator[tuple[int, Record]]:
    reader = csv.reader(text, delimiter=delim, strict=False)
    width = len(header)
    done = 1  # physical lines consumed so far (the header)
    for values in reader:
        line = done + 1  # the line this record starts on
        done = reader.line_num + 1
        if not values or (len(values) == 1 and width > 1 and not values[0].strip()):
            continue  # blank line
        if len(values) != width:
            yield line, f"has {len(values)} fields, the header has {width}"
            continue
        yield line, values


def _jsonl_records(stream: IO[bytes]) -> Iterator[tuple[int, Record]]:
    loads = orjson.loads
    for n, raw in enumerate(stream, 1):
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            obj = loads(raw)
        except orjson.JSONDecodeError as e:
            msg = str(e).split(":")[0]
            yield n, f"not valid JSON ({msg})"
            continue
        if not isinstance(obj, dict):
            yield n, f"not a JSON object (got {type(obj).__name__})"
            continue
        yield n, obj


def fingerprint(path: str) -> tuple[str, int]:
    """SHA-256 of the file's bytes and its number of (decompressed) lines.

    The digest lets ``retry`` re-read the same input safely; the line count bounds how many
    requests a push can need, for the daily-quota check before anything is sent.
    """
    h = hashlib.sha256()
    lines = 0
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
        fh.seek(0)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            if not gz:
                lines += chunk.count(b"\n")
    if gz:
        with gzip.open(path, "rb") as g:
            for chunk in iter(lambda: g.read(1 << 20), b""):
                lines += chunk.count(b"\n")
    return h.hexdigest(), lines
