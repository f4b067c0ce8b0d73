"""The sandbox's Analytics Events API: the token, auth, filters, paging, synthetic events, faults."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from canopycli.emulators.analytics import profile_events
from canopycli.emulators.webhook import Sandbox

from .conftest import TOKEN

SECRET = "client-SECRET-emulator-0001"


@pytest.fixture
def sb(sandbox: Callable[..., Sandbox]) -> Sandbox:
    return sandbox(client_secret=SECRET)


def token(sb: Sandbox, secret: str = SECRET) -> httpx.Response:
    return httpx.post(sb.analytics.token_url, auth=(sb.analytics.client_id, secret),
                      data={"grant_type": "client_credentials", "scope": "analytics.events:read"})  # fmt: skip


def events(sb: Sandbox, bearer: str, **params: Any) -> httpx.Response:
    q = {f"filter[{k}]" if k in ("date_from", "date_to", "metric") else k: v for k, v in params.items()}
    return httpx.get(f"{sb.analytics.api_url}/events", params=q, headers={"Authorization": f"Bearer {bearer}"})


def control(sb: Sandbox, **body: Any) -> httpx.Response:
    return httpx.post(f"{sb.base_url}/_sandbox/analytics", json=body)


def test_the_token_needs_the_client_secret_and_the_events_need_the_token(sb: Sandbox) -> None:
    assert token(sb, "wrong").status_code == 401 and token(sb, "wrong").json() == {"error": "invalid_client"}
    r = token(sb)
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer" and r.json()["expires_in"] > 0
    assert events(sb, "nope").status_code == 401
    assert events(sb, r.json()["access_token"]).status_code == 200
    control(sb, token_lifetime=0)
    expired = token(sb).json()["access_token"]
    assert events(sb, expired).status_code == 401  # expired at once


def test_received_profiles_get_events_filtered_and_paged(sb: Sandbox) -> None:
    body = {"uuid": "0f8fad5b-d9cb-469f-a165-70867728950e", "customerType": "HASHED_EMAIL",
            "campaigns": [{"segmentName": "S", "customers": [
                {"customerId": f"{i:064x}", "r42Status": "NEW", "params": []} for i in range(60)] + [
                {"customerId": f"{99:064x}", "r42Status": "REMOVED", "params": []}]}]}  # fmt: skip
    assert httpx.post(sb.endpoint, params={"token": TOKEN}, json=body).status_code == 200
    served = sb.analytics.events()
    assert sum(e["metric"] == "sends" for e in served) == 60  # the REMOVED one gets none
    assert all(e["customer_email_address"] != f"{99:064x}" for e in served)
    bearer = token(sb).json()["access_token"]
    today = dt.datetime.now(dt.UTC).date().isoformat()
    got, url, pages = [], None, 0
    r = events(sb, bearer, date_from=today, date_to=today, metric="sends", limit=25, offset=0)
    while True:
        pages += 1
        page = r.json()
        assert page["total_count"] == 60
        got += page["data"]
        url = page["_links"]["next"]
        if url is None:
            break
        r = httpx.get(url, headers={"Authorization": f"Bearer {bearer}"})
    assert pages == 3 and [e["uuid"] for e in got] == [e["uuid"] for e in served if e["metric"] == "sends"]
    yesterday = (dt.date.fromisoformat(today) - dt.timedelta(days=1)).isoformat()
    assert events(sb, bearer, date_from=yesterday, date_to=yesterday).json()["total_count"] == 0
    assert events(sb, bearer, date_to="soon").status_code == 400


def test_profile_events_are_stable_and_plausible() -> None:
    a = profile_events("a" * 64, "HASHED_EMAIL", "2026-11-20")
    assert a == profile_events("a" * 64, "HASHED_EMAIL", "2026-11-20")
    assert a[0]["metric"] == "sends" and all(e["metric_timestamp"].startswith("2026-11-20T") for e in a)
    kinds = [e["metric"] for i in range(2000) for e in profile_events(f"{i:064x}", "HASHED_EMAIL", "2026-11-20")]
    for metric, low, high in (
        ("opens", 0.30, 0.50),
        ("clicks", 0.07, 0.17),
        ("bounces", 0.02, 0.08),
        ("complaints", 0.005, 0.04),
    ):
        assert low < kinds.count(metric) / 2000 < high, metric
    c = profile_events("42", "CLANG_ID", "2026-11-20")
    assert c[0]["external_id"] == "42" and "customer_email_address" not in c[0]


def test_synthetic_events_are_spread_over_days_and_paged_by_index(sb: Sandbox) -> None:
    assert control(sb, synthetic=1000, synthetic_day="2026-11-20", synthetic_days=4).status_code == 200
    bearer = token(sb).json()["access_token"]
    r = events(sb, bearer, date_from="2026-11-19", date_to="2026-11-20", metric="clicks", limit=1000).json()
    assert r["total_count"] == 100 and {e["metric"] for e in r["data"]} == {"clicks"}  # 500 on two days, a fifth
    assert {e["metric_timestamp"][:10] for e in r["data"]} == {"2026-11-19", "2026-11-20"}
    whole = events(sb, bearer, date_from="2026-11-01", date_to="2026-11-30", limit=300, offset=900).json()
    assert whole["total_count"] == 1000 and len(whole["data"]) == 100 and whole["_links"]["next"] is None
    assert whole["data"][-1]["uuid"] == "synthetic-000000999"
    assert control(sb, synthetic_days=0).status_code == 400


def test_faults_on_demand(sb: Sandbox) -> None:
    bearer = token(sb).json()["access_token"]
    control(sb, fail_429=1, retry_after=3, fail_500=1, events=[{"uuid": "x", "metric": "opens",
            "metric_timestamp": "2026-11-20T10:00:00Z"}, {"uuid": "y", "metric": "opens", "metric_timestamp": "2026-11-20T11:00:00Z"}])  # fmt: skip
    r = events(sb, bearer, date_from="2026-11-20", date_to="2026-11-20")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert events(sb, bearer, date_from="2026-11-20", date_to="2026-11-20").status_code == 500
    control(sb, bad_page=1, foreign_next=1)
    page = events(sb, bearer, date_from="2026-11-20", date_to="2026-11-20", limit=1).json()
    assert "uuid" not in page["data"][0] and page["_links"]["next"].startswith("http://127.0.0.2:")
    page = events(sb, bearer, date_from="2026-11-20", date_to="2026-11-20", limit=1).json()
    assert page["data"][0]["uuid"] == "x" and page["_links"]["next"].startswith("http://127.0.0.1:")
    listing = httpx.get(f"{sb.base_url}/_sandbox/analytics").json()
    assert [e["uuid"] for e in listing["events"]] == ["x", "y"] and listing["limited"] == 1
    assert control(sb, events="nope").status_code == 400
    assert json.loads(control(sb, reset=True).text)["synthetic"] == 0
