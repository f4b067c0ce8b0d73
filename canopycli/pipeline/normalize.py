"""Normalize and validate: a raw record -> a wire-ready profile, or the reason it is rejected.

Identity (``hashed_email``: trim, lowercase, validate, SHA-256; ``customer_id``: trim, 1-100
characters), status (NEW/MODIFIED/REMOVED), and params converted by Deployteq's mapping rules
(values.py).
Nothing is silently changed in meaning: a value that cannot be converted rejects the row with
a reason naming the column. Reasons never contain the raw email address.
"""

from __future__ import annotations

import gc
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from email_validator import EmailNotValidError, validate_email
from orjson import Fragment, JSONEncodeError, dumps

from ..config import Segment
from ..errors import InputError
from ..model import Profile, Reject
from .read import header_looks_like_data, shown_columns
from .values import LIMIT, OUT_OF_RANGE, ParamMaker, converter, empty_value, param_maker

STATUSES = ("NEW", "MODIFIED", "REMOVED")
MAX_CUSTOMER_ID = 100


# --- identity -----------------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-f]{64}")
# The common shape of an address, checked cheaply; anything else goes to email-validator.
# Everything this accepts, email-validator accepts too (a property test holds us to that).
_FAST_EMAIL = re.compile(r"[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}")


_fast_email = _FAST_EMAIL.fullmatch


def _fast_ok(v: str) -> bool:
    """The common shape, at C speed. ``--`` goes to the full check: a domain label with hyphens
    in its 3rd and 4th places (``ab--c``) is reserved for IDNA and refused by email-validator."""
    return _fast_email(v) is not None and len(v) <= 254 and v.index("@") <= 64 and "--" not in v


def email_is_valid(email: str) -> bool:
    """``email`` is trimmed and lowercased already."""
    if _fast_ok(email):
        return True
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


_sha256 = hashlib.sha256


def hashed_email(value: Any) -> str:
    """SHA-256 hex of the trimmed, lowercased address; a 64-hex digest passes through lowercased."""
    if value.__class__ is not str and not isinstance(value, str):
        raise ValueError("is not text")
    v = value.strip().lower()
    # the common case, inlined (a call per row costs more than the check): see ``_fast_ok``
    if _fast_email(v) is not None and len(v) <= 254 and v.index("@") <= 64 and "--" not in v:
        return _sha256(v.encode()).hexdigest()
    if not v:
        raise ValueError("is empty")
    if len(v) == 64 and _HEX64.fullmatch(v):
        return v
    if not v.isascii() and not _is_utf8(v):
        raise ValueError("is not valid UTF-8 (re-export the file as UTF-8)")
    if not email_is_valid(v):
        raise ValueError("is not a valid email address")
    return hashlib.sha256(v.encode("utf-8")).hexdigest()


def _is_utf8(v: str) -> bool:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8 in the input
        return False
    return True


def customer_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("is not text or a whole number")
    v = str(value).strip()
    if not v.isascii() and not _is_utf8(v):
        raise ValueError("is not valid UTF-8 (re-export the file as UTF-8)")
    if not v:
        raise ValueError("is empty")
    if len(v) > MAX_CUSTOMER_ID:
        raise ValueError(f"is longer than {MAX_CUSTOMER_ID} characters ({len(v)})")
    return v


def plain_email(value: Any) -> str:
    """``identifier: email`` (SOAP): the trimmed, lowercased address, checked as for hashing (a
    SHA-256 digest cannot be mailed, so it is refused). The Normalizer hashes it for everything
    but the request itself."""
    if not isinstance(value, str):
        raise ValueError("is not text")
    v = value.strip().lower()
    if not v:
        raise ValueError("is empty")
    if not v.isascii() and not _is_utf8(v):
        raise ValueError("is not valid UTF-8 (re-export the file as UTF-8)")
    if len(v) > 80 or not email_is_valid(v):  # Deployteq's emailAddress holds 80 characters
        raise ValueError("is not a valid email address (at most 80 characters)")
    return v


IDENTITIES: dict[str, Callable[[Any], str]] = {
    "hashed_email": hashed_email,
    "customer_id": customer_id,
    "email": plain_email,
}


# --- params (the rules are in values.py) ---------------------------------------------------

# (key of the cell, column name, memo of text cell -> wire param, the maker of a wire param)
Spec = tuple[int | str, str, dict[str, Any], ParamMaker]
_MEMO = 2048  # distinct text values remembered per column (gender, opt-in, city...: the common case)
_MISS = object()


