"""Send: batches -> HTTP POSTs to the webhook, with retries and bounded concurrency.

The endpoint and the token are kept apart until the request is built (``?token=`` or
``Authorization: Bearer``). Nothing here puts either in a message: errors are described by
class ("Timeout", "Connection error") and status code, and any text taken from a response is
passed through ``redact``.

Retries (tenacity): timeouts, connection errors, 408 and 5xx, with exponential backoff and
jitter, honouring ``Retry-After``; the same body (and so the same uuid) is resent. 400/401/403
are final. 401/403 and 429 stop the whole run: every later batch is ``not_sent`` rather than
spent against the daily request budget.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

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

from .. import __version__
from ..config import Connector
from ..model import DELIVERED, FAILED, NOT_SENT, STOP_CREDENTIALS, STOP_DAILY_LIMIT, Batch, Result

logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs full URLs at INFO
logging.getLogger("httpcore").setLevel(logging.WARNING)

MAX_RETRY_AFTER = 120.0  # seconds; a longer Retry-After fails the batch (retry it later)
COUNT_HEADER = "X-Clang-Request-Count"


class _NotMade(Exception):
    """The run has stopped, or today's request budget is used up: the request is not made."""


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


@dataclass
class _Reply:
    status: int
    retry_after: float | None
    detail: str | None
    request_count: int | None


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


class Sender:
    """Posts batches to one connector's endpoint. Thread-safe; one connection pool."""

    def __init__(
        self,
        connector: Connector,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        concurrency: int | None = None,
        before_request: Callable[[], bool] | None = None,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        self.connector = connector
        self._before_request = before_request
        self._on_count = on_count
        self._token = connector.token.get_secret_value()
        self.concurrency = concurrency or connector.concurrency
        headers = {"Content-Type": "application/json", "User-Agent": f"canopycli/{__version__}"}
        params = {}
        if connector.auth == "bearer":
            headers["Authorization"] = f"Bearer {self._token}"
        else:
            params["token"] = self._token
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        # parsed once, not on every request (httpx parses a str URL and merges client params each time)
        self._url = httpx.URL(connector.endpoint).copy_merge_params(params)
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(connector.timeout),
            limits=limits,
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        )
        self._sleep = sleep
        self._lock = threading.Lock()
        self.stop_reason: str | None = None
        self.retry_hint: str | None = None
        self.backoff = wait_exponential_jitter(
            multiplier=connector.backoff, max=max(connector.backoff * 32, 0.001), jitter=connector.backoff
        )

    # -- one request --------------------------------------------------------------------

    def _post(self, batch: Batch) -> _Reply:
        if self.stop_reason is not None or (self._before_request is not None and not self._before_request()):
            raise _NotMade
        r = self._client.post(self._url, content=batch.body)
        count = r.headers.get(COUNT_HEADER)
        # ASCII digits only: isdigit() alone takes "²", which int() refuses (as it does 5,000 digits)
        count = count if count and count.isascii() and count.isdigit() and len(count) < 19 else None
        if count and self._on_count is not None:
            self._on_count(int(count))
        detail = None
        if r.status_code >= 300:
            text = r.text[:300].strip().replace("\n", " ")
            detail = redact(text, self._token) or None
        return _Reply(
            r.status_code,
            parse_retry_after(r.headers.get("Retry-After")),
            detail,
            int(count) if count and count.isdigit() else None,
        )

    @staticmethod
    def _retryable(reply: _Reply) -> bool:
        return reply.status == 408 or reply.status >= 500

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            after = outcome.result().retry_after
            if after is not None:
                return after
        return float(self.backoff(state))

    # -- one batch, with retries ----------------------------------------------------------

    def send(self, batch: Batch) -> Result:
        if self.stop_reason is not None:
            return Result(batch, NOT_SENT)
        retrying = Retrying(
            stop=stop_any(stop_after_attempt(self.connector.retries + 1), _StopWhenHalted(self)),
            wait=self._wait,
            retry=retry_if_exception_type((httpx.TimeoutException, httpx.TransportError))
            | retry_if_result(self._retryable),
            sleep=self._sleep,
            retry_error_callback=lambda state: state,
            reraise=False,
        )
        try:
            got: Any = retrying(self._post, batch)
        except _NotMade:
            if self.stop_reason is None:
                self._halt(STOP_DAILY_LIMIT)
            made = retrying.statistics.get("attempt_number", 1) - 1
            error = "Daily limit" if self.stop_reason == STOP_DAILY_LIMIT else None
            return Result(batch, NOT_SENT, None, made, error)
        attempts = retrying.statistics.get("attempt_number", 1)
        if isinstance(got, RetryCallState):  # gave up: last outcome was retryable
            if got.outcome is None:
                return Result(batch, NOT_SENT)
            if got.outcome.failed:
                exc = got.outcome.exception()
                err = "Timeout" if isinstance(exc, httpx.TimeoutException) else "Connection error"
                return Result(batch, FAILED, None, attempts, err, redact(type(exc).__name__, self._token))
            got = got.outcome.result()
        reply: _Reply = got
        if 200 <= reply.status < 300:
            return Result(batch, DELIVERED, reply.status, attempts, None, None, reply.request_count)
        if reply.status in (401, 403):
            self._halt(STOP_CREDENTIALS)
        elif reply.status == 429:
            # Deployteq did not process it: the profiles are not sent (and can be sent later).
            self._halt(STOP_DAILY_LIMIT)
            if reply.retry_after is not None:
                self.retry_hint = f"the webhook asks to wait {int(reply.retry_after)} s"
            return Result(batch, NOT_SENT, 429, attempts, "HTTP 429", reply.detail, reply.request_count)
        return Result(batch, FAILED, reply.status, attempts, f"HTTP {reply.status}", reply.detail, reply.request_count)

    def _halt(self, reason: str) -> None:
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason

    def halt(self, reason: str) -> None:
        """Stop taking new batches (Ctrl-C, SIGTERM): in-flight ones finish, the rest are not sent."""
        self._halt(reason)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _StopWhenHalted(stop_base):
    """Give up retrying once the run has stopped, or when Retry-After asks for too long a wait."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def __call__(self, state: RetryCallState) -> bool:
        if self.sender.stop_reason is not None:
            return True
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            after = outcome.result().retry_after
            if after is not None and after > MAX_RETRY_AFTER:
                return True
        return False


def deliver(batches: Iterable[Batch], sender: Sender, on_result: Callable[[Result], None]) -> None:
    """Send batches with at most ``sender.concurrency`` requests in flight, while reading goes on.

    Once the sender has stopped (429, bad credentials, interrupt), the remaining batches are
    still drawn from ``batches`` (so every input row is read and accounted for) and reported
    as not sent.
    """
    limit = sender.concurrency
    inflight: set[Future[Result]] = set()
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="canopycli-send") as pool:
        try:
            for batch in batches:
                if sender.stop_reason is not None:
                    on_result(Result(batch, NOT_SENT))
                    continue
                while len(inflight) >= limit:
                    done, inflight = _settle(inflight, on_result)
                inflight.add(pool.submit(sender.send, batch))
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
