"""Readers: a file (or stdin) -> a stream of ``(line_number, record)``.

A record is a ``list`` of cells in the header's order (CSV: no dict is built per row), a
``dict`` (a JSONL object), or an ``Unreadable``: why the physical record is not a row (a JSONL
line that is not a JSON object, a CSV row with the wrong number of fields, a line swallowed by a
quote that is never closed) and what was read, for ``--rejects``. Line numbers are physical: the
line a record starts on.

Everything streams: one line at a time from the (optionally gzipped) byte stream. Problems
that make the whole input unusable (missing file, binary or UTF-16 data, no header, a stream
that breaks before the first record) raise ``InputError`` before the first record is produced,
so nothing has been sent yet. Damage found later (a quoted field that is never closed, a
truncated .gz) stops reading there: the lines it spoils come out as ``Unreadable`` records and
``Source.damage`` says what happened and where, for the run to end with exit 2.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import orjson

from ..errors import InputError

Format = Literal["csv", "jsonl"]


class Unreadable(NamedTuple):
    """A physical record that is not a row: why, and what was read (written to ``--rejects``)."""

    reason: str
    # CSV: the fields of a row with the wrong number of them, or the text of a line that could not
    # be split into fields; JSONL: the line's text. Bytes that are not UTF-8 as lone surrogates.
    raw: list[str] | str


Record = list[str] | dict[str, Any] | Unreadable
_SNIFF = 8192
_FIELD_LIMIT = 10 * 1024 * 1024
# What reading a damaged stream raises: a truncated or corrupt .gz (EOFError, BadGzipFile, which
# is an OSError, zlib.error), or an I/O error of the disk or pipe.
_READ_ERRORS = (OSError, EOFError, zlib.error)
_DAMAGED = "The input looks truncated or corrupt: export or download it again (`gzip -t FILE` checks a .gz)."
_DELIMITERS = (",", ";", "\t", "|")
_SUFFIXES: dict[str, Format] = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

csv.field_size_limit(_FIELD_LIMIT)


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
    # Set when reading stopped at damage (an unclosed quote, a truncated stream), once the records
    # are exhausted: ``file:line: what happened`` and what to do with the input before a push.
    damage: str | None = None
    damage_fix: str | None = None

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
                hint="Name it .csv, .tsv, .jsonl or .ndjson (optionally .gz), or pass --format csv|jsonl.",
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
    try:
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=buffered)  # type: ignore[assignment]
            stream = io.BufferedReader(stream)  # type: ignore[arg-type,type-var]
        head = stream.peek(_SNIFF)[:_SNIFF]  # type: ignore[attr-defined]
    except _READ_ERRORS as e:
        raise InputError(f"{shown}: cannot be read: {_read_problem(e)}", hint=_DAMAGED) from None
    _check_text(head, shown)
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
        source = Source(shown, "jsonl", None, iter(()), None, stream, raw, estimate)
        return _started(source, _jsonl_records(stream, source))
    # C-level decoding and parsing; bytes that are not UTF-8 become lone surrogates, and the row
    # that holds them is rejected when it is normalized and encoded (normalize.py), not the whole file.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")  # type: ignore[type-var]
    try:
        header_line = text.readline()
    except _READ_ERRORS as e:
        raise InputError(f"{shown}: the header line cannot be read: {_read_problem(e)}", hint=_DAMAGED) from None
    if _has_surrogates(header_line):
        raise InputError(f"{shown}:1: the header is not valid UTF-8", hint="Re-export the file as UTF-8.")
    delim = delimiter or sniff_delimiter(header_line)
    if len(delim) != 1:
        raise InputError(f"--delimiter must be one character, got {delim!r}")
    header = [h.strip() for h in _header_cells(header_line, delim, shown)]
    if not any(header):
        raise InputError(f"{shown}:1: the header line is empty")
    seen: set[str] = set()
    dupes = [h for h in header if h in seen or seen.add(h)]  # type: ignore[func-returns-value]
    if dupes:
        raise InputError(f"{shown}:1: {_repeated(sorted(set(dupes)))}")
    source = Source(shown, "csv", header, iter(()), delim, text, raw, estimate)  # type: ignore[arg-type]
    return _started(source, _csv_records(source, text, header, delim))


def _header_cells(line: str, delim: str, shown: str) -> list[str]:
    """The header line's cells. Column names cannot span lines: a quote the line opens and does not
    close (the parser asks for another line) is an error, not a guess."""
    unclosed = False

    def one_line() -> Iterator[str]:
        nonlocal unclosed
        yield line
        unclosed = True

    try:
        cells = next(csv.reader(one_line(), delimiter=delim), [])
    except csv.Error as e:
        raise InputError(f"{shown}:1: the header line cannot be parsed as CSV ({e})") from None
    if unclosed:
        raise InputError(
            f"{shown}:1: the header line opens a quote that it does not close",
            hint="Close the quote in the header line (a quote inside a name is written twice).",
        )
    return cells


def _check_text(head: bytes, shown: str) -> None:
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


def _repeated(names: list[str]) -> str:
    """The repeated-header message, without echoing a cell that may be an email address."""
    if header_looks_like_data(names):
        return (
            "the first line repeats a value, so it cannot be the header; the file may have no header line "
            "(its first line looks like data)"
        )
    return f"repeated column name(s) in the header: {shown_columns(names)}"


def shown_columns(columns: list[str], limit: int = 20) -> str:
    """Column names for a message: at most ``limit`` of them, each at most 40 characters."""
    shown = [c if len(c) <= 40 else c[:39] + "…" for c in columns[:limit]]
    more = f" (and {len(columns) - limit:,} more)" if len(columns) > limit else ""
    return ", ".join(shown) + more


def header_looks_like_data(columns: list[str]) -> bool:
    """A header cell that could be an email address: the file probably has no header line.

    Messages then never echo the header (it would print personal data)."""
    return any("@" in c for c in columns)


def _started(source: Source, records: Iterator[tuple[int, Record]]) -> Source:
    """Read the first record now, so that a stream that breaks before it is an ``InputError``
    raised before anything is sent (the records generator raises it there)."""
    first = next(records, None)
    source.records = records if first is None else itertools.chain((first,), records)
    return source


def _read_problem(e: BaseException) -> str:
    """What a read error means, in words (never the data)."""
    if isinstance(e, EOFError):
        return "the compressed data ends too early"
    if isinstance(e, (gzip.BadGzipFile, zlib.error)):
        return "the compressed data is corrupt"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__


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


def _csv_records(source: Source, text: IO[str], header: list[str], delim: str) -> Iterator[tuple[int, Record]]:
    """CSV rows as lists of cells; blank lines skipped; a row with the wrong width is ``Unreadable``.

    The parser's input goes through ``lines``, which keeps the physical lines of the record being
    parsed: one, unless a quoted field holds a line break. Such a record is checked: if the end of
    the input came inside it, its quote was never closed and it swallowed every line after it; if
    its quote was closed badly (a character right after the closing quote), it swallowed the lines
    up to there. Either way no row of it is sent: each of its physical lines is rejected with its
    own number and text.
    """
    pending: list[str] = []  # the physical lines of the record being parsed
    keep = pending.append
    at_end = False  # the parser asked for a line past the end of the input

    def lines() -> Iterator[str]:
        nonlocal at_end
        for physical in text:
            keep(physical)
            if len(pending) > _MAX_RECORD_LINES:  # the open field's text is bounded (10 MB), its lines too
                raise _TooManyLines
            yield physical
        at_end = True

    reader = csv.reader(lines(), delimiter=delim, strict=False)
    width = len(header)
    done = 1  # physical lines consumed so far (the header)
    started = False  # a record came out (a read error after that is damage, not an InputError)
    try:
        for values in reader:
            line = done + 1  # the line this record starts on
            done = reader.line_num + 1
            if len(pending) > 1 or at_end:  # a quoted field holds a line break
                if at_end:  # ... and the input ended inside it (the parser asked for another line)
                    yield from _spoiled(pending, line, _UNCLOSED.format(line), _AFTER_UNCLOSED.format(line))
                    source.damage = (
                        f"{source.name}:{line}: a quoted field opens here and is never closed; reading stopped "
                        f"there: lines {line}-{done} were rejected, not sent"
                    )
                    source.damage_fix = (
                        f'Close the quote (a quote inside a field is written twice: "say ""hi"""), then push '
                        f"lines {line}-{done} again with the header line"
                    )
                    return
                if not _well_quoted(pending, delim):
                    yield from _spoiled(pending, line, _BAD_CLOSE.format(line), _INSIDE_BAD.format(line))
                    started = True
                    pending.clear()
                    continue
            pending.clear()
            if not values or (len(values) == 1 and width > 1 and not values[0].strip()):
                continue  # blank line
            started = True
            if len(values) != width:
                yield line, Unreadable(f"has {len(values)} fields, the header has {width}", values)
                continue
            yield line, values
    except csv.Error as e:  # a field past the 10 MB limit: a quote that never closes, most likely
        line = done + 1
        yield from _after_parse_error(source, text, pending, line, str(e))
    except _TooManyLines:
        line = done + 1
        yield from _after_parse_error(source, text, pending, line, f"more than {_MAX_RECORD_LINES:,} lines")
    except _READ_ERRORS as e:
        if not started:
            raise InputError(
                f"{source.name}: the input breaks off after line {reader.line_num + 1}, before the first row "
                f"({_read_problem(e)}); nothing was sent",
                hint=_DAMAGED,
            ) from None
        line = done + 1
        yield from _spoiled(pending, line, _CUT.format(line), _CUT.format(line))
        _broken(source, reader.line_num + 1, e)


