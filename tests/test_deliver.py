"""The Transport seam: the Deliverer's retries, halting and quota hooks work with any transport.

The fakes here are in memory, not HTTP at all; the webhook's own meanings are checked last."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

from canopycli.deployteq.deliver import MAX_RETRY_AFTER, Deliverer, Kind, Transport, Verdict, deliver
from canopycli.deployteq.webhook import Encoder, WebhookTransport
from canopycli.model import (
    DELIVERED,
    FAILED,
    NOT_SENT,
    STOP_CREDENTIALS,
    STOP_DAILY_LIMIT,
    Batch,
    Profile,
    Reject,
    Result,
)

from .test_send import conn


class Memory:
    """A transport that keeps what it is sent in a list and answers from a script of verdict kinds."""

    def __init__(self, *script: Kind, retry_after: float | None = None) -> None:
        self.script = list(script)
        self.retry_after = retry_after
        self.sent: list[str] = []
        self.closed = False
        self.lock = threading.Lock()

    def encode(self, profiles: list[Profile], first_index: int) -> tuple[list[Batch], list[Reject]]:
        ids = [p.customer_id for p in profiles]
        return [Batch(first_index, f"mem-{first_index}", ",".join(ids).encode(), ids, [p.line for p in profiles])], []

    def attempt(self, batch: Batch) -> Kind:
        with self.lock:
            self.sent.append(batch.uuid)
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def classify(self, reply: Kind) -> Verdict:
        error = None if reply is Kind.DELIVERED else f"memory says {reply}"
        hint = "come back tomorrow" if reply is Kind.STOP_DAILY_LIMIT else None
        return Verdict(reply, None, error, None, self.retry_after, len(self.sent), hint)

    def close(self) -> None:
        self.closed = True


def memory_batches(n: int) -> list[Batch]:
    t = Memory(Kind.DELIVERED)
    return [t.encode([Profile(i + 1, f"id{i}", {})], i)[0][0] for i in range(n)]


def deliverer(
    t: Transport[Kind],
    sleeps: list[float] | None = None,
    on_count: Callable[[int], None] | None = None,
    before_request: Callable[[], bool] | None = None,
) -> Deliverer:
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return Deliverer(
        t, concurrency=1, retries=3, backoff=0.01, sleep=sleep, on_count=on_count, before_request=before_request
    )


def test_fails_twice_then_delivers_the_same_batch() -> None:
    t = Memory(Kind.RETRY, Kind.RETRY, Kind.DELIVERED)
    sleeps: list[float] = []
    counts: list[int] = []
    [b] = memory_batches(1)
    r = deliverer(t, sleeps, on_count=counts.append).send(b)
    assert (r.outcome, r.attempts, r.error, r.request_count) == (DELIVERED, 3, None, 3)
    assert t.sent == [b.uuid] * 3 and len(sleeps) == 2 and counts == [1, 2, 3]


def test_retries_exhausted_is_failed_with_the_transports_error() -> None:
    t = Memory(Kind.RETRY)
    r = deliverer(t).send(memory_batches(1)[0])
    assert (r.outcome, r.attempts, r.error) == (FAILED, 4, "memory says retry") and len(t.sent) == 4


def test_retry_after_is_waited_or_too_long_fails() -> None:
    sleeps: list[float] = []
    r = deliverer(Memory(Kind.RETRY, Kind.DELIVERED, retry_after=7.0), sleeps).send(memory_batches(1)[0])
    assert (r.outcome, sleeps) == (DELIVERED, [7.0])
    sleeps.clear()
    r = deliverer(Memory(Kind.RETRY, retry_after=MAX_RETRY_AFTER + 1), sleeps).send(memory_batches(1)[0])
    assert (r.outcome, r.attempts, sleeps) == (FAILED, 1, [])


def test_no_reply_is_retried_then_named() -> None:
    class Refused(Memory):
        def attempt(self, batch: Batch) -> Kind:
            super().attempt(batch)
            raise httpx.ConnectError("refused")

    t = Refused(Kind.DELIVERED)
    r = deliverer(t).send(memory_batches(1)[0])
    assert (r.outcome, r.attempts, r.error, r.detail) == (FAILED, 4, "Connection error", "ConnectError")


def test_stop_credentials_halts_the_run_rest_not_sent() -> None:
    t = Memory(Kind.DELIVERED, Kind.STOP_CREDENTIALS)
    results: list[Result] = []
    with deliverer(t) as d:
        deliver(iter(memory_batches(5)), d, results.append)
    assert [r.outcome for r in sorted(results, key=lambda r: r.batch.index)] == [DELIVERED, FAILED] + [NOT_SENT] * 3
    assert d.stop_reason == STOP_CREDENTIALS and len(t.sent) == 2 and t.closed


def test_stop_daily_limit_keeps_the_batch_unsent_with_the_hint() -> None:
    t = Memory(Kind.STOP_DAILY_LIMIT)
    d = deliverer(t)
    r = d.send(memory_batches(1)[0])
    assert (r.outcome, r.attempts, d.stop_reason, d.retry_hint) == (NOT_SENT, 1, STOP_DAILY_LIMIT, "come back tomorrow")


def test_quota_refusal_makes_no_attempt() -> None:
    t = Memory(Kind.DELIVERED)
    results: list[Result] = []
    deliver(iter(memory_batches(3)), deliverer(t, before_request=lambda: False), results.append)
    got = [(r.outcome, r.error) for r in sorted(results, key=lambda r: r.batch.index)]
    assert got == [(NOT_SENT, "Daily limit"), (NOT_SENT, None), (NOT_SENT, None)] and t.sent == []


def test_halt_stops_taking_batches() -> None:
    t = Memory(Kind.DELIVERED)
    d = deliverer(t)
    d.halt("interrupted")
    results: list[Result] = []
    deliver(iter(memory_batches(2)), d, results.append)
    assert [r.outcome for r in results] == [NOT_SENT] * 2 and t.sent == [] and d.stop_reason == "interrupted"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, Kind.DELIVERED),
        (204, Kind.DELIVERED),
        (408, Kind.RETRY),
        (500, Kind.RETRY),
        (503, Kind.RETRY),
        (401, Kind.STOP_CREDENTIALS),
        (403, Kind.STOP_CREDENTIALS),
        (429, Kind.STOP_DAILY_LIMIT),
        (400, Kind.FAILED),
        (302, Kind.FAILED),
        (404, Kind.FAILED),
    ],
)
def test_what_a_webhook_reply_means(status: int, kind: Kind) -> None:
    t = WebhookTransport(conn())
    try:
        v = t.classify(httpx.Response(status, headers={"X-Clang-Request-Count": "41", "Retry-After": "9"}, text="no"))
    finally:
        t.close()
    assert (v.kind, v.status, v.request_count, v.retry_after) == (kind, status, 41, 9.0)
    assert v.error == (None if kind is Kind.DELIVERED else f"HTTP {status}")
    assert v.hint == ("the webhook asks to wait 9 s" if status == 429 else None)


def test_webhook_encode_is_its_encoders() -> None:
    enc = Encoder("https://hook.example/x", "S", "HASHED_EMAIL", 6_000_000)
    p = Profile(1, "a" * 64, {"customerId": "a" * 64, "r42Status": "NEW", "params": []})
    t = WebhookTransport(conn(), encoder=enc)
    try:
        assert t.encode([p], 3) == enc.encode([p], 3)
    finally:
        t.close()
