"""An emulator of Deployteq's Analytics Events API, on the Sandbox's server.

Two endpoints, shaped like the real ones (see the README's Engagements section for what is
known and what is assumed):

- ``POST /oauth2/token``: OAuth2 client credentials (HTTP Basic with the client id and secret,
  ``grant_type=client_credentials``) -> ``{"access_token", "token_type", "expires_in"}``; a wrong
  id or secret -> 401 ``{"error": "invalid_client"}``;
- ``GET /analytics-events/events?filter[date_from]=&filter[date_to]=&filter[metric]=&limit=&offset=``
  with ``Authorization: Bearer`` (401 otherwise, or once the token expired): ``{"total_count",
  "_links": {"current", "next"}, "data": [...]}``, ``next`` absolute and null on the last page;
  both dates inclusive.

Its events are generated, deterministically, for the profiles the Sandbox's webhook received
(NEW and MODIFIED; the first ``MAX_PROFILES``): one ``sends`` each, and by a hash of the profile
~40% ``opens``, ~12% ``clicks``, ~5% ``bounces`` (hard or soft), ~2% ``complaints``, on the UTC
day it arrived. The emulator never saw an address (the webhook gets its SHA-256), so it puts the
received digest in ``customer_email_address``, which canopycli keeps as it is, exactly as it
keeps a pushed digest; a ``CLANG_ID`` profile is identified by ``external_id``. Events can also
be added as they are (tests), or ``synthetic`` ones computed from their index (the benchmark's
1,000,000 without holding them).

Control (no auth): ``GET /_sandbox/analytics`` (every event it would serve, for tests to compare
with), ``POST /_sandbox/analytics`` with any of ``{"events": [...], "synthetic": N,
"synthetic_day": "YYYY-MM-DD", "synthetic_days": D, "fail_429": N, "retry_after": S, "fail_500": N, "bad_page": N,
"foreign_next": N, "token_lifetime": S, "reset": true}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid as uuidlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson

from .server import LoopbackServer, Request, Response

TOKEN_PATH = "/oauth2/token"
API_PATH = "/analytics-events"
EVENTS_PATH = API_PATH + "/events"
CONTROL_PATH = "/_sandbox/analytics"
CLIENT_ID = "canopycli-sandbox"
MAX_PROFILES = 200_000  # received profiles that get events (the rest: none; memory stays bounded)
MAX_LIMIT = 10_000
METRICS = ("sends", "opens", "clicks", "bounces", "complaints")
CAMPAIGNS = (("101", "Welcome"), ("102", "Newsletter November"), ("103", "Win-back"))
LINKS = (
    ("https://shop.example.com/new", "New arrivals"),
    ("https://shop.example.com/sale", "Sale"),
    ("https://example.com/account", "Your account"),
)
BOUNCE_CATEGORIES = ("unknown user", "mailbox full", "domain not found", "spam block")
_NAMESPACE = uuidlib.UUID("0b7c3f8e-5d2a-4e61-9a40-1f2e3d4c5b6a")


class AnalyticsSandbox:
    """The Analytics Events API's routes and state on ``server``."""

    def __init__(self, server: LoopbackServer, client_secret: str, client_id: str = CLIENT_ID) -> None:
        self.server = server
        self.client_id, self.client_secret = client_id, client_secret
        self._lock = threading.Lock()
        self.reset()
        server.route("POST", TOKEN_PATH, self._token)
        server.route("GET", EVENTS_PATH, self._events)
        server.route("GET", CONTROL_PATH, lambda _: Response(200, {"events": self.events(), **self.counts()}))
        server.route("POST", CONTROL_PATH, self._control)

    def reset(self) -> None:
        with self._lock:
            self.received: dict[str, tuple[str, str]] = {}  # customerId -> (customerType, day)
            self.added: list[dict[str, Any]] = []
            self.synthetic = 0
            self.synthetic_day = dt.datetime.now(dt.UTC).date().isoformat()  # the newest synthetic day
            self.synthetic_days = 1  # spread over this many days back from it, in equal blocks
            self.tokens: dict[str, float] = {}  # access token -> when it expires (monotonic)
            self.token_lifetime = 3600.0
            self.fail_429 = self.fail_500 = self.bad_page = self.foreign_next = 0
            self.retry_after = 1
            self.stats = {"tokens": 0, "pages": 0, "refused": 0, "limited": 0}
            self._cache: list[dict[str, Any]] | None = None

    @property
    def token_url(self) -> str:
        return self.server.base_url + TOKEN_PATH

    @property
    def api_url(self) -> str:
        return self.server.base_url + API_PATH

    def counts(self) -> dict[str, Any]:
        with self._lock:
            return {**self.stats, "profiles": len(self.received), "synthetic": self.synthetic}

    # -- what the webhook received --------------------------------------------------------------

    def note(self, customer_type: str, customers: Iterable[tuple[str, str]]) -> None:
        """Profiles the webhook accepted: (customerId, r42Status); NEW and MODIFIED get events."""
        day = dt.datetime.now(dt.UTC).date().isoformat()
        with self._lock:
            for cid, status in customers:
                if status != "REMOVED" and cid not in self.received and len(self.received) < MAX_PROFILES:
                    self.received[cid] = (customer_type, day)
                    self._cache = None

    # -- the events -----------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """Every event served (but the synthetic ones), in a stable order."""
        with self._lock:
            if self._cache is None:
                generated = [e for cid, (kind, day) in self.received.items() for e in profile_events(cid, kind, day)]
                self._cache = generated + self.added
            return list(self._cache)

    def _matching(self, metric: str | None, since: str, until: str) -> tuple[list[dict[str, Any]], int]:
        """The stored events that match, and how many synthetic ones follow them."""
        kept = [
            e
            for e in self.events()
            if (metric is None or e.get("metric") == metric)
            and since <= str(e.get("metric_timestamp", ""))[:10] <= until
        ]
        return kept, len(self._synthetic_indexes(metric, since, until))

    def _synthetic_indexes(self, metric: str | None, since: str, until: str) -> range:
        """The synthetic events in the range: event ``i`` is on the day ``i // block`` days before
        ``synthetic_day`` (newest first), its metric ``METRICS[i % 5]``."""
        if not self.synthetic or (metric is not None and metric not in METRICS):
            return range(0)
        newest = dt.date.fromisoformat(self.synthetic_day)
        block = -(-self.synthetic // self.synthetic_days)
        first = max((newest - dt.date.fromisoformat(until)).days, 0)  # days back, inclusive
        last = (newest - dt.date.fromisoformat(since)).days
        if last < first or last < 0:
            return range(0)
        lo, hi = first * block, min((last + 1) * block, self.synthetic)
        if metric is None:
            return range(lo, hi)
        return range(lo + (METRICS.index(metric) - lo) % 5, hi, 5)

    def _synthetic_event(self, i: int) -> dict[str, Any]:
        block = -(-self.synthetic // self.synthetic_days)
        day = dt.date.fromisoformat(self.synthetic_day) - dt.timedelta(days=i // block)
        return synthetic_event(i, day.isoformat())

    # -- endpoints ------------------------------------------------------------------------------

    def _token(self, req: Request) -> Response:
        if not self._client_ok(req.headers.get("Authorization")):
            with self._lock:
                self.stats["refused"] += 1
            return Response(401, {"error": "invalid_client"})
        form = parse_qs(req.body.decode("latin-1"))
        if form.get("grant_type") != ["client_credentials"]:
            return Response(400, {"error": "unsupported_grant_type"})
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime
            self.stats["tokens"] += 1
            lifetime = self.token_lifetime
        return Response(200, {"access_token": token, "token_type": "Bearer", "expires_in": lifetime})

    def _client_ok(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(authorization[6:], validate=True)
        except ValueError:
            return False
        expected = f"{self.client_id}:{self.client_secret}".encode()
        return hmac.compare_digest(given, expected)

    def _bearer_ok(self, authorization: str | None) -> bool:
        token = authorization[7:] if authorization and authorization.startswith("Bearer ") else ""
        with self._lock:
            expires = self.tokens.get(token)
            return expires is not None and time.monotonic() < expires

    def _events(self, req: Request) -> Response:
        if not self._bearer_ok(req.headers.get("Authorization")):
            with self._lock:
                self.stats["refused"] += 1
            return Response(401, {"error": "invalid_token"})
        with self._lock:
            if self.fail_429:
                self.fail_429 -= 1
                self.stats["limited"] += 1
                return Response(429, {"error": "too many requests"}, headers=(("Retry-After", str(self.retry_after)),))
            if self.fail_500:
                self.fail_500 -= 1
                return Response(500, {"error": "internal error"})
        q = parse_qs(req.query)
        try:
            since = _day(q, "filter[date_from]", "2022-03-01")
            until = _day(q, "filter[date_to]", dt.datetime.now(dt.UTC).date().isoformat())
            limit = _number(q, "limit", 100, 1, MAX_LIMIT)
            offset = _number(q, "offset", 0, 0, 10**12)
        except ValueError as e:
            return Response(400, {"error": str(e)})
        metric = q.get("filter[metric]", [None])[0]
        if metric is not None and metric not in METRICS:
            return Response(400, {"error": f"unknown metric {metric!r}"})
        kept, synthetic = self._matching(metric, since, until)
        total = len(kept) + synthetic
        data = kept[offset : offset + limit]
        if len(data) < limit and offset + len(data) >= len(kept):
            start = max(offset - len(kept), 0)
            indexes = self._synthetic_indexes(metric, since, until)[start : start + limit - len(data)]
            data += [self._synthetic_event(i) for i in indexes]
        following = None
        if offset + limit < total:
            params = {**{k: v[0] for k, v in q.items()}, "offset": str(offset + limit), "limit": str(limit)}
            following = f"{self.server.base_url}{EVENTS_PATH}?{urlencode(params)}"
        with self._lock:
            self.stats["pages"] += 1
            if self.bad_page and data:
                self.bad_page -= 1
                data = [*data[:-1], {k: v for k, v in data[-1].items() if k != "uuid"}]
            if self.foreign_next and following is not None:
                self.foreign_next -= 1
                following = following.replace("127.0.0.1", "127.0.0.2", 1)
        current = f"{self.server.base_url}{EVENTS_PATH}?{req.query}"
        body = orjson.dumps({"total_count": total, "_links": {"current": current, "next": following}, "data": data})
        return Response.raw(200, body, "application/json")

    def _control(self, req: Request) -> Response:
        try:
            data = json.loads(req.body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            if data.get("reset"):
                self.reset()
            with self._lock:
                for key in (
                    "fail_429",
                    "fail_500",
                    "bad_page",
                    "foreign_next",
                    "retry_after",
                    "synthetic",
                    "synthetic_days",
                ):
                    if key in data:
                        setattr(self, key, int(data[key]))
                if self.synthetic < 0 or self.synthetic_days < 1:
                    raise ValueError("synthetic must be 0 or more, synthetic_days 1 or more")
                if "token_lifetime" in data:
                    self.token_lifetime = float(data["token_lifetime"])
                if "synthetic_day" in data:
                    self.synthetic_day = dt.date.fromisoformat(data["synthetic_day"]).isoformat()
                events = data.get("events", [])
                if not isinstance(events, list):
                    raise ValueError("events must be a list")
                self.added += events
                self._cache = None
        except (ValueError, TypeError) as e:
            return Response(400, {"error": str(e)})
        return Response(200, self.counts())


def profile_events(customer_id: str, customer_type: str, day: str) -> list[dict[str, Any]]:
    """The events one received profile gets: deterministic, from a hash of its id."""
    h = int.from_bytes(hashlib.sha256(customer_id.encode()).digest()[:8], "big")
    campaign_id, campaign_name = CAMPAIGNS[h % len(CAMPAIGNS)]
    sent = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC) + dt.timedelta(hours=6, seconds=(h >> 8) % 36_000)
    who = (
        {"customer_email_address": customer_id}
        if customer_type == "HASHED_EMAIL"
        else {"external_id": customer_id, "customer_id": customer_id}
    )
    base = {
        "campaign_id": campaign_id,
        "campaign_name": campaign_name,
        "brand_id": "1",
        "brand_name": "Sandbox",
        "mailing_type": "campaign",
        "content_name": f"{campaign_name} mail",
        **who,
    }

    def event(metric: str, minutes: int, **more: Any) -> dict[str, Any]:
        at = (sent + dt.timedelta(minutes=minutes)).isoformat(timespec="seconds").replace("+00:00", "Z")
        uid = str(uuidlib.uuid5(_NAMESPACE, f"{customer_id}:{metric}:{day}"))
        return {"uuid": uid, "metric": metric, "metric_timestamp": at, **base, **more}

    out = [event("sends", 0)]
    roll = (h >> 24) % 100
    if roll < 5:  # bounced: it neither opens nor clicks
        hard = (h >> 32) % 2 == 0
        category = BOUNCE_CATEGORIES[(h >> 40) % len(BOUNCE_CATEGORIES)]
        out.append(event("bounces", 1, bounce_type="hard" if hard else "soft", bounce_category=category))
        return out
    if roll < 7:
        out.append(event("complaints", 90))
    if roll < 47:
        out.append(event("opens", 30))
        if roll < 19:
            url, description = LINKS[(h >> 40) % len(LINKS)]
            out.append(event("clicks", 32, url=url, link_description=description))
    return out


def synthetic_event(i: int, day: str) -> dict[str, Any]:
    """The ``i``-th synthetic event (the benchmark's): its metric cycles through the five."""
    metric = METRICS[i % 5]
    seconds = i % 86_400
    event: dict[str, Any] = {
        "uuid": f"synthetic-{i:09d}",
        "metric": metric,
        "metric_timestamp": f"{day}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z",
        "campaign_id": CAMPAIGNS[i % 3][0],
        "campaign_name": CAMPAIGNS[i % 3][1],
        "brand_id": "1",
        "mailing_type": "campaign",
        "content_name": "Synthetic mail",
        "customer_email_address": hashlib.sha256(f"user{i // 5}@example.com".encode()).hexdigest(),
    }
    if metric == "clicks":
        event["url"], event["link_description"] = LINKS[i % 3]
    elif metric == "bounces":
        event["bounce_type"] = "hard" if i % 2 else "soft"
        event["bounce_category"] = BOUNCE_CATEGORIES[i % 4]
    return event


def _day(q: dict[str, list[str]], name: str, default: str) -> str:
    value = q.get(name, [default])[0]
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{name} must be a date like 2026-11-20") from None


def _number(q: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    value = q.get(name, [str(default)])[0]
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}")
    return int(value)
