"""Deployteq's mapping rules for params: a cell -> the value to send, or the reason it cannot be.

A converter takes a cell (text from CSV, any JSON value from JSONL) and returns the value to
send, or raises ValueError with the reason. Each is built once per param (``converter``,
``param_maker``), so the per-row work is a dict lookup or a C-level string method on the
common path. Nothing is silently changed in meaning: a value that cannot be converted is refused.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, TypeVar

from ..config import Param

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


def empty_value(p: Param) -> Any:
    """The value an empty cell sends with ``empty: send``: "" for text, null for a typed param."""
    return "" if p.type == "string" else None
