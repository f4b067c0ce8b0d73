"""Engagement events as they arrive -> ``Event`` rows as they are stored.

Two shapes come in: the Analytics Events API's snake_case events (``from_api``) and the
connector's camelCase engagement properties posted to the relay (``from_relay``). Both end as the
same ``store.engagements.Event``: a UTC timestamp and day, the campaign fields, and the profile's
identifiers the way canopycli sends them — an address only as the SHA-256 of its trimmed,
lowercased text (``email_sha256``; a 64-hex digest is kept as it is), a customer id as given
(``external_id``). The address itself is never kept, and never put in an error message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid as uuidlib
from collections.abc import Collection, Mapping
from typing import Any

import orjson

from ..pipeline.normalize import hashed_email
from ..store.engagements import METRICS, Event

# The connector's engagement types -> the API's metric names.
RELAY_TYPES = {
    "email receive": "sends",
    "email open": "opens",
    "email click": "clicks",
    "email bounce": "bounces",
    "email complaint": "complaints",
}
# uuid5 namespace of events posted without a uuid: the same event posted twice gets the same id.
_RELAY_NAMESPACE = uuidlib.UUID("6f1c52a4-3c1e-4d53-9d7e-6a4f3b0c2e11")
_MAX_TEXT = 4096  # longer values are refused: a URL or a name, not a document


class EventError(ValueError):
    """An event that cannot be stored; the message names the field (never its value)."""


# The stored text fields and where each shape keeps them.
API_FIELDS = {
    "campaign_id": "campaign_id",
    "campaign_name": "campaign_name",
    "brand_id": "brand_id",
    "mailing_type": "mailing_type",
    "content_name": "content_name",
    "link": "url",
    "link_description": "link_description",
    "bounce_type": "bounce_type",
    "bounce_category": "bounce_category",
}
RELAY_FIELDS = {
    "campaign_id": "campaignId",
    "campaign_name": "campaignName",
    "brand_id": "brandId",
    "mailing_type": "mailingType",
    "content_name": "contentName",
    "link": "linkHref",
    "link_description": "linkDescription",
    "bounce_type": "bounceType",
    "bounce_category": "bounceCategory",
}


def from_api(obj: object, metrics: Collection[str] = METRICS) -> Event:
    """One event of an Analytics Events API page (snake_case)."""
    e = _object(obj)
    metric = _required(e, "metric")
    if metric not in metrics:
        raise EventError(f'"metric" is {_shown(metric)}, not one of {", ".join(metrics)} (engagements.metrics)')
    at, day = _timestamp(e, "metric_timestamp")
    return Event(
        uuid=_required(e, "uuid"),
        metric=metric,
        at=at,
        day=day,
        **{stored: _text(e, given) for stored, given in API_FIELDS.items()},
        email_sha256=_address(e, "customer_email_address") or _address(e, "email_address"),
        external_id=_text(e, "external_id"),
        source="api",
    )


def from_relay(obj: object) -> Event:
    """One engagement posted to the relay, in the connector's camelCase shape."""
    e = _object(obj)
    kind = _required(e, "type")
    metric = RELAY_TYPES.get(" ".join(kind.lower().split()))
    if metric is None:
        raise EventError(f'"type" is {_shown(kind)}: use Email Receive, Open, Click, Bounce or Complaint')
    at, day = _timestamp(e, "timestamp")
    given = _text(e, "uuid")
    return Event(
        uuid=given or str(uuidlib.uuid5(_RELAY_NAMESPACE, orjson.dumps(e, option=orjson.OPT_SORT_KEYS).decode())),
        metric=metric,
        at=at,
        day=day,
        **{stored: _text(e, name) for stored, name in RELAY_FIELDS.items()},
        email_sha256=_address(e, "email"),
        external_id=_text(e, "customerId") or _text(e, "externalId"),
        source="relay",
    )


# --- fields ------------------------------------------------------------------------------------


def _object(obj: object) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise EventError("is not a JSON object")
    return obj


def _text(e: Mapping[str, Any], name: str) -> str | None:
    """A string or integer field as text; absent, null or empty -> None."""
    value = e.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventError(f'"{name}" is not text ({_kind(value)})')
    text = str(value).strip()
    if len(text) > _MAX_TEXT:
        raise EventError(f'"{name}" is longer than {_MAX_TEXT:,} characters')
    if "\x00" in text:
        raise EventError(f'"{name}" holds a NUL character')
    return text or None


def _required(e: Mapping[str, Any], name: str) -> str:
    text = _text(e, name)
    if text is None:
        raise EventError(f'"{name}" is missing')
    return text


def _address(e: Mapping[str, Any], name: str) -> str | None:
    """An address field as its SHA-256 (a 64-hex digest passes through lowercased), like a
    pushed ``hashed_email``; an address that does not validate is hashed all the same (its
    trimmed, lowercased text): it is the profile's identifier either way, and never kept as text."""
    value = e.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f'"{name}" is not text ({_kind(value)})')
    if not value.strip():
        return None
    try:
        return hashed_email(value)
    except ValueError:
        return hashlib.sha256(value.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()


def _timestamp(e: Mapping[str, Any], name: str) -> tuple[str, str]:
    """ISO 8601 (``Z``, an offset, or none: UTC) or ``YYYY-MM-DD HH:MM:SS`` -> (UTC ISO, UTC day)."""
    text = _required(e, name)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise EventError(f'"{name}" is not an ISO 8601 date and time (like 2026-11-20T10:00:00Z)') from None
    try:
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise EventError(f'"{name}" is out of range in UTC') from None
    if not 1970 <= when.year <= 9998:
        raise EventError(f'"{name}" is not a plausible date (years 1970 to 9998)')
    return when.isoformat(timespec="seconds"), when.date().isoformat()


def _kind(value: object) -> str:
    """What a JSON value is, in the words of JSON."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _shown(value: str) -> str:
    """A value safe to name in a message: a metric or type name, cut short."""
    return repr(value[:40] + ("..." if len(value) > 40 else ""))
