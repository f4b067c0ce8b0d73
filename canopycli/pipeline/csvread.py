"""The CSV reader: the header line, then rows as lists of cells, with the quote tracking that keeps
a quote that is never closed (or closed badly) from swallowing rows unnoticed.

Decoding and parsing are C-level (``io.TextIOWrapper``, ``csv.reader``); the Python work per row
is the loop in ``csv_records``. A record over several physical lines is checked; damage stops
reading there and is noted on the source (``Damageable``) for the run to end with exit 2.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import IO

from ..errors import DAMAGED, READ_ERRORS, InputError, read_problem
from .records import Damageable, Record, Unreadable, broken

_FIELD_LIMIT = 10 * 1024 * 1024
_DELIMITERS = (",", ";", "\t", "|")

csv.field_size_limit(_FIELD_LIMIT)


def read_header(text: IO[str], shown: str, delimiter: str | None) -> tuple[list[str], str]:
    """The header's column names and the delimiter (``delimiter``, or sniffed from the header line)."""
    try:
        header_line = text.readline()
    except READ_ERRORS as e:
        raise InputError(f"{shown}: the header line cannot be read: {read_problem(e)}", hint=DAMAGED) from None
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
    return header, delim


def sniff_delimiter(header: str) -> str:
    """The most frequent of , ; TAB | in the header line (``,`` when there is none)."""
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


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


def _has_surrogates(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def csv_records(source: Damageable, text: IO[str], header: list[str], delim: str) -> Iterator[tuple[int, Record]]:
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
    except READ_ERRORS as e:
        if not started:
            raise InputError(
                f"{source.name}: the input breaks off after line {reader.line_num + 1}, before the first row "
                f"({read_problem(e)}); nothing was sent",
                hint=DAMAGED,
            ) from None
        line = done + 1
        yield from _spoiled(pending, line, _CUT.format(line), _CUT.format(line))
        broken(source, reader.line_num + 1, e)


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
    source: Damageable, text: IO[str], pending: list[str], line: int, error: str
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
    except READ_ERRORS as e:
        broken = read_problem(e)
    source.damage = f"{source.name}:{line}: {what}; reading stopped there: lines {line}-{last} were rejected, not sent"
    if broken:
        source.damage += f" (and the input breaks off after line {last}: {broken})"
    source.damage_fix = f"Fix line {line}, then push lines {line}-{last} again with the header line"
