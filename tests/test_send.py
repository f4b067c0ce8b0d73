"""Transport unit tests with httpx.MockTransport (the end-to-end tests use real sockets)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from canopycli.config import Connector
from canopycli.deployteq.deliver import Deliverer, deliver, parse_retry_after
from canopycli.deployteq.webhook import Encoder, WebhookTransport
from canopycli.model import DELIVERED, FAILED, NOT_SENT, STOP_CREDENTIALS, STOP_DAILY_LIMIT, Batch, Profile

from .conftest import TOKEN


def conn(**kw: object) -> Connector:
    base = {"endpoint": "https://hook.example/x", "token": TOKEN, "identifier": "hashed_email", "backoff": 0.01}
    base.update(kw)
    return Connector.model_validate(base)


def batch(i: int = 0) -> Batch:
    cid = f"{i:064x}"
    p = Profile(i, cid, {"customerId": cid, "r42Status": "NEW", "params": []})
    [b], _ = Encoder("https://hook.example/x", "S", "HASHED_EMAIL", 6_000_000).encode([p], i)
    return b


class Script:
    """Answers requests from a list of (status | exception); records what it saw."""

    def __init__(self, *answers: int | Exception, headers: dict[str, str] | None = None) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []
        self.headers = headers or {}
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.seen.append(request)
            a = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(a, Exception):
            raise a
        return httpx.Response(a, json={"error": f"status {a}"}, headers=self.headers)


def webhook_sender(
    c: Connector,
    handler: Callable[[httpx.Request], httpx.Response],
    sleep: Callable[[float], None] = time.sleep,
    on_count: Callable[[int], None] | None = None,
) -> Deliverer:
    """A Deliverer over the webhook transport, as ``run._drive`` builds it."""
    transport = WebhookTransport(c, transport=httpx.MockTransport(handler))
    return Deliverer(
        transport, concurrency=c.concurrency, retries=c.retries, backoff=c.backoff, sleep=sleep, on_count=on_count
    )


def sender(script: Script, sleeps: list[float] | None = None, **kw: object) -> Deliverer:
    return webhook_sender(conn(**kw), script, sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_query_auth_puts_token_only_on_the_wire() -> None:
    s = Script(200)
    r = sender(s).send(batch())
    assert r.outcome == DELIVERED and r.attempts == 1
    assert s.seen[0].url.params["token"] == TOKEN
    assert "authorization" not in s.seen[0].headers


def test_query_auth_keeps_the_endpoints_own_query() -> None:
    s = Script(200, 200)
    snd = sender(s, endpoint="https://hook.example/x?source=crm")
    snd.send(batch(0))
    snd.send(batch(1))
    assert [dict(r.url.params) for r in s.seen] == [{"source": "crm", "token": TOKEN}] * 2
    assert all(r.url.path == "/x" for r in s.seen)


def test_bearer_auth() -> None:
    s = Script(200)
    sender(s, auth="bearer").send(batch())
    assert s.seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "token" not in s.seen[0].url.params


def test_5xx_then_success_resends_the_same_body_and_uuid() -> None:
    s = Script(500, 503, 200)
    sleeps: list[float] = []
    b = batch()
    r = sender(s, sleeps).send(b)
    assert (r.outcome, r.attempts, r.status_code) == (DELIVERED, 3, 200)
    assert {orjson.loads(req.content)["uuid"] for req in s.seen} == {b.uuid}
    assert len(sleeps) == 2 and all(x >= 0 for x in sleeps)


def test_retries_exhausted_is_failed_with_status() -> None:
    s = Script(500)
    r = sender(s, retries=2).send(batch())
    assert (r.outcome, r.attempts, r.status_code, r.error) == (FAILED, 3, 500, "HTTP 500")
    assert len(s.seen) == 3


def test_timeouts_and_connection_errors_are_retried_then_named() -> None:
    s = Script(httpx.ReadTimeout("slow"))
    r = sender(s, retries=1).send(batch())
    assert (r.outcome, r.attempts, r.error, r.status_code) == (FAILED, 2, "Timeout", None)
    s2 = Script(httpx.ConnectError("refused"), 200)
    r2 = sender(s2).send(batch())
    assert (r2.outcome, r2.attempts) == (DELIVERED, 2)


@pytest.mark.parametrize("status", [400, 401, 403, 429])
def test_no_retry_on_client_errors(status: int) -> None:
    s = Script(status)
    snd = sender(s)
    r = snd.send(batch())
    assert (r.attempts, len(s.seen), r.status_code) == (1, 1, status)
    assert r.outcome == (NOT_SENT if status == 429 else FAILED)
    expected = {401: STOP_CREDENTIALS, 403: STOP_CREDENTIALS, 429: STOP_DAILY_LIMIT}.get(status)
    assert snd.stop_reason == expected


def test_retry_after_is_honoured() -> None:
    s = Script(503, 200, headers={"Retry-After": "2"})
    sleeps: list[float] = []
    sender(s, sleeps).send(batch())
    assert sleeps == [2.0]


def test_retry_after_too_long_fails_instead_of_sleeping() -> None:
    s = Script(503, headers={"Retry-After": "3600"})
    sleeps: list[float] = []
    r = sender(s, sleeps).send(batch())
    assert r.outcome == FAILED and r.attempts == 1 and sleeps == []


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_429_stops_the_run_rest_not_sent() -> None:
    s = Script(200, 200, 429)
    results = []
    snd = sender(s, concurrency=1)
    deliver((batch(i) for i in range(6)), snd, results.append)
    outcomes = [r.outcome for r in sorted(results, key=lambda r: r.batch.index)]
    assert outcomes == [DELIVERED, DELIVERED, NOT_SENT, NOT_SENT, NOT_SENT, NOT_SENT]
    assert len(s.seen) == 3


def test_concurrency_is_bounded() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        gate.wait(0.05)
        with lock:
            active -= 1
        return httpx.Response(200)

    results = []
    snd = webhook_sender(conn(concurrency=3), handler)
    deliver((batch(i) for i in range(12)), snd, results.append)
    assert len(results) == 12 and all(r.outcome == DELIVERED for r in results)
    assert 1 < peak <= 3


def test_token_never_in_error_details() -> None:
    class Echo:
        def __call__(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(400, text=f"bad request to {request.url}")

    r = webhook_sender(conn(), Echo()).send(batch())
    assert r.detail is not None and TOKEN not in r.detail and "***" in r.detail
