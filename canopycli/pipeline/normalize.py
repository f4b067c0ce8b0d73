"""Normalize and validate: a raw record -> a wire-ready profile, or the reason it is rejected.

Identity (``hashed_email``: trim, lowercase, validate, SHA-256; ``customer_id``: trim, 1-100
characters), status (NEW/MODIFIED/REMOVED), and params converted by Deployteq's mapping rules.
Nothing is silently changed in meaning: a value that cannot be converted rejects the row with
a reason naming the column. Reasons never contain the raw email address.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from email_validator import EmailNotValidError, validate_email
from orjson import Fragment, JSONEncodeError, dumps

from ..config import Param, Segment
from ..errors import InputError
from ..model import Profile, Reject
from .read import header_looks_like_data, shown_columns

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
    if _fast_ok(v):  # the common case
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


IDENTITIES: dict[str, Callable[[Any], str]] = {"hashed_email": hashed_email, "customer_id": customer_id}


# --- params: Deployteq's mapping rules ------------------------------------------------------
#
# A converter takes a cell (text from CSV, any JSON value from JSONL) and returns the value to
# send, or raises ValueError with the reason. Each is built once per param (``converter``), so
# the per-row work is a dict lookup or a C-level string method on the common path.

_TRUE = {"true", "t", "yes", "y", "1", "ja", "j"}
_FALSE = {"false", "f", "no", "n", "0", "nee"}
_FLAGS = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}
_GENDER = {
    "MAN": {"man", "m", "male", "mr", "mr.", "heer", "dhr", "dhr.", "men"},
    "WOMAN": {"woman", "w", "f", "female", "v", "vrouw", "mrs", "mrs.", "ms", "ms.", "mevr", "mevr.", "women"},
    "FAMILY": {"family", "familie", "fam", "fam."},
    "NONBINARY": {"nonbinary", "non-binary", "non binary", "nb", "x", "enby", "genderqueer"},
    "UNKNOWN": {"unknown", "u", "onbekend", "unspecified", "?"},
}
_GENDER_LOOKUP = {alias: canon for canon, aliases in _GENDER.items() for alias in aliases}
# ASCII only ([0-9], never \d: that also matches Arabic-Indic, full-width and other digits).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_WHOLE = re.compile(r"([+-]?[0-9]+)(?:\.0*)?")  # an integer param: 12, -3, 12.0
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)
# A JSON integer below 2^53 is read exactly by every receiver (JavaScript's safe integers, a
# double's integer precision); past it, or not finite, a number is refused, never rounded or
# sent as null (orjson writes inf and nan as null).
LIMIT = 2**53
OUT_OF_RANGE = "is out of range (a number must be finite, with magnitude below 2^53 = 9,007,199,254,740,992)"
TOO_SMALL = "is out of range (not zero, but too close to zero for a 64-bit float; write 0 if it is zero)"
NESTED = "holds a nested object or array (flatten it, or map one field of it under params:)"
NOT_NUMBER = (
    "is not a number (ASCII digits, . as the decimal point, optional exponent like 1e3; no thousands separators)"
)
NOT_WHOLE = "is not a whole number (ASCII digits, optionally followed by .0)"
NOT_FLAG = "is not a yes/no value (expected true/false, t/f, yes/no, y/n, ja/nee, j, or 1/0, in any case)"
NOT_DATE = "is not a date as YYYY-MM-DD (ASCII digits, a day that exists)"
NOT_DATETIME = (
    "is not a date-time as YYYY-MM-DDTHH:MM[:SS[.ffffff]] with an optional Z or +HH:MM (ASCII digits, T or a space)"
)

Converter = Callable[[Any], Any]
ParamMaker = Callable[[Any], "dict[str, Any] | None"]
# (key of the cell, column name, memo of text cell -> wire param, the maker of a wire param)
Spec = tuple[int | str, str, dict[str, Any], ParamMaker]
_MEMO = 2048  # distinct text values remembered per column (gender, opt-in, city...: the common case)
_MISS = object()
_N = TypeVar("_N", int, float)


def _in_range(v: _N) -> _N:
    """A JSON or parsed number, if finite and below 2^53 in magnitude (NaN fails both comparisons)."""
    if -LIMIT < v < LIMIT:
        return v
    raise ValueError(OUT_OF_RANGE)


def _text(v: Any) -> str:
    if v.__class__ is str:
        return v.strip()  # type: ignore[no-any-return]
    if isinstance(v, (dict, list)):
        raise ValueError(NESTED)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):  # a JSON number: orjson reads integers past 64 bits as floats
        _in_range(v)
    return str(v)


def _flag(v: Any) -> bool:
    if v is True or v is False:
        return v  # type: ignore[no-any-return]
    got = _FLAGS.get((v.strip() if v.__class__ is str else _text(v)).lower())
    if got is None:
        raise ValueError(NOT_FLAG)
    return got


def _int_text(t: str) -> int:
    """An ASCII sign-and-digits spelling -> int; past 16 significant digits it is out of range
    without parsing (``int()`` refuses more than 4,300 digits with a message of its own)."""
    sign = t[0] if t[0] in "+-" else ""
    digits = t[len(sign) :].lstrip("0")
    if len(digits) > 16:
        raise ValueError(OUT_OF_RANGE)
    return _in_range(int(sign + digits) if digits else 0)


def _number(v: Any) -> int | float:
    if v.__class__ is str:
        t = v.strip()
        if t.isascii() and t.isdigit() and len(t) < 16:  # the common case: 10^15 < 2^53
            return int(t)
        if not _NUMBER.fullmatch(t):
            raise ValueError(NOT_NUMBER)
        if _INTEGER.fullmatch(t):
            return _int_text(t)
        f = float(t)
        if f == 0.0 and t.partition("e")[0].partition("E")[0].strip("+-.0"):  # 1e-400: not zero, yet 0.0
            raise ValueError(TOO_SMALL)
        return _in_range(f) + 0.0  # + 0.0: -0.0 is sent as 0.0
    if v is True or v is False:
        raise ValueError("is a boolean, not a number")
    if isinstance(v, int):
        return _in_range(v)
    if isinstance(v, float):
        return _in_range(v) + 0.0
    _text(v)  # a nested value: its own reason
    raise ValueError(NOT_NUMBER)


def _integer(v: Any) -> int:
    if v.__class__ is str:
        t = v.strip()
        if t.isascii() and t.isdigit() and len(t) < 16:  # the common case
            return int(t)
        m = _WHOLE.fullmatch(t)
        if m is None:
            raise ValueError(NOT_WHOLE)
        return _int_text(m.group(1))
    if v is True or v is False:
        raise ValueError("is a boolean, not a whole number")
    if isinstance(v, int):
        return _in_range(v)
    if isinstance(v, float):
        if _in_range(v).is_integer():
            return int(v)
        raise ValueError(NOT_WHOLE)
    _text(v)
    raise ValueError(NOT_WHOLE)


def _date(v: Any) -> str:
    t = v.strip() if v.__class__ is str else _text(v)
    if _DATE.fullmatch(t) is not None:  # the form, in ASCII; fromisoformat alone takes 2024-W01-1
        try:
            dt.date.fromisoformat(t)  # a day that exists
            return t
        except ValueError:
            pass
    raise ValueError(NOT_DATE)


def _datetime(v: Any) -> str:
    t = _text(v)
    if _DATETIME.fullmatch(t) is not None:  # the form, in ASCII; then a date and time that exist
        try:
            dt.datetime.fromisoformat(t)
            return t if t[10] == "T" else f"{t[:10]}T{t[11:]}"
        except ValueError:
            pass
    raise ValueError(NOT_DATETIME)


def _gender(v: Any) -> str:
    canon = _GENDER_LOOKUP.get((v.strip() if v.__class__ is str else _text(v)).lower())
    if canon is None:
        raise ValueError(
            "is not a gender Deployteq knows (MAN, WOMAN, FAMILY, NONBINARY, UNKNOWN or a spelling the README lists)"
        )
    return canon


def _optin(v: Any) -> str:
    return "Y" if _flag(v) else "N"


def _yesno(v: Any) -> int:
    return 1 if _flag(v) else 0


def converter(p: Param) -> tuple[str, Converter | None]:
    """(wire type, converter) for a param; converter None: text sent as it is (only its length checked)."""
    t = p.type
    if t == "string":
        return "string", None
    if t == "option":
        limit = p.max_length

        def option(v: Any) -> str:
            u = (v.strip() if v.__class__ is str else _text(v)).upper()
            if limit is not None and len(u) > limit:  # counted as sent: "ß".upper() is "SS"
                raise ValueError(f"is longer than {limit} characters once uppercased ({len(u)})")
            return u

        return "string", option
    simple: dict[str, tuple[str, Converter]] = {
        "number": ("number", _number),
        "integer": ("number", _integer),
        "boolean": ("boolean", _flag),
        "date": ("date", _date),
        "datetime": ("datetime", _datetime),
        "gender": ("string", _gender),
        "optin": ("string", _optin),
        "yesno": ("number", _yesno),
    }
    return simple[t]


def param_maker(
    name: str, wire: str, conv: Converter | None, limit: int | None, empty: Any, send_empty: bool, infer: bool = False
) -> ParamMaker:
    """cell -> the wire param (None: an empty cell left out), or ValueError with the reason.

    ``infer``: JSONL without ``params:``, where a JSON boolean or number keeps its type."""
    empty_param = {"name": name, "type": wire, "value": empty} if send_empty else None

    def make(v: Any) -> dict[str, Any] | None:
        if v is None or (v.__class__ is str and (not v or v.isspace())):
            return empty_param
        if conv is not None:
            return {"name": name, "type": wire, "value": conv(v)}
        if v.__class__ is not str:
            if infer:
                wire_, value = _inferred(v)
                return {"name": name, "type": wire_, "value": value}
            v = _text(v)
        if limit is not None and len(v) > limit:
            raise ValueError(f"is longer than {limit} characters ({len(v)})")
        return {"name": name, "type": wire, "value": v}

    return make


def _inferred(v: Any) -> tuple[str, Any]:
    """JSONL without ``params:``: text stays text, JSON booleans and numbers keep their type
    (numbers by the ``number`` rule: finite, below 2^53)."""
    if isinstance(v, bool):
        return "boolean", v
    if isinstance(v, int):
        return "number", _in_range(v)
    if isinstance(v, float):
        return "number", _in_range(v) + 0.0
    raise ValueError(NESTED)


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
        self.hex_ids = identifier == "hashed_email"  # every id is a lowercase SHA-256 hex digest
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
            if self.has_status and status_given:
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
        self.status_allowed = status_allowed
        # Cells are looked up by key: a column's index for a list record, its name for a dict.
        key: Callable[[str], int | str] = index.__getitem__ if index is not None else str
        self.id_key = key(self.id_column)
        self.status_key = key(self.status_column) if self.has_status else self.status_column
        send = self.send_empty
        self.specs: list[Spec] | None
        if segment.params is not None:
            self.specs = [
                (key(p.source), p.source, {}, param_maker(p.name, *converter(p), p.max_length, _empty(p), send))
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


def _empty(p: Param) -> Any:
    """The value an empty cell sends with ``empty: send``: "" for text, null for a typed param."""
    return "" if p.type == "string" else None
