from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from canopycli.config import Param, Segment
from canopycli.errors import InputError
from canopycli.normalize import _FAST_EMAIL, Normalizer, Profile, Reject, customer_id, email_is_valid, hashed_email


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
    assert n(3, {"email": "a@x.com", "status": "gone"}) == Reject(3, "status: must be NEW, MODIFIED or REMOVED")
    n2 = Normalizer(seg(), "hashed_email", ["email"], default_status="removed")
    got = n2(2, {"email": "a@x.com"})
    assert isinstance(got, Profile) and got.customer["r42Status"] == "REMOVED"
    with pytest.raises(InputError):
        Normalizer(seg(), "hashed_email", ["email"], default_status="DELETED")


def test_reject_reason_names_column_but_not_the_email() -> None:
    n = Normalizer(seg(), "hashed_email", ["email"])
    got = n(7, {"email": "secret.person@@example.com"})
    assert got == Reject(7, "email: is not a valid email address")


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
    ("number", "12.50", ("number", 12.5)),
    ("number", "-3", ("number", -3)),
    ("number", 7, ("number", 7)),
    ("integer", "42", ("number", 42)),
    ("date", "2024-02-29", ("date", "2024-02-29")),
    ("datetime", "2024-02-29T10:00:00Z", ("datetime", "2024-02-29T10:00:00Z")),
    ("option", "gold", ("string", "GOLD")),
]


@pytest.mark.parametrize(("ptype", "value", "wire"), TYPED)
def test_typed_params(ptype: str, value: Any, wire: tuple[str, Any]) -> None:
    n = Normalizer(seg(params=[Param(name="p", column="c", type=ptype)]), "hashed_email", None)  # type: ignore[arg-type]
    got = n(1, {"email": "a@x.com", "c": value})
    assert isinstance(got, Profile)
    assert got.customer["params"] == [{"name": "p", "type": wire[0], "value": wire[1]}]


BAD = [
    ("gender", "sometimes"),
    ("optin", "maybe"),
    ("boolean", "2"),
    ("number", "1,5"),
    ("number", True),
    ("integer", "4.5"),
    ("date", "31-12-1980"),
    ("date", "2023-02-29"),
    ("datetime", "yesterday"),
    ("option", "x" * 257),
    ("string", "y" * 257),
    ("string", {"nested": 1}),
]


@pytest.mark.parametrize(("ptype", "value"), BAD)
def test_unconvertible_values_reject_the_row_naming_the_column(ptype: str, value: Any) -> None:
    n = Normalizer(seg(params=[Param(name="p", column="col", type=ptype)]), "hashed_email", None)  # type: ignore[arg-type]
    got = n(9, {"email": "a@x.com", "col": value})
    assert isinstance(got, Reject) and got.line == 9 and got.reason.startswith("col: ")


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
    assert n(3, {"mail": "a@x.com"}) == Reject(3, "no 'email' value")


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
    assert enc(5, ["a@x.com", "Li\udce8ge", "1"]) == Reject(5, "is not valid UTF-8 (re-export the file as UTF-8)")