# One record over this many physical lines is a quote that never closes: it keeps the lines held
# for --rejects bounded (a run of short or blank lines would stay under the 10 MB field limit).
_MAX_RECORD_LINES = 100_000


class _TooManyLines(Exception):
    pass


_UNCLOSED = "a quoted field opens on line {} and is never closed"
_AFTER_UNCLOSED = "follows the unclosed quote on line {}; not read as a row"
_BAD_CLOSE = "a quoted field opens on line {} and holds a quote that is not doubled; not read as a row"
_INSIDE_BAD = "inside the badly quoted field that opens on line {}; not read as a row"
_CUT = "the input breaks off inside the record that starts on line {}; not read as a row"


def _spoiled(physical: list[str], first: int, reason: str, others: str) -> Iterator[tuple[int, Record]]:
    """Each non-blank physical line of a record that is not a row, rejected with its own text."""
    for n, text in enumerate(physical, first):
        if text.strip():
            yield n, Unreadable(reason if n == first else others, text.rstrip("\r\n"))


def _well_quoted(physical: list[str], delim: str) -> bool:
    """A record over several lines parses under the strict rules (every inner quote doubled)."""
    try:
        for _ in csv.reader(physical, delimiter=delim, strict=True):
            pass
    except csv.Error:
        return False
    return True


