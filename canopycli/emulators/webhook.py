"""A local emulator of the Deployteq Webhook Receiver, on loopback only.

For trying canopycli and for tests, without credentials or quota. It checks the token
(``?token=`` or ``Authorization: Bearer``; 401 otherwise), validates the body strictly (400 with
the reason), counts requests per day (429 past ``daily_limit``, ``X-Clang-Request-Count`` on
every answer), drops a batch uuid it already accepted (200, counted as a duplicate), records
accepted batches as JSONL, and can inject faults: random 500s, a fixed number of first
failures, dropped connections, latency and responses slower than the client's timeout.

Control endpoints (no token): ``GET /_sandbox/stats``, ``POST /_sandbox/next-day``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

import msgspec
import orjson

from ..config import MAX_BATCH, MAX_BODY_BYTES, is_loopback
from ..errors import UsageError

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


class Sandbox:
    """The emulator; use as a context manager, or ``start()`` / ``stop()``."""

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
    ) -> None:
        if not is_loopback(host):
            raise UsageError(f"the sandbox binds to loopback only; {host!r} is not a loopback address")
        if not token:
            raise UsageError("the sandbox needs a token (pass --token or set CANOPY_TOKEN)")
        self.token = token
        self.webhook_id = webhook_id
        self.daily_limit = daily_limit
        self.fail_rate, self.fail_first, self.drop_rate = fail_rate, fail_first, drop_rate
        self.fail_requests = fail_requests or set()
        self.slow_rate, self.slow_seconds, self.latency = slow_rate, slow_seconds, latency
        self.record_path = Path(record) if record else None
        self.max_requests = max_requests
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._seen_uuids: set[str] = set()
        self.day = dt.datetime.now(dt.UTC).date().isoformat()
        self.stats: dict[str, int] = dict.fromkeys(
            (
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
            ),
            0,
        )
        self.attempts_by_uuid: dict[str, int] = {}
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}{RECEIVER_PATH}{self.webhook_id}"

    def start(self) -> Sandbox:
        self._thread = threading.Thread(target=self._server.serve_forever, name="canopycli-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_day(self) -> None:
        with self._lock:
            self.stats["today"] = 0
            self.day = (dt.date.fromisoformat(self.day) + dt.timedelta(days=1)).isoformat()

    # -- the request logic, kept apart from HTTP plumbing ----------------------------------

    def authorized(self, query: str, authorization: str | None) -> bool:
        given = parse_qs(query).get("token", [""])[0]
        if not given and authorization and authorization.startswith("Bearer "):
            given = authorization[len("Bearer ") :]
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def handle(self, body: bytes) -> tuple[int, dict[str, Any], str | None]:
        """Status, JSON answer and the fault to act on (``drop`` / ``slow``) for an authorized POST."""
        parsed: Body | None = None
        problem = None
        try:
            parsed = parse_body(body)
        except ValueError as e:
            problem = str(e)
        uuid = parsed.uuid if parsed is not None else _uuid_of(body)
        with self._lock:
            if isinstance(uuid, str):  # every attempt, failed or not: tests compare with the client's count
                self.attempts_by_uuid[uuid] = self.attempts_by_uuid.get(uuid, 0) + 1
            self.stats["requests"] += 1
            self.stats["today"] += 1
            n = self.stats["requests"]
            over = self.daily_limit is not None and self.stats["today"] > self.daily_limit
            if over:
                self.stats["limited"] += 1
                return 429, {"error": "daily limit reached"}, None
            if n <= self.fail_first or n in self.fail_requests:
                self.stats["faults"] += 1
                return 500, {"error": "injected failure"}, None
            roll = self._random.random()
            if roll < self.drop_rate:
                self.stats["dropped"] += 1
                return 0, {}, "drop"
            slow = roll < self.drop_rate + self.slow_rate
            if slow:
                self.stats["slow"] += 1
            elif self._random.random() < self.fail_rate:
                self.stats["faults"] += 1
                return 500, {"error": "injected failure"}, None
        if len(body) > MAX_BODY_BYTES:
            with self._lock:
                self.stats["bad_request"] += 1
            return 400, {"error": f"message larger than {MAX_BODY_BYTES} bytes"}, None
        if parsed is None:
            with self._lock:
                self.stats["bad_request"] += 1
            return 400, {"error": problem}, None
        status, answer = self._accept(parsed, body)
        # slow: processed, but answered only after slow_seconds (past the client's timeout), so
        # the client retries the same uuid and the duplicate is dropped here.
        return status, answer, "slow" if slow else None

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
        return 200, {"status": "ok", "uuid": uuid, "profiles": profiles}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.stats, "day": self.day, "unique_uuids": len(self._seen_uuids)}


def _handler_for(sandbox: Sandbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "canopycli-sandbox"
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK stall every answer for ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: never log URLs (tokens)
            pass

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Clang-Request-Count", str(sandbox.stats["today"]))
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timeout); nothing to tell it

        def do_GET(self) -> None:  # noqa: N802
            if urlsplit(self.path).path == "/_sandbox/stats":
                self._answer(200, sandbox.snapshot())
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if url.path == "/_sandbox/next-day":
                sandbox.next_day()
                self._answer(200, sandbox.snapshot())
                return
            if not url.path.startswith(RECEIVER_PATH):
                self._answer(400, {"error": "unsupported API call"})
                return
            if not sandbox.authorized(url.query, self.headers.get("Authorization")):
                with sandbox._lock:
                    sandbox.stats["unauthorized"] += 1
                self._answer(401, {"error": "authentication failed: token or user invalid"})
                return
            if sandbox.latency:
                time.sleep(sandbox.latency)
            status, payload, fault = sandbox.handle(body)
            if fault == "drop":
                self.close_connection = True
                return  # no response at all: the client sees a dropped connection
            if fault == "slow":
                time.sleep(sandbox.slow_seconds)
            self._answer(status, payload)
            mr = sandbox.max_requests
            if mr is not None and sandbox.stats["requests"] >= mr:
                threading.Thread(target=sandbox._server.shutdown, daemon=True).start()

    return Handler
