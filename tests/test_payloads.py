"""The payload adapters: engine payloads, Copernica callbacks and forms -> records."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from canopycli.config import Segment
from canopycli.errors import InputError
from canopycli.pipeline.payloads import (
    MAX_FORM_FIELDS,
    MAX_PARTNER_IDS,
    PayloadError,
    copernica_form,
    copernica_record,
    engine_records,
    payload_adapter,
    payload_records,
    payload_settings,
    select_segment,
)
from canopycli.pipeline.records import Unreadable

EMAIL = "ann@example.com"

SEGMENTS = {
    "Welcome": Segment(connector="main", id_column="email", external_id="2582431"),
    "Winback": Segment(connector="main", id_column="customer", status_column="r42", name="Win back"),
    "2582431": Segment(connector="main", id_column="email"),  # a key equal to another's external_id
}


def engine(**over: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "siteNumber": 1234,
        "partnerNumber": 2001,
        "partnerAudienceId": "2582431",
        "relay42AudienceNumber": 101,
        "partnerIds": [EMAIL, "bob@example.com"],
        "audienceVariables": {"TestVar": "testValue"},
        "profileId": "29401b86",
        "sourceId": "94844bd8",
        "data": {"Custom": "Test Custom"},
    }
    payload.update(over)
    return {k: v for k, v in payload.items() if v is not ...}


# --- engine ---------------------------------------------------------------------------------


def test_engine_one_record_per_partner_id() -> None:
    key, records = engine_records(engine(), SEGMENTS, None)
    assert key == "Welcome"  # external_id wins over a key with the same text
    assert records == [
        {"email": EMAIL, "status": "NEW", "Custom": "Test Custom", "TestVar": "testValue"},
        {"email": "bob@example.com", "status": "NEW", "Custom": "Test Custom", "TestVar": "testValue"},
    ]


@pytest.mark.parametrize(
    ("audience", "key"),
    [
        ("2582431", "Welcome"),
        (2582431, "Welcome"),
        ("Winback", "Winback"),
        ("Win back", "Winback"),
        (" 2582431 ", "Welcome"),
    ],
)
def test_engine_selects_by_external_id_then_key_then_name(audience: object, key: str) -> None:
    got, records = engine_records(engine(partnerAudienceId=audience), SEGMENTS, None)
    assert got == key
    seg = SEGMENTS[key]
    assert set(records[0]) >= {seg.id_column, seg.status_column}


def test_select_segment_none() -> None:
    assert select_segment("nope", SEGMENTS) is None


@pytest.mark.parametrize(
    ("over", "url_status", "status"),
    [
        ({}, None, "NEW"),
        ({}, "REMOVED", "REMOVED"),
        ({"status": "modified"}, "REMOVED", "MODIFIED"),
        ({"r42Status": " Removed "}, None, "REMOVED"),
        ({"status": "NEW", "r42Status": "new"}, None, "NEW"),
        ({"status": None}, "MODIFIED", "MODIFIED"),
    ],
)
def test_engine_status(over: dict[str, Any], url_status: str | None, status: str) -> None:
    _, records = engine_records(engine(**over), SEGMENTS, url_status)
    assert {r["status"] for r in records} == {status}


def test_engine_profile_variables_win_over_audience_data() -> None:
    payload = engine(data={"a": 1, "b": "audience"}, audienceVariables={"b": "profile", "c": None})
    _, records = engine_records(payload, SEGMENTS, None)
    assert records[0] == {"email": EMAIL, "status": "NEW", "a": 1, "b": "profile", "c": None}


@pytest.mark.parametrize(
    "absent", [{"data": ...}, {"audienceVariables": ...}, {"data": None, "audienceVariables": None}]
)
def test_engine_params_optional(absent: dict[str, Any]) -> None:
    _, records = engine_records(engine(**absent), SEGMENTS, None)
    assert records[0]["email"] == EMAIL


def test_engine_numbers_as_text() -> None:
    _, records = engine_records(engine(partnerAudienceId="Winback", partnerIds=[12, "13"]), SEGMENTS, None)
    assert [r["customer"] for r in records] == ["12", "13"]
    assert records[0]["r42"] == "NEW"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1], "an engine payload is a JSON object (got array)"),
        ("x", "an engine payload is a JSON object (got text)"),
        (engine(partnerAudienceId=...), "no partnerAudienceId: it selects the segment"),
        (engine(partnerAudienceId=None), "no partnerAudienceId: it selects the segment"),
        (engine(partnerAudienceId=True), "partnerAudienceId must be text or a whole number (got boolean)"),
        (engine(partnerAudienceId=1.5), "partnerAudienceId must be text or a whole number (got number)"),
        (
            engine(partnerAudienceId="99"),
            "partnerAudienceId '99' matches no segment (set external_id: on the segment it is for)",
        ),
        (engine(partnerAudienceId=EMAIL), "partnerAudienceId (a value like an email address) matches no segment"),
        (engine(partnerIds=...), "no partnerIds: the payload names no profile"),
        (engine(partnerIds=[]), "partnerIds is empty: the payload names no profile"),
        (engine(partnerIds=EMAIL), "partnerIds must be an array (got text)"),
        (engine(partnerIds=[EMAIL, {"a": 1}]), "partnerIds[1] must be text (got object)"),
        (engine(partnerIds=[False]), "partnerIds[0] must be text (got boolean)"),
        (engine(partnerIds=[None]), "partnerIds[0] must be text (got null)"),
        (engine(data=[1]), "data must be an object (got array)"),
        (engine(audienceVariables="x"), "audienceVariables must be an object (got text)"),
        (engine(status="GONE"), "status must be NEW, MODIFIED or REMOVED (got 'GONE')"),
        (engine(r42Status=1), "r42Status must be NEW, MODIFIED or REMOVED (got '1')"),
        (engine(status="NEW", r42Status="REMOVED"), "status and r42Status disagree: send one"),
        (engine(audienceVariables={"email": "x"}), "a variable is named 'email', the segment's id_column"),
        (engine(data={"status": "REMOVED"}), "a variable is named 'status', the segment's status_column"),
    ],
)
def test_engine_refusals(payload: object, reason: str) -> None:
    with pytest.raises(PayloadError) as e:
        engine_records(payload, SEGMENTS, None)
    assert str(e.value).startswith(reason)
    assert EMAIL not in str(e.value)


def test_engine_partner_ids_capped() -> None:
    ok = engine(partnerIds=[str(i) for i in range(MAX_PARTNER_IDS)])
    assert len(engine_records(ok, SEGMENTS, None)[1]) == MAX_PARTNER_IDS
    with pytest.raises(PayloadError, match=f"partnerIds has {MAX_PARTNER_IDS + 1} entries; at most"):
        engine_records(engine(partnerIds=["1"] * (MAX_PARTNER_IDS + 1)), SEGMENTS, None)


# --- Copernica -------------------------------------------------------------------------------

SEG = Segment(connector="main", id_column="email")


@pytest.mark.parametrize(("action", "status"), [("create", "NEW"), ("update", "MODIFIED"), ("DELETE", "REMOVED")])
def test_copernica_legacy(action: str, status: str) -> None:
    callback = {"id": 17, "action": action, "fields": {"email": EMAIL, "city": "Utrecht"}, "interests": ["golf"]}
    assert copernica_record(callback, SEG) == {"email": EMAIL, "status": status, "city": "Utrecht"}


def test_copernica_legacy_updated_values_win() -> None:
    callback = {
        "id": 17,
        "action": "update",
        "fields": {"email": "old@example.com", "city": "Utrecht", "name": "Ann"},
        "updated": {"email": EMAIL, "city": "Zwolle"},
    }
    assert copernica_record(callback, SEG) == {"email": EMAIL, "status": "MODIFIED", "city": "Zwolle", "name": "Ann"}


@pytest.mark.parametrize(("kind", "status"), [("create", "NEW"), ("update", "MODIFIED"), ("delete", "REMOVED")])
def test_copernica_webhook(kind: str, status: str) -> None:
    webhook = {
        "type": kind,
        "profile": "42",
        "database": "3",
        "timestamp": "2024-01-05 21:31:40",
        "time": "1704490300",
        "fields": {"email": EMAIL, "city": "Utrecht"},
        "parameters": {"city": "Zwolle"},
        "interests": ["golf"],
    }
    assert copernica_record(webhook, SEG) == {"email": EMAIL, "status": status, "city": "Zwolle"}


def test_copernica_status_column() -> None:
    seg = Segment(connector="main", id_column="mail", status_column="r42")
    assert copernica_record({"type": "delete", "fields": {"mail": 5}}, seg) == {"mail": "5", "r42": "REMOVED"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"fields": {"email": EMAIL}}, "no action (Callback URL) or type (webhook)"),
        ({"action": None, "fields": {"email": EMAIL}}, "no action (Callback URL) or type (webhook)"),
        ({"type": "click", "fields": {"email": EMAIL}}, "type 'click' is not a profile create, update or delete"),
        ({"action": "all", "fields": {"email": EMAIL}}, "action 'all' is not a profile create, update or delete"),
        ({"action": ["create"], "fields": {"email": EMAIL}}, "action \"['create']\" is not a profile create"),
        ({"action": "create"}, "the callback has no field 'email' (the segment's id_column)"),
        ({"action": "create", "fields": {"email": ""}}, "the callback has no field 'email' (the segment's id_column)"),
        ({"action": "create", "fields": {"name": "x"}}, "the callback has no field 'email' (the segment's id_column)"),
        ({"action": "create", "fields": {"email": [EMAIL]}}, "the callback's field 'email' must be text (got array)"),
        ({"action": "create", "fields": [EMAIL]}, "fields must be an object (got array)"),
        ({"action": "update", "fields": {"email": EMAIL}, "updated": "x"}, "updated must be an object (got text)"),
        ({"type": "update", "fields": {"email": EMAIL}, "parameters": 3}, "parameters must be an object (got number)"),
        ({"type": "update", "fields": {"email": EMAIL, "status": "gold"}}, "a field is named 'status', the segment's"),
    ],
)
def test_copernica_refusals(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(PayloadError) as e:
        copernica_record(payload, SEG)
    assert str(e.value).startswith(reason)
    assert EMAIL not in str(e.value)


def test_copernica_not_a_mapping() -> None:
    with pytest.raises(PayloadError, match="a Copernica callback is a JSON object or a form"):
        copernica_record([1], SEG)  # type: ignore[arg-type]


# --- forms -----------------------------------------------------------------------------------


def test_form_brackets() -> None:
    body = urlencode(
        [
            ("type", "update"),
            ("profile", "42"),
            ("fields[email]", EMAIL),
            ("fields[city]", "Zwolle"),
            ("fields[note]", ""),
            ("parameters[city]", "Zwolle"),
            ("interests[]", "golf"),
            ("interests[]", "chess"),
            ("timestamp", "2024-01-05 21:31:40"),
        ]
    ).encode()
    form = copernica_form(body)
    assert form == {
        "type": "update",
        "profile": "42",
        "fields": {"email": EMAIL, "city": "Zwolle", "note": ""},
        "parameters": {"city": "Zwolle"},
        "interests": ["golf", "chess"],
        "timestamp": "2024-01-05 21:31:40",
    }
    assert copernica_record(form, SEG) == {"email": EMAIL, "status": "MODIFIED", "city": "Zwolle", "note": ""}


@pytest.mark.parametrize(
    ("body", "form"),
    [
        (b"", {}),
        (b"a=1&b=", {"a": "1", "b": ""}),
        (b"fields%5Bna+me%5D=caf%C3%A9", {"fields": {"na me": "café"}}),
        (b"a[b][c]=1&a[b][d]=2", {"a": {"b": {"c": "1", "d": "2"}}}),
        (b"a[b]c=1", {"a[b]c": "1"}),  # not PHP's brackets: the key as it is
        (b"x[][y]=1", {"x": {"": {"y": "1"}}}),
    ],
)
def test_form_shapes(body: bytes, form: dict[str, Any]) -> None:
    assert copernica_form(body) == form


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"type=create&type=update", "the form gives 'type' more than once"),
        (b"fields[email]=a&fields[email]=b", "the form gives 'fields[email]' more than once"),
        (b"fields=x&fields[email]=b", "the form gives 'fields' both as a value and as an array"),
        (b"interests=x&interests[]=b", "the form gives 'interests' both as a list and otherwise"),
        (b"fields[a]=x&fields[a][b]=y", "the form gives 'a' both as a value and as an array"),
        (b"ann@example.com", "not a form: a field is not key=value"),
        (b"a=1&&b=2", "not a form: a field is not key=value"),
        (b"a=\xff", "the form is not UTF-8 text"),
        (b"a=%ff", "the form is not UTF-8 text"),
        (b"&".join(b"f%d=1" % i for i in range(MAX_FORM_FIELDS + 1)), f"the form has more than {MAX_FORM_FIELDS}"),
        (b"fields[ann@example.com]=1&fields[ann@example.com]=2", "the form gives (a value like an email address)"),
    ],
)
def test_form_refusals(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as e:
        copernica_form(body)
    assert str(e.value).startswith(reason)
    assert EMAIL not in str(e.value)


# --- files of payloads -----------------------------------------------------------------------


def test_payload_records_expand_and_reject() -> None:
    settings = payload_settings("engine", "Welcome", SEGMENTS, "MODIFIED")
    assert settings is not None
    adapt = payload_adapter(settings, SEGMENTS["Welcome"])
    lines = [
        (1, engine()),
        (2, Unreadable("not valid JSON (x)", "{")),
        (3, engine(partnerAudienceId="Winback")),
        (4, engine(partnerIds=[])),
        (5, engine(partnerIds=["c@example.com"], status="REMOVED")),
    ]
    got = list(payload_records(iter(lines), adapt))
    assert [(n, r["email"], r["status"]) for n, r in got if isinstance(r, dict)] == [
        (1, EMAIL, "MODIFIED"),
        (1, "bob@example.com", "MODIFIED"),
        (5, "c@example.com", "REMOVED"),
    ]
    refused = [(n, r.reason) for n, r in got if isinstance(r, Unreadable)]
    assert refused == [
        (2, "not valid JSON (x)"),
        (3, "partnerAudienceId 'Winback' selects segment 'Winback', not 'Welcome'"),
        (4, "partnerIds is empty: the payload names no profile"),
    ]
    [(_, four)] = [(n, r) for n, r in got if n == 4]
    assert isinstance(four, Unreadable) and '"partnerIds":[]' in four.raw  # the line, for --rejects


def test_payload_settings() -> None:
    assert payload_settings("jsonl", "Welcome", SEGMENTS, None) is None
    copernica = payload_settings("copernica", "Welcome", SEGMENTS, None)
    assert copernica == {"format": "copernica", "segment": "Welcome", "segments": {}, "status": None}
    with pytest.raises(InputError, match="--status does not apply to --format copernica"):
        payload_settings("copernica", "Welcome", SEGMENTS, "NEW")
