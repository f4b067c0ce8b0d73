"""Deliver: batches -> requests through a ``Transport``, with retries, bounded concurrency and halting.

A ``Transport`` is the far side's dialect (the webhook today, see ``webhook.py``): it encodes
profiles into batches, makes one attempt at a batch, and says what a reply means (a ``Verdict``).
Everything around that is here, once, and never asks which transport it has:

- retries (tenacity): a request that got no reply (``httpx.TimeoutException``,
  ``httpx.TransportError``) or a reply the transport calls ``retry`` is made again, with
  exponential backoff and jitter, or after the reply's ``retry_after`` (up to ``MAX_RETRY_AFTER``;
  a longer wait fails the batch instead). The same batch (same body, same uuid) is resent.
- halting: ``stop_credentials`` and ``stop_daily_limit`` stop the whole run, as does ``halt()``
  (Ctrl-C, SIGTERM): every later batch is ``not_sent`` rather than spent against the daily budget.
- the quota hooks: ``before_request`` is asked before every attempt (False: today's budget is
  used up, the run stops), ``on_count`` hears the far side's own request count.
- bounded concurrency (``deliver``): at most ``concurrency`` requests in flight while reading goes on.

Nothing here sees a token: errors are named by class ("Timeout", "Connection error") and the
transport's verdict, whose ``detail`` the transport has redacted.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from ..model import DELIVERED, FAILED, NOT_SENT, STOP_CREDENTIALS, STOP_DAILY_LIMIT, Batch, Profile, Reject, Result

MAX_RETRY_AFTER = 120.0  # seconds; a longer Retry-After fails the batch (retry it later)

Reply = TypeVar("Reply")


class Kind(StrEnum):
    """What a reply means for its batch (and maybe for the run)."""

    DELIVERED = "delivered"
    RETRY = "retry"  # worth another attempt; if none is left, the batch failed
    FAILED = "failed"  # final for this batch
    STOP_CREDENTIALS = "stop_credentials"  # the batch failed and the run stops: the far side refuses us
    STOP_DAILY_LIMIT = "stop_daily_limit"  # the batch was not processed and the run stops: budget used up


@dataclass(frozen=True)
class Verdict:
    """A transport's reading of one reply: the ``Result`` fields the deliverer cannot know itself."""

    kind: Kind
    status: int | None = None  # the reply's status code, for the report
    error: str | None = None  # "HTTP 500", ...; None when delivered
    detail: str | None = None  # a snippet of the reply, redacted of any secret
    retry_after: float | None = None  # seconds the far side asks to wait before another attempt
    request_count: int | None = None  # the far side's own count of today's requests
    hint: str | None = None  # stop_daily_limit: what the far side said about when to come back


class Transport(Protocol[Reply]):
    """One far side's dialect. ``attempt`` raises ``httpx.TransportError`` when no reply came.
    ``calls``: the requests it made, when that differs from one per attempt (SOAP), else None."""

    @property
    def calls(self) -> int | None: ...

    def encode(self, profiles: list[Profile], first_index: int) -> tuple[list[Batch], list[Reject]]: ...

    def attempt(self, batch: Batch) -> Reply: ...

    def classify(self, reply: Reply) -> Verdict: ...

    def close(self) -> None: ...


