"""What a reader yields: ``(line_number, record)``, and what it says when the input is damaged.

A record is a ``list`` of cells in the header's order (CSV: no dict is built per row), a
``dict`` (a JSONL object), or an ``Unreadable``: why the physical record is not a row and what
was read, for ``--rejects``. The JSONL reader lives here (it is short); the CSV reader, with its
quote tracking, in ``csvread.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any, Literal, NamedTuple, Protocol

import orjson

from ..errors import DAMAGED, READ_ERRORS, InputError, read_problem

Format = Literal["csv", "jsonl"]


class Unreadable(NamedTuple):
    """A physical record that is not a row: why, and what was read (written to ``--rejects``)."""

    reason: str
    # CSV: the fields of a row with the wrong number of them, or the text of a line that could not
    # be split into fields; JSONL: the line's text. Bytes that are not UTF-8 as lone surrogates.
    raw: list[str] | str


Record = list[str] | dict[str, Any] | Unreadable

# What reading a damaged stream raises: a truncated or corrupt .gz (EOFError, BadGzipFile, which
# is an OSError, zlib.error), or an I/O error of the disk or pipe.


class Damageable(Protocol):
    """Where a reader notes that it stopped at damage (``Source``): ``file:line: what happened``
    and what to do with the input before a push."""

    name: str
    damage: str | None
    damage_fix: str | None


def broken(source: Damageable, after: int, e: BaseException) -> None:
    """The stream broke after line ``after`` (a truncated .gz, an I/O error): reading stops there."""
    source.damage = (
        f"{source.name}:{after}: the input breaks off after this line ({read_problem(e)}); reading stopped "
        "there and the rest was not read"
    )
    source.damage_fix = (
        f"It looks truncated or corrupt: get a complete copy (`gzip -t FILE` checks a .gz), then push the rows "
        f"after line {after} again"
    )


def jsonl_records(stream: IO[bytes], source: Damageable | None = None) -> Iterator[tuple[int, Record]]:
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
    except READ_ERRORS as e:
        if source is None or not started:
            name = source.name if source is not None else "input"
            before = ", before the first record" if not started else ""
            raise InputError(
                f"{name}: the input breaks off after line {n}{before} ({read_problem(e)})", hint=DAMAGED
            ) from None
        broken(source, n, e)


def _line_text(raw: bytes) -> str:
    return raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
