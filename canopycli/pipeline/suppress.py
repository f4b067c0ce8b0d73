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
    """The identifiers a segment's ``suppress:`` holds back: a set (one lookup a row). Their
    reasons (which engagement, since when) are loaded only for a run that writes them
    (``--rejects``): for a big store, the ids alone load in half the time."""

    def __init__(self, ids: set[str], reasons: dict[str, tuple[str, str]] | None = None) -> None:
        self.ids = ids
        self.reasons = reasons

    def why(self, customer_id: str) -> str:
        hit = self.reasons.get(customer_id) if self.reasons is not None else None
        return (
            reason(*hit)
            if hit is not None
            else "suppressed: a hard bounce or a complaint (--no-suppress sends it anyway)"
        )

    @classmethod
    def load(cls, store: Store, resolved: Resolved, reasons: bool = False) -> Held | None:
        types = resolved.segment.suppress
        if not types:
            return None
        column = id_column(resolved.connector.identifier)
        if reasons:
            found = store.engagements.suppressed_all(column, types)
            return cls(set(found), found)
        return cls(store.engagements.suppressed_ids(column, types))

    @classmethod
    def for_run(cls, store: Store, settings: dict[str, Any]) -> Held | None:
        """A run's suppression rebuilt from its journaled settings (``retry`` reading the input
        again): the same types, unless the run had ``--no-suppress``."""
        types = settings.get("segment", {}).get("suppress") or []
        if not settings.get("suppressing", True) or not types:
            return None
        return cls(store.engagements.suppressed_ids(id_column(settings["identifier"]), types))

    def filter(self, profiles: Iterator[Profile], on_held: Callable[[Profile], None]) -> Iterator[Profile]:
        ids = self.ids
        if not ids:
            yield from profiles
            return
        for p in profiles:
            if p.customer_id in ids and not _removal(p):
                on_held(p)
                continue
            yield p


_REMOVED = b'"r42Status":"REMOVED"'


def _removal(p: Profile) -> bool:
    """A REMOVED profile (it is never held back). An encoded profile is read as its JSON's bytes:
    the normalizer writes ``r42Status`` with no space, so no parse is needed."""
    if isinstance(p.customer, dict):
        return bool(p.customer["r42Status"] == "REMOVED")
    return _REMOVED in orjson.dumps(p.customer)


def load_held(root_or_store: Any, resolved: Resolved, suppress: bool, reasons: bool = False) -> Held | None:
    """The run's suppression (None: the segment has no ``suppress:``, or ``--no-suppress``);
    ``reasons``: the run writes them (``--rejects``)."""
    if not suppress or not resolved.segment.suppress:
        return None
    if isinstance(root_or_store, Store):
        return Held.load(root_or_store, resolved, reasons)
    with Store(root_or_store) as store:
        return Held.load(store, resolved, reasons)
