"""A local emulator of the Deployteq Webhook Receiver, on loopback only.

For trying canopycli and for tests, without credentials or quota. It checks the token
(``?token=`` or ``Authorization: Bearer``; 401 otherwise), validates the body strictly (400 with
the reason), counts requests per day (429 past ``daily_limit``, ``X-Clang-Request-Count`` on
every answer), drops a batch uuid it already accepted (200, counted as a duplicate), and
records accepted batches as JSONL. It is routes on the generic ``server.LoopbackServer``, which
injects the faults: random 500s, a fixed number of first failures, dropped connections, latency
and responses slower than the client's timeout.

Control endpoints (no token): ``GET /_sandbox/stats``, ``POST /_sandbox/next-day``.

The SOAP emulator (``soap.SoapSandbox``) is mounted on the same server, with the same token: the
``soap`` attribute, at ``soap_url``. So is the Analytics Events API (``analytics.AnalyticsSandbox``,
the ``analytics`` attribute, with its own client id and secret), which generates engagement
events for the profiles this receiver accepted.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import msgspec
import orjson

from ..config import MAX_BATCH, MAX_BODY_BYTES
from ..errors import UsageError
from .analytics import AnalyticsSandbox
from .server import Faults, LoopbackServer, Request, Response, require_loopback
from .soap import DEFAULT_CAMPAIGNS, SoapSandbox
from .soap_xml import AUTH_FAILED

RECEIVER_PATH = "/app/api/rest/public/v2/project/datahook/data-receiver/"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_HEX64 = re.compile(r"[0-9a-f]{64}")

# The batch format as a typed schema: msgspec decodes and checks a body in one pass in C (no
# dict per profile and param), so the sandbox stays cheap next to the client it serves on
# the same machine. Unknown or missing keys, wrong types and out-of-range lengths are refused
# with the JSON path of the problem.
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Value = Annotated[str, msgspec.Meta(max_length=256)] | int | float | bool | None


class _Param(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: NonEmpty
    type: NonEmpty
    value: Value


class _Customer(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    customerId: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    r42Status: Literal["NEW", "MODIFIED", "REMOVED"]
    params: list[_Param]


class _Campaign(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    segmentName: Annotated[str, msgspec.Meta(min_length=1, pattern=r"\S")]
    customers: Annotated[list[_Customer], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class Body(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    uuid: Annotated[str, msgspec.Meta(pattern=_UUID)]
    customerType: Literal["HASHED_EMAIL", "CLANG_ID"]
    campaigns: Annotated[list[_Campaign], msgspec.Meta(min_length=1)]


_decode = msgspec.json.Decoder(Body).decode


def parse_body(raw: bytes) -> Body:
    """The body, checked against the batch format; ``ValueError`` with the reason if it is not."""
    try:
        body = _decode(raw)
    except msgspec.ValidationError as e:
        raise ValueError(str(e).replace("`", "")) from None
    except msgspec.DecodeError:
        raise ValueError("body is not valid JSON") from None
    if body.customerType == "HASHED_EMAIL":
        hex64 = _HEX64.fullmatch
        for ci, c in enumerate(body.campaigns):
            for i, cu in enumerate(c.customers):
                if not hex64(cu.customerId):
                    where = f"$.campaigns[{ci}].customers[{i}].customerId"
                    raise ValueError(f"customerId must be a lowercase SHA-256 hex digest for HASHED_EMAIL - at {where}")
    return body


def _uuid_of(raw: bytes) -> str | None:
    """The uuid of a body that is not in the batch format, if it has one (attempts are counted by it)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    uuid = data.get("uuid") if isinstance(data, dict) else None
    return uuid if isinstance(uuid, str) else None


def validate_body(body: bytes | dict[str, Any]) -> str | None:
    """The reason a body (raw bytes, or a dict to encode) is not in the batch format, or None."""
    try:
        parse_body(body if isinstance(body, bytes) else orjson.dumps(body))
    except ValueError as e:
        return str(e)
    return None


# ``stats``, in the order ``snapshot()`` and the CLI show them (the server's own counters among them)
STATS = (
    "requests",
    "today",
    "accepted",
    "duplicates",
    "profiles",
    "bad_request",
    "unauthorized",
    "limited",
    "faults",
    "dropped",
    "slow",
)


