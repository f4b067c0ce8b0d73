from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import orjson
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from canopycli.config import Param, Segment
from canopycli.errors import InputError
from canopycli.pipeline.normalize import (
    _FAST_EMAIL,
    Normalizer,
    Profile,
    Reject,
    _unencodable,
    customer_id,
    email_is_valid,
    hashed_email,
)
from canopycli.pipeline.records import jsonl_records as _jsonl_records

from .conftest import reject_of


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@example.com", sha("alice@example.com")),
        ("  Alice@Example.COM \t", sha("alice@example.com")),
        ("o'brien+tag@mail.example.co.uk", sha("o'brien+tag@mail.example.co.uk")),
        ("jürgen@example.de", sha("jürgen@example.de")),
        ("A" * 64, "a" * 64),  # a digest passes through, lowercased
        (sha("x@y.nl").upper(), sha("x@y.nl")),
    ],
)
def test_hashed_email(raw: str, expected: str) -> None:
    assert hashed_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "plainaddress", "a@@b.com", "a@b", "a b@c.com", ".a@b.com", "a..b@c.com", "a@-b.com", "a" * 63]
)
def test_invalid_emails_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        hashed_email(raw)


def _validator_accepts(s: str) -> bool:
    try:
        validate_email(s, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


local = st.from_regex(r"[a-z0-9_%+\-]{1,20}(\.[a-z0-9_%+\-]{1,10}){0,2}", fullmatch=True)
domain = st.from_regex(r"([a-z0-9]([a-z0-9\-]{0,10}[a-z0-9])?\.){1,3}[a-z]{2,8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(local, domain)
def test_fast_path_never_accepts_what_the_full_check_refuses(lp: str, dom: str) -> None:
    s = f"{lp}@{dom}"
    if email_is_valid(s) and _FAST_EMAIL.fullmatch(s):
        assert _validator_accepts(s), s


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_gives_a_digest_or_a_refusal(s: str) -> None:
    try:
        out = hashed_email(s)
    except ValueError:
        return
    assert len(out) == 64 and out == out.lower()
    assert email_is_valid(s.strip().lower()) or len(s.strip()) == 64


@pytest.mark.parametrize(("raw", "ok"), [(" 42 ", "42"), (42, "42"), ("x" * 100, "x" * 100)])
def test_customer_id(raw: Any, ok: str) -> None:
    assert customer_id(raw) == ok


@pytest.mark.parametrize("raw", ["", "  ", "x" * 101, True, None, 1.5])
def test_customer_id_refused(raw: Any) -> None:
    with pytest.raises(ValueError):
        customer_id(raw)


def seg(**kw: Any) -> Segment:
    return Segment(connector="main", id_column="email", **kw)


def test_default_params_are_every_other_column_as_string_and_empty_skipped() -> None:
    n = Normalizer(seg(), "hashed_email", ["email", "status", "firstName", "city"])
    got = n(2, {"email": "a@x.com", "status": "modified", "firstName": " Al ", "city": ""})
    assert got == Profile(
        2,
        sha("a@x.com"),
        {
            "customerId": sha("a@x.com"),
            "r42Status": "MODIFIED",
            "params": [{"name": "firstName", "type": "string", "value": " Al "}],
        },
    )


def test_empty_send_mode() -> None:
    params = [Param(name="city"), Param(name="age", type="integer")]
    n = Normalizer(seg(params=params, empty="send"), "hashed_email", ["email", "city", "age"])
    got = n(2, {"email": "a@x.com", "city": "", "age": " "})
    assert isinstance(got, Profile)
    assert got.customer["params"] == [
        {"name": "city", "type": "string", "value": ""},
        {"name": "age", "type": "number", "value": None},
    ]


def test_status_default_and_unknown_status() -> None:
    n = Normalizer(seg(), "hashed_email", ["email", "status"], default_status="removed")
    assert reject_of(n(3, {"email": "a@x.com", "status": "gone"})) == Reject(
        3, "status: must be NEW, MODIFIED or REMOVED"
    )
    n2 = Normalizer(seg(), "hashed_email", ["email"], default_status="removed")
    got = n2(2, {"email": "a@x.com"})
    assert isinstance(got, Profile) and got.customer["r42Status"] == "REMOVED"
    with pytest.raises(InputError):
        Normalizer(seg(), "hashed_email", ["email"], default_status="DELETED")


def test_reject_reason_names_column_but_not_the_email() -> None:
    n = Normalizer(seg(), "hashed_email", ["email"])
    got = n(7, {"email": "secret.person@@example.com"})
    assert reject_of(got) == Reject(7, "email: is not a valid email address")


def test_missing_id_column_and_param_column() -> None:
    with pytest.raises(InputError, match="no id column 'email'"):
        Normalizer(seg(), "hashed_email", ["mail", "x"])
    with pytest.raises(InputError, match="not in the header: nope"):
        Normalizer(seg(params=[Param(name="x", column="nope")]), "hashed_email", ["email"])


TYPED = [
    ("gender", "Female", ("string", "WOMAN")),
    ("gender", "dhr", ("string", "MAN")),
    ("gender", "X", ("string", "NONBINARY")),
    ("gender", "familie", ("string", "FAMILY")),
    ("optin", "yes", ("string", "Y")),
    ("optin", "0", ("string", "N")),
    ("yesno", "Ja", ("number", 1)),
    ("yesno", False, ("number", 0)),
    ("boolean", "TRUE", ("boolean", True)),
    ("boolean", True, ("boolean", True)),
    ("boolean", "t", ("boolean", True)),
    ("boolean", "F", ("boolean", False)),
    ("boolean", "j", ("boolean", True)),
    ("boolean", "NEE", ("boolean", False)),
    ("boolean", 0, ("boolean", False)),
    ("number", "12.50", ("number", 12.5)),
    ("number", "-3", ("number", -3)),
    ("number", 7, ("number", 7)),
    ("number", " +7 ", ("number", 7)),  # whitespace around a number is trimmed
    ("number", "007", ("number", 7)),
    ("number", "-0", ("number", 0)),
    ("number", "-0.0", ("number", 0.0)),
    ("number", ".5", ("number", 0.5)),
    ("number", "12.", ("number", 12.0)),
    ("number", "1e3", ("number", 1000.0)),
    ("number", "2.5E-3", ("number", 0.0025)),
    ("number", "0e-400", ("number", 0.0)),  # zero, however written, is in range
    ("number", "9007199254740991", ("number", 2**53 - 1)),
    ("number", "-9007199254740991", ("number", 1 - 2**53)),
    ("number", "0000000000000000000000042", ("number", 42)),
    ("number", 2**53 - 1, ("number", 2**53 - 1)),
    ("number", 1.5, ("number", 1.5)),
    ("integer", "42", ("number", 42)),
    ("integer", " 12.0 ", ("number", 12)),
    ("integer", "-12.", ("number", -12)),
    ("integer", "+5", ("number", 5)),
    ("integer", 12.0, ("number", 12)),
    ("integer", 1e3, ("number", 1000)),
    ("date", "2024-02-29", ("date", "2024-02-29")),
    ("date", " 0001-01-01 ", ("date", "0001-01-01")),
    ("datetime", "2024-02-29T10:00:00Z", ("datetime", "2024-02-29T10:00:00Z")),
    ("datetime", "2024-02-29T10:00", ("datetime", "2024-02-29T10:00")),
    ("datetime", "2024-02-29 10:00:00", ("datetime", "2024-02-29T10:00:00")),  # a space is written as T
    ("datetime", "2024-02-29T23:59:59.123456-05:30", ("datetime", "2024-02-29T23:59:59.123456-05:30")),
    ("datetime", "2024-02-29T00:00:00.5+23:59", ("datetime", "2024-02-29T00:00:00.5+23:59")),
    ("option", "gold", ("string", "GOLD")),
    ("option", " straße ", ("string", "STRASSE")),
    ("string", 12, ("string", "12")),  # a JSON number in a text param: its JSON text
]


@pytest.mark.parametrize(("ptype", "value", "wire"), TYPED)
def test_typed_params(ptype: str, value: Any, wire: tuple[str, Any]) -> None:
    n = Normalizer(seg(params=[Param(name="p", column="c", type=ptype)]), "hashed_email", None)  # type: ignore[arg-type]
    got = n(1, {"email": "a@x.com", "c": value})
    assert isinstance(got, Profile)
    assert got.customer["params"] == [{"name": "p", "type": wire[0], "value": wire[1]}]


OUT_OF_RANGE = "out of range"
NOT_NUMBER = "is not a number"
NOT_WHOLE = "is not a whole number"
NOT_DATE = "is not a date as YYYY-MM-DD"
NOT_DATETIME = "is not a date-time"

BAD = [
    ("gender", "sometimes", "is not a gender"),
    ("optin", "maybe", "is not a yes/no value"),
    ("boolean", "2", "is not a yes/no value"),
    ("boolean", 1.0, "is not a yes/no value"),
    ("number", "1,5", NOT_NUMBER),
    ("number", True, "is a boolean"),
    ("number", "1e400", OUT_OF_RANGE),  # was sent as null
    ("number", "-1E400", OUT_OF_RANGE),
    ("number", "1e-400", OUT_OF_RANGE),  # was sent as 0.0
    ("number", "9007199254740992", OUT_OF_RANGE),  # 2^53
    ("number", "-9007199254740992", OUT_OF_RANGE),
    ("number", "9007199254740992.0", OUT_OF_RANGE),
    ("number", "99999999999999999999", OUT_OF_RANGE),  # was sent as 99999999999999999999
    ("number", "9" * 5000, OUT_OF_RANGE),  # was int()'s own "Exceeds the limit (4300 digits)"
    ("number", 2**53, OUT_OF_RANGE),
    ("number", 2**64, OUT_OF_RANGE),  # was "is not valid UTF-8" (orjson refuses > 64 bits)
    ("number", 1.8446744073709552e19, OUT_OF_RANGE),  # what orjson.loads makes of 2^64 in JSONL
    ("number", float("inf"), OUT_OF_RANGE),
    ("number", float("nan"), OUT_OF_RANGE),
    ("number", "NaN", NOT_NUMBER),
    ("number", "nan", NOT_NUMBER),
    ("number", "Infinity", NOT_NUMBER),
    ("number", "-inf", NOT_NUMBER),
    ("number", "\u0663", NOT_NUMBER),  # Arabic-Indic 3: was sent as 3
    ("number", "\u0661\u0662.5", NOT_NUMBER),
    ("number", "\uff11\uff12", NOT_NUMBER),  # full-width 12
    ("number", "\u00b2", NOT_NUMBER),  # superscript 2: isdigit() says yes, int() says no
    ("number", "1_000", NOT_NUMBER),  # int() and float() take _ separators
    ("number", "1 000", NOT_NUMBER),
    ("number", "0x10", NOT_NUMBER),
    ("number", "1e", NOT_NUMBER),
    ("number", ".", NOT_NUMBER),
    ("number", "+", NOT_NUMBER),
    ("number", "--1", NOT_NUMBER),
    ("number", [1], "nested"),
    ("integer", "4.5", NOT_WHOLE),
    ("integer", "1e3", NOT_WHOLE),
    ("integer", "\u0664\u0662", NOT_WHOLE),  # was sent as 42
    ("integer", "1_000", NOT_WHOLE),
    ("integer", 4.5, NOT_WHOLE),
    ("integer", True, "is a boolean"),
    ("integer", "9007199254740992", OUT_OF_RANGE),
    ("integer", "9" * 5000, OUT_OF_RANGE),
    ("integer", 2**64, OUT_OF_RANGE),
    ("integer", 1e20, OUT_OF_RANGE),
    ("integer", float("inf"), OUT_OF_RANGE),
    ("string", 2**53, OUT_OF_RANGE),  # a JSON number in a text param: the same range rule
    ("string", 1.8446744073709552e19, OUT_OF_RANGE),  # was sent as "1.8446744073709552e+19"
    ("option", float("nan"), OUT_OF_RANGE),
    ("date", "31-12-1980", NOT_DATE),
    ("date", "2023-02-29", NOT_DATE),
    ("date", "2024-W01-1", NOT_DATE),  # an ISO week date: was sent as 2024-01-01
    ("date", "2024-W01", NOT_DATE),
    ("date", "2024-001", NOT_DATE),
    ("date", "20240101", NOT_DATE),
    ("date", "0000-01-01", NOT_DATE),
    ("date", "\uff12\uff10\uff12\uff14-01-01", NOT_DATE),
    ("date", "2024-01-01T10:00", NOT_DATE),
    ("datetime", "yesterday", NOT_DATETIME),
    ("datetime", "2024-01-01", NOT_DATETIME),  # a date alone
    ("datetime", "2024-W01-1T10:00", NOT_DATETIME),  # was sent as given
    ("datetime", "2024-001T10:00", NOT_DATETIME),
    ("datetime", "20240101", NOT_DATETIME),  # was accepted as a date-time
    ("datetime", "20240101T100000", NOT_DATETIME),
    ("datetime", "2024-01-01T10", NOT_DATETIME),
    ("datetime", "2024-01-01T1000", NOT_DATETIME),
    ("datetime", "2024-01-01T10:00:00.1234567", NOT_DATETIME),  # Python drops the 7th digit
    ("datetime", "2024-01-01T10:00:00,5", NOT_DATETIME),
    ("datetime", "2024-01-01T10:00:00+0100", NOT_DATETIME),
    ("datetime", "2024-01-01T10:00:00+01", NOT_DATETIME),
    ("datetime", "2024-01-01T10:00:00+01:00:30", NOT_DATETIME),
    ("datetime", "2024-01-01T10:00+24:00", NOT_DATETIME),
    ("datetime", "2024-01-01T24:00", NOT_DATETIME),
    ("datetime", "2024-01-01T10:00:60", NOT_DATETIME),
    ("datetime", "2024-02-30T10:00", NOT_DATETIME),
    ("datetime", "2024-01-01t10:00z", NOT_DATETIME),
    ("datetime", "2024-01-01T10:00ZZ", NOT_DATETIME),
    ("datetime", "\u0662\u0660\u0662\u0664-01-01T10:00", NOT_DATETIME),
    ("option", "x" * 257, "is longer than 256"),
    ("option", "\u00df" * 200, "is longer than 256 characters once uppercased (400)"),
    ("string", "y" * 257, "is longer than 256"),
    ("string", {"nested": 1}, "nested"),
]


@pytest.mark.parametrize(("ptype", "value", "why"), BAD, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("encoded", [False, True])
def test_unconvertible_values_reject_the_row_naming_the_column(ptype: str, value: Any, why: str, encoded: bool) -> None:
    n = Normalizer(seg(params=[Param(name="p", column="col", type=ptype)]), "hashed_email", None, encoded=encoded)  # type: ignore[arg-type]
    got = n(9, {"email": "a@x.com", "col": value})
    assert isinstance(got, Reject) and got.line == 9 and got.reason.startswith("col: "), got
    assert why in got.reason


def test_the_yes_no_reason_lists_every_accepted_spelling() -> None:
    n = Normalizer(seg(params=[Param(name="p", column="c", type="boolean")]), "hashed_email", None)
    got = n(1, {"email": "a@x.com", "c": "maybe"})
    assert isinstance(got, Reject)
    listed = set(re.findall(r"[a-z0-9]+", got.reason.split("(", 1)[1]))
    assert {"true", "false", "t", "f", "yes", "no", "y", "n", "ja", "nee", "j", "1", "0"} <= listed


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b'{"email": "a@x.com", "n": 18446744073709551616}', "n"),  # orjson.loads makes it a float
        (b'{"email": "a@x.com", "n": -9223372036854775809}', "n"),
        (b'{"email": "a@x.com", "n": 100000000000000000000000000000}', "n"),
        (b'{"email": "a@x.com", "n": 9007199254740993}', "n"),  # an int, past what a double holds
        (b'{"email": "a@x.com", "n": 1e300}', "n"),
    ],
)
@pytest.mark.parametrize("encoded", [False, True])
def test_jsonl_numbers_past_2_53_reject_as_out_of_range_not_rounded(line: bytes, field: str, encoded: bool) -> None:
    (_, record), *_ = _jsonl_records(io.BytesIO(line + b"\n"))
    n = Normalizer(seg(), "hashed_email", None, encoded=encoded)  # JSONL without params: typed by JSON
    assert reject_of(n(1, record)) == Reject(
        1, f"{field}: is out of range (a number must be finite, with magnitude below 2^53 = 9,007,199,254,740,992)"
    )
    typed = Normalizer(seg(params=[Param(name=field, type="number")]), "hashed_email", None, encoded=encoded)
    got = typed(1, record)
    assert isinstance(got, Reject) and got.reason.startswith(f"{field}: is out of range")