def _after_parse_error(
    source: Source, text: IO[str], pending: list[str], line: int, error: str
) -> Iterator[tuple[int, Record]]:
    """The parser gave up inside the record that starts on ``line``: reject it, and every line
    after it, one by one (streaming: nothing more is held than a line)."""
    too_long = "field larger than field limit" in error
    if error.startswith("more than"):
        first_reason = _UNCLOSED.format(line)
        what = f"a quoted field opens here and is never closed (it runs over {error})"
    elif too_long and len(pending) == 1:
        first_reason = "has a field longer than the 10 MB limit (a quote that is never closed?)"
        what = "a field on this line is longer than the 10 MB limit (a quote that is never closed?)"
    elif too_long:
        first_reason = _UNCLOSED.format(line)
        what = "a quoted field opens here and is never closed (it runs past the 10 MB field limit)"
    else:
        first_reason = f"cannot be parsed as CSV ({error})"
        what = f"the CSV cannot be parsed from here on ({error})"
    yield from _spoiled(pending, line, first_reason, _AFTER_UNCLOSED.format(line))
    last = line + len(pending) - 1
    pending.clear()
    broken = None
    try:
        for physical in text:
            last += 1
            if physical.strip():
                yield last, Unreadable(_AFTER_UNCLOSED.format(line), physical.rstrip("\r\n"))
    except _READ_ERRORS as e:
        broken = _read_problem(e)
    source.damage = f"{source.name}:{line}: {what}; reading stopped there: lines {line}-{last} were rejected, not sent"
    if broken:
        source.damage += f" (and the input breaks off after line {last}: {broken})"
    source.damage_fix = f"Fix line {line}, then push lines {line}-{last} again with the header line"


