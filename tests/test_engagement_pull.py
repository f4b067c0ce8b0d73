"""The Analytics Events API client against httpx.MockTransport: the token, paging, what each
answer does, and nothing half-stored (unit tests; the e2e tests use the sandbox)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from canopycli.config import EngagementSettings
from canopycli.engagements.pull import pull
from canopycli.errors import CredentialsError, ExitCode, QuotaError, ServiceError, UsageError, scrub
from canopycli.store import Store

SECRET = "client-SECRET-0f1e2d3c4b5a"
API = "https://api.example.test/analytics-events"
TOKEN_URL = "https://auth.example.test/oauth2/token"
TODAY = dt.date(2026, 11, 24)


def settings(**kw: Any) -> EngagementSettings:
    return EngagementSettings(
        client_id="me", client_secret=SecretStr(SECRET), token_url=TOKEN_URL, api_url=API, page_size=2, backoff=0, **kw
    )


def event(n: int, metric: str = "opens", day: str = "2026-11-20", **more: Any) -> dict[str, Any]:
    return {"uuid": f"u{n}", "metric": metric, "metric_timestamp": f"{day}T10:00:00Z", **more}


class Api:
    """A scripted API: a token endpoint and the events endpoint with offset paging over ``events``
    per metric; ``script`` overrides the answer to the n-th events request."""

    def __init__(self, events: dict[str, list[Any]] | None = None) -> None:
        self.events = events or {}
        self.script: dict[int, Callable[[httpx.Request], httpx.Response]] = {}
        self.token_answers: list[httpx.Response] = []
        self.requests: list[httpx.Request] = []
        self.tokens = 0
        self.calls = 0
        self.next_style = "absolute"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if str(request.url) == TOKEN_URL:
            if self.token_answers:
                return self.token_answers.pop(0)
            assert request.headers["authorization"].startswith("Basic ")
            assert b"grant_type=client_credentials" in request.content
            self.tokens += 1
            return httpx.Response(200, json={"access_token": f"bearer-TOKEN-{self.tokens}", "expires_in": 3600})
        self.calls += 1
        if self.calls in self.script:
            return self.script[self.calls](request)
        assert request.headers["authorization"].startswith("Bearer bearer-TOKEN-")
        q = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        metric, offset, limit = q["filter[metric]"], int(q["offset"]), int(q["limit"])
        events = self.events.get(metric, [])
        following = None
        if offset + limit < len(events):
            qs = f"filter[metric]={metric}&filter[date_from]={q['filter[date_from]']}&filter[date_to]={q['filter[date_to]']}&limit={limit}&offset={offset + limit}"
            following = {
                "absolute": f"{API}/events?{qs}",
                "relative": f"events?{qs}",
                "object": {"href": f"{API}/events?{qs}"},
            }[self.next_style]
        return httpx.Response(
            200,
            json={"total_count": len(events), "_links": {"next": following}, "data": events[offset : offset + limit]},
        )


@pytest.fixture(autouse=True)
def _folders(tmp_path: Path) -> None:
    for name in ("state", "state2"):
        (tmp_path / name).mkdir()


def run(tmp_path: Path, api: Api, **kw: Any) -> Any:
    with Store(tmp_path / "state") as store:
        return pull(settings(), store, transport=httpx.MockTransport(api), today=TODAY, sleep=lambda s: None, **kw)


def stored(tmp_path: Path) -> list[str]:
    with Store(tmp_path / "state") as store:
        return [r[0] for r in store.db.execute("SELECT uuid FROM engagements ORDER BY uuid")]


@pytest.mark.parametrize("style", ["absolute", "relative", "object"])
def test_pages_are_followed_to_the_end_with_one_token(tmp_path: Path, style: str) -> None:
    api = Api({"opens": [event(i) for i in range(5)], "clicks": [event(9, "clicks")]})
    api.next_style = style
    result = run(tmp_path, api, metrics=["opens", "clicks"])
    assert stored(tmp_path) == ["u0", "u1", "u2", "u3", "u4", "u9"]
    assert [(m.metric, m.pages, m.received, m.new) for m in result.metrics] == [("opens", 3, 5, 5), ("clicks", 1, 1, 1)]
    assert api.tokens == 1  # reused across pages and metrics
    first = parse_qs(urlsplit(str(api.requests[1].url)).query)
    assert first["filter[date_from]"] == ["2026-10-25"] and first["filter[date_to]"] == ["2026-11-24"]  # 30 days


def test_a_second_pull_is_incremental_with_a_day_of_overlap_and_stores_nothing_twice(tmp_path: Path) -> None:
    api = Api({"opens": [event(1, day="2026-11-20"), event(2, day="2026-11-22")]})
    run(tmp_path, api, metrics=["opens"])
    result = run(tmp_path, api, metrics=["opens"])
    assert (result.metrics[0].since, result.metrics[0].new, result.metrics[0].duplicates) == ("2026-11-21", 0, 2)
    assert stored(tmp_path) == ["u1", "u2"]
    result = run(tmp_path, api, metrics=["opens"], since=dt.date(2026, 11, 1), until=dt.date(2026, 11, 2))
    assert (result.metrics[0].since, result.metrics[0].until) == ("2026-11-01", "2026-11-02")


def test_a_page_with_a_bad_event_is_stored_not_at_all_and_names_the_field(tmp_path: Path) -> None:
    bad = {k: v for k, v in event(3).items() if k != "uuid"}
    api = Api({"opens": [event(1), event(2), event(4), bad]})
    with pytest.raises(ServiceError) as err:
        run(tmp_path, api, metrics=["opens"])
    assert err.value.exit_code == ExitCode.FAILED
    assert 'opens, page 2: event 1 "uuid" is missing' in str(err.value)
    assert stored(tmp_path) == ["u1", "u2"]  # page 1 whole, nothing of page 2


@pytest.mark.parametrize(
    "bad", [["not an object"], [event(1, metric="unsubscribes")], [{**event(1), "metric_timestamp": "x"}]]
)
def test_other_bad_events_refuse_the_page(tmp_path: Path, bad: list[Any]) -> None:
    with pytest.raises(ServiceError, match="nothing of that page was stored"):
        run(tmp_path, Api({"opens": [event(5), *bad]}), metrics=["opens"])
    assert stored(tmp_path) == []


def test_a_next_link_to_another_host_is_refused_before_anything_is_fetched_from_it(tmp_path: Path) -> None:
    api = Api({"opens": [event(i) for i in range(4)]})
    api.script[1] = lambda r: httpx.Response(
        200,
        json={
            "data": [event(1), event(2)],
            "_links": {"next": "https://evil.example/analytics-events/events?offset=2"},
        },
    )
    with pytest.raises(ServiceError, match="only the configured API host"):
        run(tmp_path, api, metrics=["opens"])
    assert not any("evil" in str(r.url) for r in api.requests)
    assert stored(tmp_path) == []  # the page that linked away is refused too


def test_an_expired_token_is_renewed_once(tmp_path: Path) -> None:
    api = Api({"opens": [event(1)]})
    api.script[1] = lambda r: httpx.Response(401, json={"error": "invalid_token"})
    run(tmp_path, api, metrics=["opens"])
    assert api.tokens == 2 and stored(tmp_path) == ["u1"]
    api = Api({"opens": [event(1)]})
    api.script[1] = api.script[2] = lambda r: httpx.Response(401)
    with pytest.raises(CredentialsError, match="refused a fresh token"):
        run(tmp_path, api, metrics=["opens"])


@pytest.mark.parametrize("answer", [httpx.Response(401, json={"error": "invalid_client"}),
                                    httpx.Response(400, json={"error": "invalid_client"})])  # fmt: skip
def test_a_rejected_secret_is_exit_4_and_never_shown(tmp_path: Path, answer: httpx.Response) -> None:
    api = Api({"opens": [event(1)]})
    api.token_answers = [answer]
    with pytest.raises(CredentialsError) as err:
        run(tmp_path, api, metrics=["opens"])
    assert err.value.exit_code == ExitCode.CREDENTIALS and "client_secret" in str(err.value)
    assert SECRET not in str(err.value)


def test_a_rejected_secret_on_renewal_is_exit_4(tmp_path: Path) -> None:
    api = Api({"opens": [event(1)], "clicks": [event(2, "clicks")]})
    api.script[2] = lambda r: httpx.Response(401)
    api.token_answers = []

    def renewal_refused(request: httpx.Request) -> httpx.Response:
        api.token_answers.append(httpx.Response(401, json={"error": "invalid_client"}))
        return httpx.Response(401)

    api.script[2] = renewal_refused
    with pytest.raises(CredentialsError):
        run(tmp_path, api, metrics=["opens", "clicks"])
    assert stored(tmp_path) == ["u1"]


def test_429_is_waited_out_a_few_times_then_exit_3(tmp_path: Path) -> None:
    waits: list[float] = []
    api = Api({"opens": [event(1)]})
    api.script[1] = lambda r: httpx.Response(429, headers={"Retry-After": "7"})
    with Store(tmp_path / "state") as store:
        pull(settings(), store, transport=httpx.MockTransport(api), today=TODAY, sleep=waits.append, metrics=["opens"])
    assert waits == [7.0] and stored(tmp_path) == ["u1"]
    api = Api({"opens": [event(1)]})
    for n in range(1, 10):
        api.script[n] = lambda r: httpx.Response(429, headers={"Retry-After": "9999"})
    with pytest.raises(QuotaError) as err, Store(tmp_path / "state2") as store:
        pull(settings(), store, transport=httpx.MockTransport(api), today=TODAY, sleep=waits.append, metrics=["opens"])
    assert err.value.exit_code == ExitCode.DAILY_LIMIT
    assert waits[1:] == [60.0, 60.0, 60.0]  # each wait capped


def test_5xx_and_timeouts_are_retried_then_exit_1(tmp_path: Path) -> None:
    api = Api({"opens": [event(1)]})
    api.script[1] = lambda r: httpx.Response(503)

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    api.script[2] = timeout
    run(tmp_path, api, metrics=["opens"])
    assert stored(tmp_path) == ["u1"]
    api = Api({"opens": [event(1)]})
    for n in range(1, 10):
        api.script[n] = lambda r: httpx.Response(502)
    with pytest.raises(ServiceError, match="HTTP 502 after 4 tries"):
        run(tmp_path, api, metrics=["opens"])


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(200, content=b"<html>"), "is not JSON"),
        (httpx.Response(200, json=[1]), "not a JSON object"),
        (httpx.Response(200, json={"total_count": 1}), 'no "data" list'),
        (httpx.Response(404, json={}), "HTTP 404"),
    ],
)
def test_a_malformed_answer_is_exit_1_with_what_to_check(tmp_path: Path, answer: httpx.Response, message: str) -> None:
    api = Api({"opens": [event(1)]})
    api.script[1] = lambda r: answer
    with pytest.raises(ServiceError, match=message):
        run(tmp_path, api, metrics=["opens"])


def test_secrets_are_registered_for_scrubbing_and_never_stored(tmp_path: Path) -> None:
    run(tmp_path, Api({"opens": [event(1, customer_email_address="someone@example.com")]}), metrics=["opens"])
    assert scrub(f"x {SECRET} bearer-TOKEN-1") == "x *** ***"
    blob = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    for secret in (SECRET, "bearer-TOKEN-1", "someone@example.com"):
        assert secret.encode() not in blob


def test_metrics_and_dates_are_checked_before_any_request(tmp_path: Path) -> None:
    api = Api()
    with pytest.raises(UsageError, match="--metric 'unsubscribes'"):
        run(tmp_path, api, metrics=["unsubscribes"])
    with pytest.raises(UsageError, match="after --until"):
        run(tmp_path, api, since=dt.date(2026, 11, 24), until=dt.date(2026, 11, 1))
    assert api.requests == []
    assert json.dumps(run(tmp_path, Api(), metrics=["sends"]).as_dict())  # an empty pull is fine
