"""The webhook transport: profiles -> JSON bodies with uuids, one POST each, and what a reply means.

The endpoint and the token are kept apart until the request is built (``?token=`` merged into the
endpoint's own query, or ``Authorization: Bearer``). Nothing here puts either in a message: any
text taken from a response is passed through ``redact``.

A reply means: 2xx delivered; 408 and 5xx worth another attempt (``Retry-After`` honoured);
401/403 bad credentials (the run stops); 429 the daily limit (the run stops, the batch is not
sent); 400 and anything else failed. ``deliver.Deliverer`` does the retrying and the stopping.
"""

from __future__ import annotations

import hashlib
import logging
import uuid as uuidlib

import httpx
import orjson

from .. import __version__
from ..config import Connector
from ..model import Batch, Profile, Reject
from .deliver import Kind, Verdict, parse_retry_after, redact

logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs full URLs at INFO
logging.getLogger("httpcore").setLevel(logging.WARNING)

COUNT_HEADER = "X-Clang-Request-Count"

# Fixed namespace for batch uuids (uuid5 over endpoint, segment and content digest).
BATCH_NAMESPACE = uuidlib.UUID("6f1c1f7e-3c59-4d0a-9a55-c3a2f0e1b042")


class Encoder:
    """Builds request bodies for one endpoint + segment.

    A batch's uuid is derived from the endpoint, the segment and the batch's content, so any resend
    of the same batch (retry within a run, ``canopycli retry`` later) carries the same uuid and a
    receiver can drop the duplicate. A body larger than ``max_body_bytes`` is split in halves."""

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


class WebhookTransport:
    """POSTs batches to one connector's endpoint (a ``deliver.Transport``). Thread-safe; one connection pool.

    ``encoder``: how ``encode`` builds bodies (the segment they go to); ``transport``: an httpx
    transport for tests (``httpx.MockTransport``); ``concurrency``: the pool's size (default: the
    connector's)."""

    def __init__(
        self,
        connector: Connector,
        *,
        encoder: Encoder | None = None,
        transport: httpx.BaseTransport | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.connector = connector
        self.encoder = encoder
        self._token = connector.token.get_secret_value()
        size = concurrency or connector.concurrency
        headers = {"Content-Type": "application/json", "User-Agent": f"canopycli/{__version__}"}
        params = {}
        if connector.auth == "bearer":
            headers["Authorization"] = f"Bearer {self._token}"
        else:
            params["token"] = self._token
        # parsed once, not on every request (httpx parses a str URL and merges client params each time)
        self._url = httpx.URL(connector.endpoint).copy_merge_params(params)
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(connector.timeout),
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def calls(self) -> int | None:
        return None  # one request per attempt: the report's ``requests``

    def encode(self, profiles: list[Profile], first_index: int) -> tuple[list[Batch], list[Reject]]:
        if self.encoder is None:
            raise TypeError("WebhookTransport.encode needs an encoder (the segment the bodies go to)")
        return self.encoder.encode(profiles, first_index)

    def attempt(self, batch: Batch) -> httpx.Response:
        """One POST of the batch's body; raises ``httpx.TransportError`` when no reply came."""
        return self._client.post(self._url, content=batch.body)

    def classify(self, reply: httpx.Response) -> Verdict:
        status = reply.status_code
        count = reply.headers.get(COUNT_HEADER)
        # ASCII digits only: isdigit() alone takes "²", which int() refuses (as it does 5,000 digits)
        request_count = int(count) if count and count.isascii() and count.isdigit() and len(count) < 19 else None
        retry_after = parse_retry_after(reply.headers.get("Retry-After"))
        if 200 <= status < 300:
            return Verdict(Kind.DELIVERED, status, retry_after=retry_after, request_count=request_count)
        detail = None
        if status >= 300:
            detail = redact(reply.text[:300].strip().replace("\n", " "), self._token) or None
        hint = None
        if status == 408 or status >= 500:
            kind = Kind.RETRY
        elif status in (401, 403):
            kind = Kind.STOP_CREDENTIALS
        elif status == 429:
            kind = Kind.STOP_DAILY_LIMIT
            if retry_after is not None:
                hint = f"the webhook asks to wait {int(retry_after)} s"
        else:
            kind = Kind.FAILED
        return Verdict(kind, status, f"HTTP {status}", detail, retry_after, request_count, hint)

    def close(self) -> None:
        self._client.close()