def test_jsonl_numbers_in_range_keep_their_exact_value() -> None:
    line = b'{"email": "a@x.com", "a": 9007199254740991, "b": -9007199254740991, "c": 1.5, "d": -0.0, "e": 0}\n'
    (_, record), *_ = _jsonl_records(io.BytesIO(line))
    got = Normalizer(seg(), "hashed_email", None, encoded=True)(1, record)
    assert isinstance(got, Profile) and isinstance(got.customer, orjson.Fragment)
    assert orjson.dumps(got.customer).endswith(
        b'"params":[{"name":"a","type":"number","value":9007199254740991},'
        b'{"name":"b","type":"number","value":-9007199254740991},{"name":"c","type":"number","value":1.5},'
        b'{"name":"d","type":"number","value":0.0},{"name":"e","type":"number","value":0}]}'
    )


def test_an_integer_orjson_cannot_encode_is_out_of_range_not_utf8() -> None:
    # Converters refuse such integers first; the wire encoder's own refusal names the cause too.
    assert _unencodable([{"name": "n", "type": "number", "value": 2**64}]) == (
        "n: is out of range (a number must be finite, with magnitude below 2^53 = 9,007,199,254,740,992)"
    )
    assert _unencodable([{"name": "c", "type": "string", "value": "Li\udce8ge"}]).startswith("is not valid UTF-8")
    assert _unencodable([{"name": "c", "type": "string", "value": "ok"}]) is None


