"""Suppression: a segment's ``suppress:`` holds back NEW and MODIFIED for profiles with a matching
engagement (a hard bounce, a complaint) stored in the state folder; REMOVED still goes out.

A run loads the identifiers held back once (``Held``) and looks each profile up in a set, so the
cost is one hash lookup a row; the status is read only for a profile that is held. A held row is
counted as ``rows_suppressed``, with its reason in ``--rejects``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson

from ..config import Resolved
from ..model import Profile
from ..store import Store
from ..store.engagements import reason


def id_column(identifier: str) -> str:
    """Where an engagement keeps the identifier a connector sends: a customer id as given, an
    address (hashed_email, email) as its SHA-256."""
    return "external_id" if identifier == "customer_id" else "email_sha256"


class Held:
    """The identifiers a segment's ``suppress:`` holds back -> (metric, first day); ``why()``
    words the reason, only for a row that is held."""

    def __init__(self, held: dict[str, tuple[str, str]]) -> None:
        self.held = held

    def why(self, customer_id: str) -> str | None:
        hit = self.held.get(customer_id)
        return None if hit is None else reason(*hit)

    @classmethod
    def load(cls, store: Store, resolved: Resolved) -> Held | None:
        types = resolved.segment.suppress
        if not types:
            return None
        return cls(store.engagements.suppressed_all(id_column(resolved.connector.identifier), types))

    def filter(self, profiles: Iterator[Profile], on_held: Callable[[Profile, str], None]) -> Iterator[Profile]:
        held = self.held
        if not held:
            yield from profiles
            return
        for p in profiles:
            hit = held.get(p.customer_id)
            if hit is not None and _status(p) != "REMOVED":
                on_held(p, reason(*hit))
                continue
            yield p


def _status(p: Profile) -> str:
    customer: Any = p.customer if isinstance(p.customer, dict) else orjson.loads(orjson.dumps(p.customer))
    return str(customer["r42Status"])


def load_held(root_or_store: Any, resolved: Resolved, suppress: bool) -> Held | None:
    """The run's suppression (None: the segment has no ``suppress:``, or ``--no-suppress``)."""
    if not suppress or not resolved.segment.suppress:
        return None
    if isinstance(root_or_store, Store):
        return Held.load(root_or_store, resolved)
    with Store(root_or_store) as store:
        return Held.load(store, resolved)
