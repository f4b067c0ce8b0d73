"""Batch: (de-duplicated) profiles -> size-bounded request bodies with deterministic uuids.

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
from itertools import islice

import orjson

from ..model import Batch, Profile, Reject

RejectSink = Callable[[Reject], None]

# Fixed namespace for batch uuids (uuid5 over endpoint, segment and content digest).
BATCH_NAMESPACE = uuidlib.UUID("6f1c1f7e-3c59-4d0a-9a55-c3a2f0e1b042")


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
        """One batch, or several if the body would pass the size limit; a lone profile too big is rejected.

        A profile's wire object is a dict or JSON already (``orjson.Fragment``, see
        ``Normalizer(encoded=True)``); either way the body's bytes are the same."""
        customers_json = orjson.dumps([p.customer for p in profiles])
        u = self.batch_uuid(customers_json)
        body = self.body(u, customers_json)
        if len(body) <= self.max_body_bytes:
            lines = [p.line for p in profiles]
            digests = [p.digest for p in profiles]
            batch = Batch(first_index, u, body, [p.customer_id for p in profiles], lines, lines.count(0), digests)
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
    it = iter(profiles)
    index = 0
    while chunk := list(islice(it, batch_size)):  # C-level pull: no per-profile Python step here
        made, rejects = encoder.encode(chunk, index)
        for r in rejects:
            on_reject(r)
        index += len(made)
        yield from made
