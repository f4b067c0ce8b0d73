"""Incoming engagement events -> stored rows: the fields, the hashing rule, timestamps, and errors
that name the field but never echo an address."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from canopycli.engagements.events import EventError, from_api, from_relay


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


API: dict[str, Any] = {
    "uuid": "9b1f",
    "metric": "clicks",
    "metric_timestamp": "2026-11-20T23:30:00-02:00",
    "campaign_id": 42,
    "campaign_name": "Welcome",
    "brand_id": "7",
    "mailing_type": "campaign",
    "content_name": "Welcome mail",
    "url": "https://example.com/shop",
    "link_description": "Shop",
    "customer_email_address": "  Someone@Example.COM ",
    "email_address": "other@example.com",
    "external_id": 1234,
    "ip_address": "192.0.2.1",  # extra fields: ignored
}


def test_an_api_event_is_stored_with_the_address_hashed_and_the_time_in_utc() -> None:
    e = from_api(API)
    assert (e.uuid, e.metric, e.at, e.day) == ("9b1f", "clicks", "2026-11-21T01:30:00+00:00", "2026-11-21")
    assert (e.campaign_id, e.campaign_name, e.link, e.link_description) == (
        "42",
        "Welcome",
        "https://example.com/shop",
        "Shop",
    )
    assert e.email_sha256 == sha("someone@example.com")  # customer_email_address first, trimmed, lowercased
    assert e.external_id == "1234" and e.source == "api"
    assert "someone" not in repr(e).lower()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"customer_email_address": None}, sha("other@example.com")),  # else email_address
        ({"customer_email_address": "  "}, sha("other@example.com")),
        ({"customer_email_address": "A" * 64}, "a" * 64),  # a digest passes through, lowercased
        ({"customer_email_address": "not an address"}, sha("not an address")),  # hashed all the same
        ({"customer_email_address": None, "email_address": None}, None),
    ],
)
def test_which_address_identifies_the_profile(change: dict[str, Any], expected: str | None) -> None:
    assert from_api({**API, **change}).email_sha256 == expected


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"uuid": None}, '"uuid" is missing'),
        ({"uuid": ""}, '"uuid" is missing'),
        ({"metric": None}, '"metric" is missing'),
        ({"metric": "unsubscribes"}, "\"metric\" is 'unsubscribes'"),
        ({"metric_timestamp": None}, '"metric_timestamp" is missing'),
        ({"metric_timestamp": "yesterday"}, '"metric_timestamp" is not an ISO 8601'),
        ({"metric_timestamp": "0001-01-01T00:00:00+05:00"}, '"metric_timestamp" is out of range'),
        ({"metric_timestamp": "9999-12-31T23:59:59-05:00"}, '"metric_timestamp" is out of range'),
        ({"metric_timestamp": "1900-01-01T00:00:00Z"}, '"metric_timestamp" is not a plausible date'),
        ({"campaign_id": {"id": 1}}, '"campaign_id" is not text (an object)'),
        ({"url": "x" * 5000}, '"url" is longer than'),
        ({"customer_email_address": ["someone@example.com"]}, '"customer_email_address" is not text'),
        ({"external_id": True}, '"external_id" is not text (true or false)'),
    ],
)
def test_a_bad_api_event_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(EventError) as err:
        from_api({**API, **change})
    assert field in str(err.value)
    assert "example.com" not in str(err.value)


def test_an_api_event_that_is_not_an_object_or_of_an_unconfigured_metric_is_refused() -> None:
    with pytest.raises(EventError, match="not a JSON object"):
        from_api(["uuid"])
    with pytest.raises(EventError, match=r"engagements\.metrics"):
        from_api(API, metrics=("sends", "opens"))
    assert from_api({**API, "metric_timestamp": "2026-11-20 10:00:00"}).at == "2026-11-20T10:00:00+00:00"


RELAY: dict[str, Any] = {
    "type": "Email Bounce",
    "timestamp": "2026-11-20T10:00:00Z",
    "email": "Someone@Example.com",
    "campaignId": "42",
    "brandId": "1",
    "mailingType": "campaign",
    "contentName": "Welcome",
    "bounceType": "HARD",
    "bounceCategory": "unknown user",
}


def test_a_relay_event_maps_the_connector_s_names() -> None:
    e = from_relay(RELAY)
    assert (e.metric, e.day, e.campaign_id, e.brand_id, e.mailing_type, e.content_name) == (
        "bounces", "2026-11-20", "42", "1", "campaign", "Welcome")  # fmt: skip
    assert (e.bounce_type, e.bounce_category, e.source) == ("HARD", "unknown user", "relay")
    assert e.email_sha256 == sha("someone@example.com") and e.external_id is None
    click = from_relay({"type": "email  CLICK", "timestamp": "2026-11-20T10:00:00Z", "customerId": 9,
                        "linkHref": "https://e.x/a", "linkDescription": "A"})  # fmt: skip
    assert (click.metric, click.external_id, click.link, click.link_description) == (
        "clicks",
        "9",
        "https://e.x/a",
        "A",
    )
    assert {from_relay({**RELAY, "type": t}).metric for t in ("Email Receive", "Email Open", "Email Complaint")} == {
        "sends", "opens", "complaints"}  # fmt: skip


def test_a_relay_event_without_a_uuid_gets_one_from_its_content() -> None:
    assert from_relay(RELAY).uuid == from_relay(dict(reversed(RELAY.items()))).uuid  # key order does not matter
    assert from_relay(RELAY).uuid != from_relay({**RELAY, "timestamp": "2026-11-20T10:00:01Z"}).uuid
    assert from_relay({**RELAY, "uuid": "given-1"}).uuid == "given-1"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "Email Fax"}, "\"type\" is 'Email Fax'"),
        ({"type": None}, '"type" is missing'),
        ({"timestamp": None}, '"timestamp" is missing'),
        ({"timestamp": "20/11/2026"}, '"timestamp" is not an ISO 8601'),
        ({"email": 12}, '"email" is not text'),
    ],
)
def test_a_bad_relay_event_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(EventError) as err:
        from_relay({**RELAY, **change})
    assert field in str(err.value)
    assert "example.com" not in str(err.value).lower()