def _unencodable(params: list[dict[str, Any]]) -> str | None:
    """Why orjson refused a wire object: text that was not UTF-8 (bytes decoded with
    surrogateescape), or an integer past 64 bits (which the converters refuse before this)."""
    for p in params:
        v = p["value"]
        if v.__class__ is str and not _is_utf8(v):
            return "is not valid UTF-8 (re-export the file as UTF-8)"
    for p in params:
        v = p["value"]
        if isinstance(v, int) and not -LIMIT < v < LIMIT:
            return f"{p['name']}: {OUT_OF_RANGE}"
    return None


# --- the row normalizer -------------------------------------------------------------------


class Normalizer:
    """Turns records of one source into profiles for one segment.

    A record is a list of cells in the order of ``columns`` (CSV: no dict per row) or a dict
    (JSONL; also accepted for a source with columns, which is looked up by name). With
    ``encoded``, the wire object comes back as JSON already (an ``orjson.Fragment``): the
    batch joins the fragments without walking the objects again, and a row whose text is not
    valid UTF-8 is rejected with its own line number here.
    """

    def __init__(
        self,
        segment: Segment,
        identifier: str,
        columns: Iterable[str] | None,
        default_status: str = "NEW",
        status_allowed: bool = True,
        source_name: str = "input",
        encoded: bool = False,
        status_given: bool = False,
    ) -> None:
        self.identify = IDENTITIES[identifier]
        self.plain_email = identifier == "email"  # SOAP: the address is sent, its SHA-256 kept
        self.hex_ids = identifier in ("hashed_email", "email")  # every id is a lowercase SHA-256 hex digest
        self.id_column = segment.id_column
        self.status_column = segment.status_column
        self.default_status = default_status.upper()
        if self.default_status not in STATUSES:
            raise InputError(f"--status must be NEW, MODIFIED or REMOVED, got {default_status!r}")
        self.send_empty = segment.empty == "send"
        self.encoded = encoded
        self.status_given = status_given  # --status was passed: a row's own status would contradict it
        cols = list(columns) if columns is not None else None
        self.columns = cols
        # a column's index by name: one dict, so a header of 100,000 columns costs no more than its length
        index = {c: i for i, c in reversed(list(enumerate(cols)))} if cols is not None else None
        self.has_status = index is not None and self.status_column in index
        if cols is not None and index is not None:
            self._check_header(segment, cols, index, source_name, status_allowed)
        self.status_allowed = status_allowed
        # Cells are looked up by key: a column's index for a list record, its name for a dict.
        key: Callable[[str], int | str] = index.__getitem__ if index is not None else str
        self.id_key = key(self.id_column)
        self.status_key = key(self.status_column) if self.has_status else self.status_column
        send = self.send_empty
        self.specs: list[Spec] | None
        if segment.params is not None:
            self.specs = [
                (key(p.source), p.source, {}, param_maker(p.name, *converter(p), p.max_length, empty_value(p), send))
                for p in segment.params
            ]
        elif cols is not None:
            skip = {self.id_column, self.status_column}
            with _no_gc():
                self.specs = [
                    (i, _named(c, f"column {i + 1}"), {}, param_maker(c, "string", None, 256, "", send))
                    for i, c in enumerate(cols)
                    if c not in skip
                ]
        else:
            self.specs = None  # JSONL without params: every field, typed by its JSON type
        self._jsonl: dict[str, Spec] = {}

    def _check_header(
        self, segment: Segment, cols: list[str], index: dict[str, int], source_name: str, status_allowed: bool
    ) -> None:
        """The header has the id column (and every param column), and no status column where
        none may be: otherwise the file is refused before anything is sent."""
        no_header = header_looks_like_data(cols)
        if self.id_column not in index:
            if no_header:  # never echo the line: its cells are data (email addresses)
                raise InputError(
                    f"{source_name}: the first line has no column named {self.id_column!r}; the file may have "
                    "no header line (its first line looks like data)",
                    hint="Add a header line naming the columns, or set id_column: in the segment config.",
                )
            raise InputError(
                f"{source_name}: no id column {self.id_column!r} (columns: {shown_columns(cols)})",
                hint="Set id_column: in the segment config to the column that holds the identifier.",
            )
        if self.has_status and self.status_given:
            raise InputError(
                f"{source_name}: has a {self.status_column!r} column, and --status {self.default_status} was given;"
                " which one applies cannot be guessed",
                hint="Drop --status to use the column, or drop the column to give every row --status.",
            )
        if self.has_status and not status_allowed:
            raise InputError(
                f"{source_name}: has a {self.status_column!r} column; sync derives NEW/MODIFIED/REMOVED itself",
                hint="Drop the column from the export, or use `canopycli push` for change files.",
            )
        if segment.params is not None:
            missing = [p.source for p in segment.params if p.source not in index]
            if missing:
                guess = "; the file may have no header line (its first line looks like data)" if no_header else ""
                raise InputError(
                    f"{source_name}: param column(s) not in the header: {shown_columns(missing)}{guess}",
                    hint="Check each param's column: (or name) against the file's header line.",
                )

    def __call__(self, line: int, record: list[Any] | dict[str, Any]) -> Profile | Reject:
        if record.__class__ is list:
            get: Callable[[Any], Any] = record.__getitem__
        elif self.columns is not None:  # a dict for a source with columns: cells by position
            get = [record.get(c) for c in self.columns].__getitem__  # type: ignore[union-attr]
        else:
            get = record.get  # type: ignore[union-attr]
        raw_id = get(self.id_key)
        if raw_id is None:
            return Reject(line, f"no {self.id_column!r} value")
        try:
            cid = self.identify(raw_id)
        except ValueError as e:
            return Reject(line, f"{self.id_column}: {e}")
        plain = None
        if self.plain_email:  # from here on the id is the address's SHA-256, as for hashed_email
            plain, cid = cid, _sha256(cid.encode()).hexdigest()
        status = self.default_status
        if self.has_status or (self.columns is None and self.status_column in record):
            if not self.status_allowed:
                return Reject(line, f"has a {self.status_column!r} field; sync derives the status itself", cid)
            if self.status_given:
                return Reject(
                    line,
                    f"has its own {self.status_column!r} and --status {self.default_status} was given: drop one",
                    cid,
                )
            s = get(self.status_key)
            s = s.strip().upper() if s.__class__ is str else s
            if s not in STATUSES:
                return Reject(line, f"{self.status_column}: must be NEW, MODIFIED or REMOVED", cid)
            status = s
        params: list[dict[str, Any]] = []
        append = params.append
        specs = self.specs if self.specs is not None else self._jsonl_specs(record)  # type: ignore[arg-type]
        column = ""
        try:
            for k, column, memo, make in specs:  # noqa: B007 - column names the reject below
                v = get(k)
                if v.__class__ is str:  # text: the same cell value makes the same param
                    p = memo.get(v, _MISS)
                    if p is _MISS:
                        p = make(v)
                        if len(memo) < _MEMO:
                            memo[v] = p
                else:  # JSON values are not remembered: 1, 1.0 and true are equal as dict keys
                    p = make(v)
                if p is not None:
                    append(p)
        except ValueError as e:
            return Reject(line, f"{column}: {e}", cid)
        customer = {"customerId": cid, "r42Status": status, "params": params}
        if plain is not None:  # the address goes to the request only (realtime.ProfileEncoder)
            customer["emailAddress"] = plain
        if not self.encoded:
            return Profile(line, cid, customer)
        try:
            return Profile(line, cid, Fragment(dumps(customer)))
        except JSONEncodeError:
            reason = _unencodable(params)
            if reason is None:
                raise  # neither cause: a bug, to be seen as one
            return Reject(line, reason, cid)

    def _jsonl_specs(self, record: dict[str, Any]) -> list[Spec]:
        skip = (self.id_column, self.status_column)
        return [self._jsonl_spec(c) for c in record if c not in skip]

    def _jsonl_spec(self, column: str) -> Spec:
        spec = self._jsonl.get(column)
        if spec is None:
            spec = (
                column,
                _named(column, "a field named like an email address"),
                {},
                param_maker(column[:256] or "_", "string", None, 256, "", self.send_empty, True),
            )
            if len(self._jsonl) < _MEMO:
                self._jsonl[column] = spec
        return spec


@contextmanager
def _no_gc() -> Iterator[None]:
    """Build many small objects without cycles (a spec per column, 100,000 of them in a wide
    file): the cyclic collector would walk them again and again and take most of the time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _named(column: str, instead: str) -> str:
    """A column's name for a reason, unless it could be an email address (a file with no header line)."""
    return instead if "@" in column else column
