"""Batch: profiles -> de-duplicated, size-bounded batches (one request each).

``batches`` groups (de-duplicated, see ``dedupe``) profiles into
chunks of at most ``batch_size`` and hands each to an encoder, which turns it into request bodies
with deterministic uuids (the webhook's is ``deployteq.webhook.Encoder``; a body that would pass
the size limit is split there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Protocol

from ..model import Batch, Profile, Reject

RejectSink = Callable[[Reject], None]


class Encodes(Protocol):
    """What turns a chunk of profiles into request batches: a transport's encoder (``deployteq.webhook.Encoder``)."""

    def encode(self, profiles: list[Profile], first_index: int) -> tuple[list[Batch], list[Reject]]: ...


def batches(profiles: Iterable[Profile], encoder: Encodes, batch_size: int, on_reject: RejectSink) -> Iterator[Batch]:
    """Group profiles into batches of at most ``batch_size`` (split further if too large)."""
    it = iter(profiles)
    index = 0
    while chunk := list(islice(it, batch_size)):  # C-level pull: no per-profile Python step here
        made, rejects = encoder.encode(chunk, index)
        for r in rejects:
            on_reject(r)
        index += len(made)
        yield from made
