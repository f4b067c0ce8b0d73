"""Batch: profiles -> de-duplicated, size-bounded request bodies with deterministic uuids.

A batch holds at most ``batch_size`` profiles of one segment and encodes to at most
``max_body_bytes``; a body that would be larger is split in halves until it fits. The uuid is
derived from the endpoint, the segment and the batch's content, so any resend of the same batch
(retry within a run, ``canopycli retry`` later) carries the same uuid and a receiver can drop
the duplicate.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from .normalize import Profile, Reject

RejectSink = Callable[[Reject], None]

# Fixed namespace for batch uuids (uuid5 over endpoint, segment and content digest).
BATCH_NAMESPACE = uuidlib.UUID("6f1c1f7e-3c59-4d0a-9a55-c3a2f0e1b042")


@dataclass
class Batch:
    index: int
    uuid: str
    body: bytes
    customer_ids: list[str]
    lines: list[int] = field(repr=False)
    removals: int = 0  # sync: REMOVED profiles that come from the baseline (line 0), not from input rows

    @property
    def profiles(self) -> int:
        return len(self.customer_ids)


class Seen:
    """Identifiers already taken in this run, with the line that first had each one.

    First occurrence wins: it is the one sent, later ones are counted as duplicates. (Keeping
    the first lets the file stream: nothing waits for the end of the file.)
    """

    def __init__(self) -> None:
        self._first: dict[str, int] = {}

    def first_line(self, customer_id: str, line: int) -> int | None:
        """The earlier line with this id, or None (and remember this one) if it is new."""
        got = self._first.setdefault(customer_id, line)
        return None if got == line else got


class Encoder:
    """Builds request bodies for one endpoint + segment."""

    def __init__(self, endpoint: str, segment_name: str, customer_type: str, max_body_bytes: int) -> None:
        self.endpoint = endpoint
        self.segment_name = segment_name
        self.max_body_bytes = max_body_bytes
        self._head = b'","customerType":' + orjson.dumps(customer_type) + b',"campaigns":[{"segmentName":'
        self._head += orjson.dumps(segment_name) + b',"customers":'
        self._uuid_prefix = f"{endpoint}\x00{segment_name}\x00"

    def batch_uuid(self, customers_json: bytes) -> str:
        digest = hashlib.sha256(customers_json).hexdigest()
        return str(uuidlib.uuid5(BATCH_NAMESPACE, self._uuid_prefix + digest))

    def body(self, batch_uuid: str, customers_json: bytes) -> bytes:
        return b'{"uuid":"' + batch_uuid.encode() + self._head + customers_json + b"}]}"

    def encode(self, profiles: list[Profile], first_index: int) -> tuple[list[Batch], list[Reject]]:
        """One batch, or several if the body would pass the size limit; a lone profile too big is rejected."""
        customers_json = orjson.dumps([p.customer for p in profiles])
        u = self.batch_uuid(customers_json)
        body = self.body(u, customers_json)
        if len(body) <= self.max_body_bytes:
            lines = [p.line for p in profiles]
            batch = Batch(first_index, u, body, [p.customer_id for p in profiles], lines, lines.count(0))
            return [batch], []
        if len(profiles) == 1:
            limit = self.max_body_bytes
            return [], [Reject(profiles[0].line, f"profile alone is larger than the {limit:,}-byte request limit")]
        mid = len(profiles) // 2
        left, lrej = self.encode(profiles[:mid], first_index)
        right, rrej = self.encode(profiles[mid:], first_index + len(left))
        return left + right, lrej + rrej


def batches(profiles: Iterable[Profile], encoder: Encoder, batch_size: int, on_reject: RejectSink) -> Iterator[Batch]:
    """Group profiles into batches of at most ``batch_size`` (split further if too large)."""
    pending: list[Profile] = []
    index = 0

    def flush() -> list[Batch]:
        nonlocal index
        made, rejects = encoder.encode(pending, index)
        for r in rejects:
            on_reject(r)
        index += len(made)
        return made

    for p in profiles:
        pending.append(p)
        if len(pending) >= batch_size:
            yield from flush()
            pending = []
    if pending:
        yield from flush()