class Sandbox:
    """The emulator; use as a context manager, or ``start()`` / ``stop()`` (``serve()`` in the foreground)."""

    def __init__(
        self,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_id: str = "32-sandbox",
        daily_limit: int | None = 50_000,
        fail_rate: float = 0.0,
        fail_first: int = 0,
        fail_requests: set[int] | None = None,
        drop_rate: float = 0.0,
        slow_rate: float = 0.0,
        slow_seconds: float = 0.0,
        latency: float = 0.0,
        record: str | Path | None = None,
        seed: int | None = None,
        max_requests: int | None = None,
        campaigns: str | Iterable[str] = DEFAULT_CAMPAIGNS,
        soap_auth_fault_code: int = AUTH_FAILED,
        client_secret: str | None = None,
    ) -> None:
        require_loopback(host, "sandbox")
        if not token:
            raise UsageError("the sandbox needs a token (pass --token or set CANOPY_TOKEN)")
        self.token = token
        self.webhook_id = webhook_id
        self.daily_limit = daily_limit
        self.record_path = Path(record) if record else None
        self._seen_uuids: set[str] = set()
        self.day = dt.datetime.now(dt.UTC).date().isoformat()
        self.attempts_by_uuid: dict[str, int] = {}
        faults = Faults(
            fail_rate=fail_rate,
            fail_first=fail_first,
            fail_requests=frozenset(fail_requests or ()),
            drop_rate=drop_rate,
            slow_rate=slow_rate,
            slow_seconds=slow_seconds,
            latency=latency,
        )
        self.server = server = LoopbackServer(
            host=host,
            port=port,
            faults=faults,
            seed=seed,
            max_requests=max_requests,
            counters=STATS,
            headers=lambda: {"X-Clang-Request-Count": str(self.stats["today"])},
            name="sandbox",
        )
        self.stats = server.stats
        self._lock = server.lock
        server.route("GET", "/_sandbox/stats", lambda _: Response(200, self.snapshot()))
        server.route("POST", "/_sandbox/next-day", self._next_day)
        server.api("POST", RECEIVER_PATH, self._receive, check=self._check, admit=self._admit, prefix=True)
        server.route("POST", "", lambda _: Response(400, {"error": "unsupported API call"}), prefix=True)
        self.soap = SoapSandbox(server, token, campaigns, auth_fault_code=soap_auth_fault_code)
        self.analytics = AnalyticsSandbox(server, client_secret or f"sandbox-{secrets.token_urlsafe(18)}")

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}{RECEIVER_PATH}{self.webhook_id}"

    @property
    def soap_url(self) -> str:
        """The SOAP emulator's address, without a query (a config's ``soap_url``)."""
        return self.soap.url

    def start(self) -> Sandbox:
        self.server.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def serve(self, duration: float | None = None) -> None:
        """Block until ``max_requests`` stops the sandbox, ``duration`` seconds pass, or Ctrl-C
        (starting it if it is not running); ``stop()`` closes it."""
        self.server.serve(duration)

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_day(self) -> None:
        with self._lock:
            self.stats["today"] = 0
            self.day = (dt.date.fromisoformat(self.day) + dt.timedelta(days=1)).isoformat()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.stats, "day": self.day, "unique_uuids": len(self._seen_uuids)}

    # -- the receiver: the steps of an API call on the server (see server.py) ----------------

    def authorized(self, query: str, authorization: str | None) -> bool:
        given = parse_qs(query).get("token", [""])[0]
        if not given and authorization and authorization.startswith("Bearer "):
            given = authorization[len("Bearer ") :]
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def _check(self, req: Request) -> Response | None:
        """Before anything is counted: the token; then the body is parsed (outside the lock)."""
        if not self.authorized(req.query, req.headers.get("Authorization")):
            with self._lock:
                self.stats["unauthorized"] += 1
            return Response(401, {"error": "authentication failed: token or user invalid"})
        try:
            parsed: Body | None = parse_body(req.body)
        except ValueError as e:
            parsed = None
            req.note["problem"] = str(e)
        req.note["body"] = parsed
        req.note["uuid"] = parsed.uuid if parsed is not None else _uuid_of(req.body)
        return None

    def _admit(self, req: Request) -> Response | None:
        """Under the server's lock, once counted: the attempt per uuid, and the daily limit."""
        uuid = req.note["uuid"]
        if isinstance(uuid, str):  # every attempt, failed or not: tests compare with the client's count
            self.attempts_by_uuid[uuid] = self.attempts_by_uuid.get(uuid, 0) + 1
        self.stats["today"] += 1
        if self.daily_limit is not None and self.stats["today"] > self.daily_limit:
            self.stats["limited"] += 1
            return Response(429, {"error": "daily limit reached"})
        return None

    def _receive(self, req: Request) -> Response:
        parsed: Body | None = req.note["body"]
        if len(req.body) > MAX_BODY_BYTES:
            with self._lock:
                self.stats["bad_request"] += 1
            return Response(400, {"error": f"message larger than {MAX_BODY_BYTES} bytes"})
        if parsed is None:
            with self._lock:
                self.stats["bad_request"] += 1
            return Response(400, {"error": req.note["problem"]})
        return Response(*self._accept(parsed, req.body))

    def _accept(self, parsed: Body, body: bytes) -> tuple[int, dict[str, Any]]:
        uuid = parsed.uuid
        profiles = sum(len(c.customers) for c in parsed.campaigns)
        with self._lock:
            if uuid in self._seen_uuids:
                self.stats["duplicates"] += 1
                return 200, {"status": "duplicate", "uuid": uuid}
            self._seen_uuids.add(uuid)
            self.stats["accepted"] += 1
            self.stats["profiles"] += profiles
            if self.record_path is not None:
                with open(self.record_path, "ab") as fh:
                    fh.write(body.replace(b"\n", b" ") + b"\n")
        customers = ((c.customerId, c.r42Status) for campaign in parsed.campaigns for c in campaign.customers)
        self.analytics.note(parsed.customerType, customers)
        return 200, {"status": "ok", "uuid": uuid, "profiles": profiles}

    def _next_day(self, _: Request) -> Response:
        self.next_day()
        return Response(200, self.snapshot())