class _NotMade(Exception):
    """The run has stopped, or today's request budget is used up: the request is not made."""


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit() alone takes "²", which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Deliverer:
    """Sends batches through one transport with retries; halts the run when told to. Thread-safe."""

    def __init__(
        self,
        transport: Transport[Any],
        *,
        concurrency: int,
        retries: int,
        backoff: float,
        sleep: Callable[[float], None] = time.sleep,
        before_request: Callable[[], bool] | None = None,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        self.transport = transport
        self.concurrency = concurrency
        self.retries = retries
        self._before_request = before_request
        self._on_count = on_count
        self._sleep = sleep
        self._lock = threading.Lock()
        self.stop_reason: str | None = None
        self.retry_hint: str | None = None
        self.backoff = wait_exponential_jitter(multiplier=backoff, max=max(backoff * 32, 0.001), jitter=backoff)

    # -- one attempt --------------------------------------------------------------------

    def _attempt(self, batch: Batch) -> Verdict:
        if self.stop_reason is not None or (self._before_request is not None and not self._before_request()):
            raise _NotMade
        verdict = self.transport.classify(self.transport.attempt(batch))
        if verdict.request_count is not None and self._on_count is not None:
            self._on_count(verdict.request_count)
        return verdict

    @staticmethod
    def _again(verdict: Verdict) -> bool:
        return verdict.kind is Kind.RETRY

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            after = outcome.result().retry_after
            if after is not None:
                return float(after)
        return float(self.backoff(state))

    # -- one batch, with retries ----------------------------------------------------------

    def send(self, batch: Batch) -> Result:
        if self.stop_reason is not None:
            return Result(batch, NOT_SENT)
        retrying = Retrying(
            stop=stop_any(stop_after_attempt(self.retries + 1), _StopWhenHalted(self)),
            wait=self._wait,
            retry=retry_if_exception_type((httpx.TimeoutException, httpx.TransportError))
            | retry_if_result(self._again),
            sleep=self._sleep,
            retry_error_callback=lambda state: state,
            reraise=False,
        )
        try:
            got: Any = retrying(self._attempt, batch)
        except _NotMade:
            if self.stop_reason is None:
                self._halt(STOP_DAILY_LIMIT)
            made = retrying.statistics.get("attempt_number", 1) - 1
            error = "Daily limit" if self.stop_reason == STOP_DAILY_LIMIT else None
            return Result(batch, NOT_SENT, None, made, error)
        attempts = retrying.statistics.get("attempt_number", 1)
        if isinstance(got, RetryCallState):  # gave up: the last outcome was worth another attempt
            if got.outcome is None:
                return Result(batch, NOT_SENT)
            if got.outcome.failed:
                exc = got.outcome.exception()
                err = "Timeout" if isinstance(exc, httpx.TimeoutException) else "Connection error"
                return Result(batch, FAILED, None, attempts, err, type(exc).__name__)
            got = got.outcome.result()
        return self._result(batch, got, attempts)

    def _result(self, batch: Batch, v: Verdict, attempts: int) -> Result:
        if v.kind is Kind.DELIVERED:
            return Result(batch, DELIVERED, v.status, attempts, None, v.detail, v.request_count)
        if v.kind is Kind.STOP_CREDENTIALS:
            self._halt(STOP_CREDENTIALS)
        elif v.kind is Kind.STOP_DAILY_LIMIT:
            # The far side did not process it: the profiles are not sent (and can be sent later).
            self._halt(STOP_DAILY_LIMIT)
            if v.hint is not None:
                self.retry_hint = v.hint
            return Result(batch, NOT_SENT, v.status, attempts, v.error, v.detail, v.request_count)
        return Result(batch, FAILED, v.status, attempts, v.error, v.detail, v.request_count)

    def _halt(self, reason: str) -> None:
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason

    def halt(self, reason: str) -> None:
        """Stop taking new batches (Ctrl-C, SIGTERM): in-flight ones finish, the rest are not sent."""
        self._halt(reason)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Deliverer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _StopWhenHalted(stop_base):
    """Give up retrying once the run has stopped, or when the reply asks for too long a wait."""

    def __init__(self, deliverer: Deliverer) -> None:
        self.deliverer = deliverer

    def __call__(self, state: RetryCallState) -> bool:
        if self.deliverer.stop_reason is not None:
            return True
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            after = outcome.result().retry_after
            if after is not None and after > MAX_RETRY_AFTER:
                return True
        return False


def deliver(batches: Iterable[Batch], deliverer: Deliverer, on_result: Callable[[Result], None]) -> None:
    """Send batches with at most ``deliverer.concurrency`` requests in flight, while reading goes on.

    Once the deliverer has stopped (429, bad credentials, interrupt), the remaining batches are
    still drawn from ``batches`` (so every input row is read and accounted for) and reported
    as not sent.
    """
    limit = deliverer.concurrency
    inflight: set[Future[Result]] = set()
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="canopycli-send") as pool:
        try:
            for batch in batches:
                if deliverer.stop_reason is not None:
                    on_result(Result(batch, NOT_SENT))
                    continue
                while len(inflight) >= limit:
                    done, inflight = _settle(inflight, on_result)
                inflight.add(pool.submit(deliverer.send, batch))
            while inflight:
                _, inflight = _settle(inflight, on_result)
        finally:
            for f in inflight:  # only on an exception from reading: let them finish, record them
                on_result(f.result())


def _settle(
    inflight: set[Future[Result]], on_result: Callable[[Result], None]
) -> tuple[set[Future[Result]], set[Future[Result]]]:
    done, pending = wait(inflight, return_when=FIRST_COMPLETED)
    for f in done:
        on_result(f.result())
    return done, pending
