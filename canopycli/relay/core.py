"""What the HTTP side of the relay needs from the rest: the ``Core`` seam.

``app`` turns requests into ``Item``s (one record each, shaped like a line of push's JSONL input,
for one segment) and hands them to ``Core.accept``, which returns once they are committed to the
queue. Tests give the app a fake core; ``service.RelayCore`` is the real one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ..config import RelaySettings, Segment
from ..store.engagements import Event
from .metrics import Metrics
from .signature import KeySource


class Item(NamedTuple):
    """One record of a request: ``pos``, its index into the request's records (or payloads; the
    ``index`` of the answer), the segment key it goes to, and the record (``{id_column: ...,
    "status": ..., params...}``)."""

    pos: int
    segment: str
    record: dict[str, Any]


@dataclass
class Accepted:
    """The answer to a request: profiles queued, and each record refused with its reason."""

    accepted: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index, reason), by index

    def json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": [{"index": i, "reason": r} for i, r in self.rejected]}


class ShuttingDown(Exception):
    """The relay stopped accepting (SIGTERM/SIGINT): answer 503."""


class Core(Protocol):
    settings: RelaySettings
    segments: Mapping[str, Segment]  # by key
    metrics: Metrics
    keys: KeySource  # Copernica's public keys (DNS, or the pinned file)

    @property
    def accepting(self) -> bool: ...

    def accept(self, items: list[Item]) -> Accepted:
        """Normalize and queue ``items`` (blocking; call it from a worker thread); returns once
        they are committed. Raises ``ShuttingDown`` once the relay stopped accepting."""
        ...

    def record(self, events: list[Event]) -> int:
        """Store engagement events (``POST /v1/engagements``; blocking, like ``accept``); returns
        once they are committed, with how many were new (a uuid already stored is kept once)."""
        ...

    def status(self) -> dict[str, Any]:
        """``{"segments": {NAME: {"queued", "oldest_age_s", "last_flush", "last_error", "requests_today"}}}``"""
        ...

    def health(self) -> str | None:
        """None when healthy, else why not (e.g. credentials rejected by Deployteq)."""
        ...

    def flush(self, segment: str | None) -> None:
        """Flush ``segment`` (or every segment) now, whatever the flush rule says; returns at once."""
        ...
