"""Normalize and validate: a raw record -> a wire-ready profile, or the reason it is rejected.

Identity (``hashed_email``: trim, lowercase, validate, SHA-256; ``customer_id``: trim, 1-100
characters), status (NEW/MODIFIED/REMOVED), and params converted by Deployteq's mapping rules.
Nothing is silently changed in meaning: a value that cannot be converted rejects the row with
a reason naming the column. Reasons never contain the raw email address.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from email_validator import EmailNotValidError, validate_email

from .config import Param, Segment
from .errors import InputError

STATUSES = ("NEW", "MODIFIED", "REMOVED")
MAX_CUSTOMER_ID = 100


class Profile(NamedTuple):
    line: int
    customer_id: str
    customer: dict[str, Any]  # the wire object: customerId, r42Status, params


class Reject(NamedTuple):
    line: int
    reason: str


# --- identity -----------------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-f]{64}")
# The common shape of an address, checked cheaply; anything else goes to email-validator.
# Everything this accepts, email-validator accepts too (a property test holds us to that).
_FAST_EMAIL = re.compile(r"[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}")


def email_is_valid(email: str) -> bool:
    """``email`` is trimmed and lowercased already."""
    if _FAST_EMAIL.fullmatch(email) and len(email) <= 254 and email.index("@") <= 64:
        return True
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def hashed_email(value: Any) -> str:
    """SHA-256 hex of the trimmed, lowercased address; a 64-hex digest passes through lowercased."""
    if not isinstance(value, str):
        raise ValueError("is not text")
    v = value.strip().lower()
    if not v:
        raise ValueError("is empty")
    if len(v) == 64 and _HEX64.fullmatch(v):
        return v
    if not email_is_valid(v):
        raise ValueError("is not a valid email address")
    return hashlib.sha256(v.encode("utf-8")).hexdigest()


def customer_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("is not text or a whole number")
    v = str(value).strip()
    if not v:
        raise ValueError("is empty")
    if len(v) > MAX_CUSTOMER_ID:
        raise ValueError(f"is longer than {MAX_CUSTOMER_ID} characters ({len(v)})")
    return v


IDENTITIES: dict[str, Callable[[Any], str]] = {"hashed_email": hashed_email, "customer_id": customer_id}


# --- params: Deployteq's mapping rules ------------------------------------------------------

_TRUE = {"true", "t", "yes", "y", "1", "ja", "j"}
_FALSE = {"false", "f", "no", "n", "0", "nee"}
_GENDER = {
    "MAN": {"man", "m", "male", "mr", "mr.", "heer", "dhr", "dhr.", "men"},
    "WOMAN": {"woman", "w", "f", "female", "v", "vrouw", "mrs", "mrs.", "ms", "ms.", "mevr", "mevr.", "women"},
    "FAMILY": {"family", "familie", "fam", "fam."},
    "NONBINARY": {"nonbinary", "non-binary", "non binary", "nb", "x", "enby", "genderqueer"},
    "UNKNOWN": {"unknown", "u", "onbekend", "unspecified", "?"},
}
_GENDER_LOOKUP = {alias: canon for canon, aliases in _GENDER.items() for alias in aliases}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, (dict, list)):
        raise ValueError("holds a nested object or array")
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _flag(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    t = _text(v).lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError("is not a yes/no value (expected true/false, yes/no, y/n or 1/0)")


def _limited(v: str, limit: int | None) -> str:
    if limit is not None and len(v) > limit:
        raise ValueError(f"is longer than {limit} characters ({len(v)})")
    return v


def conv_string(v: Any, p: Param) -> tuple[str, Any]:
    if isinstance(v, (dict, list)):
        raise ValueError("holds a nested object or array (flatten it, or map one field of it)")
    return "string", _limited(v if isinstance(v, str) else _text(v), p.max_length)


def conv_number(v: Any, p: Param) -> tuple[str, Any]:
    if isinstance(v, bool):
        raise ValueError("is a boolean, not a number")
    if isinstance(v, (int, float)):
        return "number", v
    t = _text(v)
    if not _NUMBER.fullmatch(t):
        raise ValueError("is not a number (use digits with . as the decimal point)")
    return "number", int(t) if _INTEGER.fullmatch(t) else float(t)


def conv_integer(v: Any, p: Param) -> tuple[str, Any]:
    if isinstance(v, bool):
        raise ValueError("is a boolean, not a whole number")
    if isinstance(v, int):
        return "number", v
    if isinstance(v, float) and v.is_integer():
        return "number", int(v)
    t = _text(v)
    if not _INTEGER.fullmatch(t):
        raise ValueError("is not a whole number")
    return "number", int(t)


def conv_boolean(v: Any, p: Param) -> tuple[str, Any]:
    return "boolean", _flag(v)


def conv_date(v: Any, p: Param) -> tuple[str, Any]:
    t = _text(v)
    try:
        if len(t) != 10:
            raise ValueError
        return "date", dt.date.fromisoformat(t).isoformat()
    except ValueError:
        raise ValueError("is not an ISO date (YYYY-MM-DD)") from None


def conv_datetime(v: Any, p: Param) -> tuple[str, Any]:
    t = _text(v)
    try:
        dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("is not an ISO date-time (YYYY-MM-DDTHH:MM:SS, optional offset)") from None
    return "datetime", t


def conv_gender(v: Any, p: Param) -> tuple[str, Any]:
    canon = _GENDER_LOOKUP.get(_text(v).lower())
    if canon is None:
        raise ValueError(
            "is not a gender Deployteq knows (MAN, WOMAN, FAMILY, NONBINARY, UNKNOWN or a common spelling)"
        )
    return "string", canon


def conv_optin(v: Any, p: Param) -> tuple[str, Any]:
    return "string", "Y" if _flag(v) else "N"


def conv_yesno(v: Any, p: Param) -> tuple[str, Any]:
    return "number", 1 if _flag(v) else 0


def conv_option(v: Any, p: Param) -> tuple[str, Any]:
    return "string", _limited(_text(v).upper(), p.max_length)


CONVERTERS: dict[str, Callable[[Any, Param], tuple[str, Any]]] = {
    "string": conv_string,
    "number": conv_number,
    "integer": conv_integer,
    "boolean": conv_boolean,
    "date": conv_date,
    "datetime": conv_datetime,
    "gender": conv_gender,
    "optin": conv_optin,
    "yesno": conv_yesno,
    "option": conv_option,
}
_EMPTY_VALUE = {"string": ""}  # with ``empty: send``: "" for text, null for typed fields


def _inferred(v: Any, p: Param) -> tuple[str, Any]:
    """Default mapping (no ``params:`` list): text stays text, JSON booleans and numbers keep their type."""
    if isinstance(v, str):
        return "string", _limited(v, p.max_length)
    if isinstance(v, bool):
        return "boolean", v
    if isinstance(v, (int, float)):
        return "number", v
    raise ValueError("holds a nested object or array (flatten it, or list it under params:)")


# --- the row normalizer -------------------------------------------------------------------


class Normalizer:
    """Turns records of one source into profiles for one segment."""

    def __init__(
        self,
        segment: Segment,
        identifier: str,
        columns: Iterable[str] | None,
        default_status: str = "NEW",
        status_allowed: bool = True,
        source_name: str = "input",
    ) -> None:
        self.segment = segment
        self.identify = IDENTITIES[identifier]
        self.id_column = segment.id_column
        self.status_column = segment.status_column
        self.default_status = default_status.upper()
        if self.default_status not in STATUSES:
            raise InputError(f"--status must be NEW, MODIFIED or REMOVED, got {default_status!r}")
        self.send_empty = segment.empty == "send"
        cols = list(columns) if columns is not None else None
        self.fixed_columns = cols is not None
        self.has_status = cols is not None and self.status_column in cols
        if cols is not None:
            if self.id_column not in cols:
                raise InputError(
                    f"{source_name}: no id column {self.id_column!r} (columns: {', '.join(cols)})",
                    hint="Set id_column: in the segment config to the column that holds the identifier.",
                )
            if self.has_status and not status_allowed:
                raise InputError(
                    f"{source_name}: has a {self.status_column!r} column; sync derives NEW/MODIFIED/REMOVED itself",
                    hint="Drop the column from the export, or use `canopycli push` for change files.",
                )
            if segment.params is not None:
                missing = [p.source for p in segment.params if p.source not in cols]
                if missing:
                    raise InputError(f"{source_name}: param column(s) not in the header: {', '.join(missing)}")
        self.status_allowed = status_allowed
        self.explicit = segment.params is not None
        if segment.params is not None:
            self.params = [(p.source, p, CONVERTERS[p.type]) for p in segment.params]
        elif cols is not None:
            skip = {self.id_column, self.status_column}
            self.params = [(c, Param(name=c), _inferred) for c in cols if c not in skip]
        else:
            self.params = []
        self._default_param_cache: dict[str, Param] = {}

    def __call__(self, line: int, record: dict[str, Any]) -> Profile | Reject:
        raw_id = record.get(self.id_column)
        if raw_id is None:
            return Reject(line, f"no {self.id_column!r} value")
        try:
            cid = self.identify(raw_id)
        except ValueError as e:
            return Reject(line, f"{self.id_column}: {e}")
        status = self.default_status
        if self.has_status or (not self.fixed_columns and self.status_column in record):
            if not self.status_allowed:
                return Reject(line, f"has a {self.status_column!r} field; sync derives the status itself")
            s = record.get(self.status_column)
            s = s.strip().upper() if isinstance(s, str) else s
            if s not in STATUSES:
                return Reject(line, f"{self.status_column}: must be NEW, MODIFIED or REMOVED")
            status = s
        params: list[dict[str, Any]] = []
        items = self.params if self.fixed_columns or self.explicit else self._jsonl_params(record)
        for column, p, conv in items:
            v = record.get(column)
            if v is None or (isinstance(v, str) and not v.strip()):
                if not self.send_empty:
                    continue
                params.append({"name": p.name, "type": _wire_type(p), "value": _EMPTY_VALUE.get(p.type)})
                continue
            try:
                wire_type, value = conv(v, p)
            except ValueError as e:
                return Reject(line, f"{column}: {e}")
            params.append({"name": p.name, "type": wire_type, "value": value})
        return Profile(line, cid, {"customerId": cid, "r42Status": status, "params": params})

    def _jsonl_params(self, record: dict[str, Any]) -> list[tuple[str, Param, Any]]:
        out = []
        cache = self._default_param_cache
        for c in record:
            if c == self.id_column or c == self.status_column:
                continue
            p = cache.get(c)
            if p is None:
                p = cache[c] = Param(name=c[:256] or "_")
            out.append((c, p, _inferred))
        return out


_WIRE_TYPES = {"integer": "number", "gender": "string", "optin": "string", "yesno": "number", "option": "string"}


def _wire_type(p: Param) -> str:
    return _WIRE_TYPES.get(p.type, p.type)
