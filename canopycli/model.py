"""The shared vocabulary: what flows through the pipeline and what became of it.

A record becomes a ``Profile`` or a ``Reject``; profiles are grouped into a ``Batch`` (one
request); sending a batch gives a ``Result`` with an ``Outcome``. The journal keeps a batch's
``State``; a run that ends early says why with a ``Stop``. Every module speaks these words, so no
table translates between them. The enums are ``StrEnum``s: they are the very strings the journal,
the report JSON and the exit-code logic have always used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from orjson import Fragment


class Profile(NamedTuple):
    line: int
    customer_id: str
    customer: dict[str, Any] | Fragment  # the wire object (customerId, r42Status, params), or its JSON
    digest: bytes | None = None  # sync: the params digest the baseline takes when acknowledged


class Reject(NamedTuple):
    line: int
    reason: str
    # the row's identifier, when it was valid and something else was not: a sync must then
    # neither send nor remove that profile (it is in the snapshot, just not usable this time)
    customer_id: str | None = None


@dataclass
class Batch:
    index: int
    uuid: str
    body: bytes
    customer_ids: list[str]
    lines: list[int] = field(repr=False)
    removals: int = 0  # sync: REMOVED profiles that come from the baseline (line 0), not from input rows
    digests: list[bytes | None] | None = field(default=None, repr=False)  # sync: per profile, None for REMOVED

    @property
    def profiles(self) -> int:
        return len(self.customer_ids)


class Outcome(StrEnum):
    """What became of a batch, as the report counts it."""

    DELIVERED = "delivered"
    FAILED = "failed"
    NOT_SENT = "not_sent"
    DRY_RUN = "dry_run"
    SUPERSEDED = "superseded"  # an unacknowledged sync batch a later sync's diff replaced


class State(StrEnum):
    """A batch's state in the journal."""

    PENDING = "pending"  # journaled, not answered yet (or the process died)
    SENT = "sent"  # acknowledged (2xx)
    FAILED = "failed"
    NOT_SENT = "not_sent"
    SUPERSEDED = "superseded"

    @property
    def outcome(self) -> Outcome:
        return _OUTCOME_OF_STATE[self]

    @classmethod
    def of(cls, outcome: str) -> State:
        """The state a batch is journaled in after ``outcome``."""
        return {Outcome.DELIVERED: cls.SENT, Outcome.FAILED: cls.FAILED}.get(outcome, cls.NOT_SENT)  # type: ignore[call-overload]


_OUTCOME_OF_STATE = {
    State.PENDING: Outcome.NOT_SENT,
    State.SENT: Outcome.DELIVERED,
    State.FAILED: Outcome.FAILED,
    State.NOT_SENT: Outcome.NOT_SENT,
    State.SUPERSEDED: Outcome.SUPERSEDED,
}
DONE = (State.SENT, State.SUPERSEDED)  # never sent again


class Stop(StrEnum):
    """Why a run stopped before sending everything (``stop_reason`` in the report)."""

    CREDENTIALS = "credentials"
    DAILY_LIMIT = "daily_limit"
    INTERRUPTED = "interrupted"
    TERMINATED = "terminated"
    DAMAGED_INPUT = "damaged_input"


# The same words under the short names the code has always used.
DELIVERED, FAILED, NOT_SENT, DRY_RUN, SUPERSEDED = (
    Outcome.DELIVERED,
    Outcome.FAILED,
    Outcome.NOT_SENT,
    Outcome.DRY_RUN,
    Outcome.SUPERSEDED,
)
PENDING, SENT = State.PENDING, State.SENT
STOP_CREDENTIALS, STOP_DAILY_LIMIT = Stop.CREDENTIALS, Stop.DAILY_LIMIT
STOP_INTERRUPTED, STOP_TERMINATED, STOP_DAMAGED_INPUT = Stop.INTERRUPTED, Stop.TERMINATED, Stop.DAMAGED_INPUT


# Meanings from the connector's documented status list, plus Data Activation's error classes
# (the report's ``outcomes[].meaning`` and ``error_class``).
MEANINGS: dict[str, str] = {
    "2xx": "Accepted by Deployteq",
    "400": "Unsupported API call or invalid request",
    "401": "Authentication failed (token or user invalid)",
    "403": "Token is invalid or expired",
    "408": "Request timed out",
    "429": "Daily limit reached (50,000 requests per day)",
    "500": "Internal server error or unsupported call",
    "5xx": "Server error",
    "504": "Request timed out",
    "Timeout": "No response within the timeout",
    "Connection error": "Could not connect, or the connection dropped",
    "Not sent": "Not sent: the run stopped before this batch",
    "Dry run": "Not sent: dry run",
    "Other error": "Unexpected response",
}


def error_class(status: int | None, error: str | None) -> str:
    """The Data Activation error class of an outcome (Timeout, Connection error, ...)."""
    if status is not None:
        if 200 <= status < 300:
            return "OK"
        if status in (401, 403):
            return "Invalid credentials"
        if status == 429:
            return "Daily limit"
        if status in (408, 504):
            return "Timeout"
        return "Other error"
    return error or "Other error"


def outcome_key(outcome: str, status_code: int | None, error: str | None) -> str:
    """The row of the report table a batch falls in: its HTTP status, else its error class."""
    if status_code is not None:
        return f"HTTP {status_code}"
    if outcome == NOT_SENT:
        return "Not sent"
    if outcome == SUPERSEDED:
        return "Superseded"
    if outcome == DRY_RUN:
        return "Dry run"
    return error or "Other error"


@dataclass
class Result:
    """What happened to one batch."""

    batch: Batch
    outcome: str  # an Outcome
    status_code: int | None = None
    attempts: int = 0
    error: str | None = None  # "Timeout", "Connection error", "HTTP 500", ...; never the token
    detail: str | None = None  # a redacted snippet of the response, if any
    request_count: int | None = None  # X-Clang-Request-Count from the last response

    @property
    def outcome_key(self) -> str:
        return outcome_key(self.outcome, self.status_code, self.error)