def _broken(source: Source, after: int, e: BaseException) -> None:
    source.damage = (
        f"{source.name}:{after}: the input breaks off after this line ({_read_problem(e)}); reading stopped "
        "there and the rest was not read"
    )
    source.damage_fix = (
        f"It looks truncated or corrupt: get a complete copy (`gzip -t FILE` checks a .gz), then push the rows "
        f"after line {after} again"
    )


def _jsonl_records(stream: IO[bytes], source: Source | None = None) -> Iterator[tuple[int, Record]]:
    """JSONL objects; blank lines skipped; a line that is not a JSON object is ``Unreadable``.
    ``source``: where damage is recorded (without one, a stream that breaks raises ``InputError``)."""
    loads = orjson.loads
    n = 0
    started = False  # a record came out (a read error after that is damage, not an InputError)
    try:
        for n, raw in enumerate(stream, 1):  # noqa: B007
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            started = True
            try:
                obj = loads(raw)
            except orjson.JSONDecodeError as e:
                msg = str(e).split(":")[0]
                yield n, Unreadable(f"not valid JSON ({msg})", _line_text(raw))
                continue
            if not isinstance(obj, dict):
                yield n, Unreadable(f"not a JSON object (got {type(obj).__name__})", _line_text(raw))
                continue
            yield n, obj
    except _READ_ERRORS as e:
        if source is None or not started:
            name = source.name if source is not None else "input"
            before = ", before the first record" if not started else ""
            raise InputError(
                f"{name}: the input breaks off after line {n}{before} ({_read_problem(e)})", hint=_DAMAGED
            ) from None
        _broken(source, n, e)


def _line_text(raw: bytes) -> str:
    return raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")


def checked_lines(fh: Iterable[bytes], name: str) -> Iterator[bytes]:
    """The lines of an opened (maybe gzipped) file; a read error (a truncated or corrupt .gz) is an
    ``InputError`` naming the file, not a crash."""
    n = 0
    try:
        for n, line in enumerate(fh, 1):  # noqa: B007
            yield line
    except _READ_ERRORS as e:
        raise InputError(f"{name}: cannot be read after line {n}: {_read_problem(e)}", hint=_DAMAGED) from None


def fingerprint(path: str) -> tuple[str, int]:
    """SHA-256 of the file's bytes and its number of (decompressed) lines.

    The digest lets ``retry`` re-read the same input safely; the line count bounds how many
    requests a push can need, for the daily-quota check before anything is sent. Reading all of
    it first also finds a truncated or corrupt .gz before anything is sent.
    """
    h = hashlib.sha256()
    lines = 0
    gz = False
    try:
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
    except _READ_ERRORS as e:
        where = f" (somewhere after line {lines:,})" if gz else ""
        raise InputError(
            f"{path}: cannot be read to the end: {_read_problem(e)}{where}; nothing was sent", hint=_DAMAGED
        ) from None
    return h.hexdigest(), lines