def test_jsonl_default_mapping_keeps_json_types() -> None:
    n = Normalizer(seg(), "hashed_email", None)
    got = n(1, {"email": "a@x.com", "vip": True, "score": 3, "name": "A", "gone": None})
    assert isinstance(got, Profile)
    assert got.customer["params"] == [
        {"name": "vip", "type": "boolean", "value": True},
        {"name": "score", "type": "number", "value": 3},
        {"name": "name", "type": "string", "value": "A"},
    ]
    assert isinstance(n(2, {"email": "a@x.com", "addr": {"city": "x"}}), Reject)
    assert reject_of(n(3, {"mail": "a@x.com"})) == Reject(3, "no 'email' value")


def test_encoded_profiles_are_the_same_json_and_reject_text_that_is_not_utf8() -> None:
    cols = ["email", "city", "age"]
    params = [Param(name="city"), Param(name="age", type="integer")]
    plain = Normalizer(seg(params=params), "hashed_email", cols)
    enc = Normalizer(seg(params=params), "hashed_email", cols, encoded=True)
    row = ["a@x.com", "Liège", " 42"]
    want = plain(4, row)
    got = enc(4, row)
    assert isinstance(want, Profile) and isinstance(got, Profile)
    assert isinstance(got.customer, orjson.Fragment)
    assert orjson.dumps(got.customer) == orjson.dumps(want.customer)
    assert got.customer_id == want.customer_id and got.line == 4
    # a CSV cell decoded with surrogateescape (the byte \xe8 of a Latin-1 file)
    assert reject_of(enc(5, ["a@x.com", "Li\udce8ge", "1"])) == Reject(
        5, "is not valid UTF-8 (re-export the file as UTF-8)"
    )
