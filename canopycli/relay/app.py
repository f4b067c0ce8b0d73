"""The relay's ASGI app (starlette): routes, auth, body limits and content types.

It turns requests into ``Item``s and hands them to a ``Core`` (``core.py``); it knows nothing of
the queue, the flusher or Deployteq, so tests drive it with a fake core. Nothing it answers or
logs carries a token, a query string or a record's values: reasons name an index, a line or a
header, and the Normalizer's and the payload adapters' reasons never hold a raw address.
"""

from __future__ import annotations

import hmac
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import anyio.to_thread
import orjson
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import RelaySettings
from ..engagements.events import EventError, from_relay
from ..errors import CanopyError, scrub
from ..pipeline.payloads import PayloadError, copernica_form, copernica_record, engine_records
from ..store.engagements import Event
from .core import Accepted, Core, Item, ShuttingDown
from .metrics import CONTENT_TYPE
from .signature import SignatureError, verify

log = logging.getLogger("canopycli.relay")

JSON = "application/json"
NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-lines")
FORM = "application/x-www-form-urlencoded"
STATUSES = ("NEW", "MODIFIED", "REMOVED")
SHUTTING_DOWN = "the relay is shutting down; send again later"
RETRY_AFTER = "5"  # seconds: about what a restart takes
NO_SEGMENT = "(engine)"  # the metrics label of refused engine payloads: one may match no segment
ENGAGEMENTS = "(engagements)"  # the metrics label of engagement events: they belong to no segment
BOM = b"\xef\xbb\xbf"
MAX_RECORDS = 50_000  # per request: memory stays bounded whatever max_body_bytes allows

Adapter = Callable[[Any], tuple[str, list[dict[str, Any]]]]  # a value -> (segment key, records)


class Refusal(Exception):
    """A request answered with an error status and ``{"error": reason}``."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, dict(headers or {})


def _json(status: int, body: object, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type=JSON)


# --- auth --------------------------------------------------------------------------------


def _known(given: str, tokens: Iterable[SecretStr]) -> bool:
    """Compared with every token and no early exit, so timing says neither which nor how close."""
    given_b, found = given.encode(), False
    for token in tokens:
        found |= hmac.compare_digest(given_b, token.get_secret_value().encode())
    return found


def _bearer(request: Request, core: Core) -> None:
    header = request.headers.get("authorization")
    challenge = {"WWW-Authenticate": "Bearer"}
    if header is None:
        raise Refusal(401, "no bearer token: send Authorization: Bearer <relay token>", challenge)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal(401, "the Authorization header is not 'Bearer <relay token>'", challenge)
    if not _known(token.strip(), core.settings.tokens):
        raise Refusal(401, "the bearer token is not one of relay.tokens", challenge)


def _query_token(request: Request, core: Core) -> None:
    """Copernica's route with ``copernica.verify: false``: the relay token in ``?token=``."""
    if not _known(request.query_params.get("token", ""), core.settings.tokens):
        raise Refusal(401, "this route needs ?token=<relay token> (relay.copernica.verify is false)")


async def _signed(request: Request, core: Core, body: bytes) -> None:
    """Copernica's signature over the raw target and body (the DNS key lookup blocks: a thread)."""
    target = request.scope.get("raw_path") or request.scope["path"].encode()
    if request.scope.get("query_string"):
        target += b"?" + request.scope["query_string"]
    settings = core.settings.copernica
    try:
        await anyio.to_thread.run_sync(
            verify, "POST", target.decode("latin-1"), request.headers, body, core.keys, settings.max_skew
        )
    except SignatureError as e:
        raise Refusal(401, str(e)) from None


def _open(core: Core) -> None:
    if not core.accepting:
        raise Refusal(503, SHUTTING_DOWN, {"Retry-After": RETRY_AFTER})


def _segment(core: Core, key: str) -> str:
    if key not in core.segments:
        raise Refusal(404, "no such segment: use a key of segments: in the relay's config")
    return key


# --- bodies ------------------------------------------------------------------------------


async def _body(request: Request, settings: RelaySettings) -> bytes:
    """The body, refused (413) as soon as it is known to be over the limit: by Content-Length
    before reading anything, else while streaming (at most the limit + one chunk held); and 408
    for a client too slow to send it, which would otherwise hold a connection for ever."""
    limit = settings.max_body_bytes
    too_big = Refusal(413, f"the body is over {limit} bytes (relay.max_body_bytes): send fewer records")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise Refusal(400, "the Content-Length header is not a number")
        if int(declared) > limit:
            raise too_big
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(settings.body_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_big
                chunks.append(chunk)
    except TimeoutError:
        raise Refusal(408, f"the body took over {settings.body_timeout:g}s (relay.body_timeout)") from None
    except ClientDisconnect:
        raise Refusal(400, "the client went away before the body ended") from None
    return b"".join(chunks)


def _media_type(request: Request, allowed: tuple[str, ...]) -> str:
    media, *params = (part.strip().lower() for part in request.headers.get("content-type", "").split(";"))
    if media not in allowed:
        raise Refusal(415, f"unsupported content type: send {' or '.join(allowed)}")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            raise Refusal(415, "unsupported charset: send UTF-8")
    return media


def _loads(data: bytes, where: str) -> Any:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refusal(400, f"{where} is not UTF-8 (byte {e.start + 1})") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise Refusal(400, f"{where} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def _values(body: bytes, media: str) -> list[Any]:
    """The request's records (or payloads): a JSON object or array, or one JSON value a line."""
    body = body.removeprefix(BOM)
    if not body.strip():
        raise Refusal(400, "the body is empty: send at least one record")
    if media == JSON:
        value = _loads(body, "the body")
        if isinstance(value, dict):
            return [value]
        if not isinstance(value, list):
            raise Refusal(400, "the body is not a JSON object or an array of objects")
        values = value
    else:
        lines = body.split(b"\n")
        if len(lines) > MAX_RECORDS and sum(1 for line in lines if line.strip()) > MAX_RECORDS:
            raise _too_many()
        values = [_loads(line, f"line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    if not values:
        raise Refusal(400, "the body holds no records: send at least one")
    if len(values) > MAX_RECORDS:
        raise _too_many()
    return values


def _too_many() -> Refusal:
    return Refusal(413, f"more than {MAX_RECORDS:,} records in one request: send them in several")


def _adapt(values: list[Any], adapt: Adapter, objects_only: bool) -> tuple[list[Item], list[tuple[int, str]]]:
    """Each value through ``adapt`` into (segment key, records); a value it refuses (or that is
    not an object, when only objects will do) is rejected by its index, never blocking the rest."""
    items: list[Item] = []
    rejected: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        try:
            if objects_only and not isinstance(value, dict):
                raise PayloadError(f"record {i} is not a JSON object")
            key, records = adapt(value)
        except PayloadError as e:
            rejected.append((i, str(e)))
        else:
            items += [Item(i, key, record) for record in records]
    return items, rejected


# --- handing over --------------------------------------------------------------------------


async def _accept(core: Core, adapted: tuple[list[Item], list[tuple[int, str]]], label: str) -> Response:
    """Queue the items (committed when this returns), merge the app's own rejections, answer
    202 when anything was accepted and 422 when nothing was."""
    items, rejected = adapted
    return await _hand_over(core, (lambda: core.accept(items)) if items else None, rejected, label)


async def _hand_over(
    core: Core, store: Callable[[], Accepted] | None, rejected: list[tuple[int, str]], label: str
) -> Response:
    """Run ``store`` (blocking: in a worker thread; None: nothing valid to store), merge the
    app's own rejections, answer 202 when anything was accepted and 422 when nothing was."""
    core.metrics.event(label, "rejected", len(rejected))
    answer = Accepted()
    if store is not None:
        try:
            answer = await anyio.to_thread.run_sync(store)
        except ShuttingDown:
            raise Refusal(503, SHUTTING_DOWN, {"Retry-After": RETRY_AFTER}) from None
        except CanopyError as e:  # the store's own errors (a full disk, a journal it cannot write)
            why = scrub(e.message)
            log.error("the queue cannot be written: %s", why)
            reason = f"the queue cannot be written: {why}; nothing was queued, send again"
            raise Refusal(503, reason, {"Retry-After": RETRY_AFTER}) from None
    merged = Accepted(answer.accepted, sorted(answer.rejected + rejected, key=lambda r: r[0]))
    return _json(202 if merged.accepted else 422, merged.json())


def _engagement_events(values: list[Any]) -> tuple[list[Event], list[tuple[int, str]]]:
    """Each value through ``from_relay``; one it refuses is rejected by its index."""
    events: list[Event] = []
    rejected: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        try:
            events.append(from_relay(value))
        except EventError as e:
            rejected.append((i, str(e)))
    return events, rejected


class _Handlers:
    """The endpoints, bound to one core."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def profiles(self, request: Request) -> Response:
        core = self.core
        _bearer(request, core)
        _open(core)
        key = _segment(core, request.path_params["segment"])
        media = _media_type(request, (JSON, *NDJSON))
        values = _values(await _body(request, core.settings), media)
        return await _accept(core, _adapt(values, lambda record: (key, [record]), objects_only=True), key)

    async def engine(self, request: Request) -> Response:
        core = self.core
        _bearer(request, core)
        _open(core)
        status = request.query_params.get("status")
        if status is not None and (status := status.upper()) not in STATUSES:
            raise Refusal(400, f"?status= must be one of {', '.join(STATUSES)}")
        media = _media_type(request, (JSON, *NDJSON))
        values = _values(await _body(request, core.settings), media)
        adapted = _adapt(values, lambda payload: engine_records(payload, core.segments, status), objects_only=False)
        return await _accept(core, adapted, NO_SEGMENT)

    async def copernica(self, request: Request) -> Response:
        """Signed by Copernica (or, with ``verify: false``, a ``?token=``): Copernica sends no bearer."""
        core = self.core
        if not core.settings.copernica.verify:
            _query_token(request, core)
        _open(core)
        body = await _body(request, core.settings)
        if core.settings.copernica.verify:
            await _signed(request, core, body)
        key = _segment(core, request.path_params["segment"])
        segment = core.segments[key]
        if _media_type(request, (JSON, FORM)) == FORM:
            adapted = _adapt([body], lambda form: (key, [copernica_record(copernica_form(form), segment)]), False)
        else:
            adapted = _adapt(_values(body, JSON), lambda callback: (key, [copernica_record(callback, segment)]), True)
        return await _accept(core, adapted, key)

    async def engagements(self, request: Request) -> Response:
        """Engagement events (the connector's camelCase shape): stored in the journal, where
        reports and a segment's ``suppress:`` read them."""
        core = self.core
        _bearer(request, core)
        _open(core)
        media = _media_type(request, (JSON, *NDJSON))
        events, rejected = _engagement_events(_values(await _body(request, core.settings), media))

        def record() -> Accepted:
            core.record(events)
            core.metrics.event(ENGAGEMENTS, "accepted", len(events))
            return Accepted(len(events))

        return await _hand_over(core, record if events else None, rejected, ENGAGEMENTS)

    async def healthz(self, request: Request) -> Response:
        reason = self.core.health()  # reads memory only: answers even when every worker thread is busy
        self.core.metrics.healthy.set(0 if reason else 1)
        if reason:
            return _json(503, {"status": "unhealthy", "reason": reason})
        return _json(200, {"status": "ok"})

    async def status(self, request: Request) -> Response:
        _bearer(request, self.core)
        return _json(200, await anyio.to_thread.run_sync(self.core.status))

    async def metrics(self, request: Request) -> Response:
        _bearer(request, self.core)
        return Response(self.core.metrics.exposition(), media_type=CONTENT_TYPE)

    async def flush(self, request: Request) -> Response:
        core = self.core
        _bearer(request, core)
        _open(core)
        wanted = request.query_params.get("segment")
        names = [_segment(core, wanted)] if wanted is not None else sorted(core.segments)
        core.flush(wanted)
        return _json(202, {"flushing": names})


# --- errors and metrics --------------------------------------------------------------------


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return _json(exc.status, {"error": exc.reason}, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's own 404 and 405, as JSON like every other answer."""
    assert isinstance(exc, HTTPException)
    reason = {404: "no such route", 405: "method not allowed"}.get(exc.status_code, "bad request")
    return _json(exc.status_code, {"error": reason}, exc.headers)


class _Observed:
    """Counts every answer by route template (never the raw path) and status, times it, and
    answers an unexpected exception with a bare 500, logged without the request's data."""

    def __init__(self, app: ASGIApp, core: Core) -> None:
        self.app, self.core = app, core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, started = 0, time.perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception as exc:
            frames = "".join(traceback.format_tb(exc.__traceback__))  # the code's lines; never the message
            log.error(
                "internal error answering %s %s: %s\n%s", scope["method"], _template(scope), type(exc).__name__, frames
            )
            if not status:  # nothing sent yet
                await _json(500, {"error": "internal error"})(scope, receive, send)
            status = 500
        self.core.metrics.http_requests.labels(_template(scope), str(status)).inc()
        self.core.metrics.http_seconds.labels(_template(scope)).observe(time.perf_counter() - started)


def _template(scope: Scope) -> str:
    """The matched route's template (the router leaves it in the scope), never the raw path."""
    return getattr(scope.get("route"), "path", "unmatched")


def build_app(core: Core) -> Starlette:
    """The relay's ASGI app, talking to ``core`` only."""
    h = _Handlers(core)
    routes = [
        Route("/v1/segments/{segment}/profiles", h.profiles, methods=["POST"]),
        Route("/v1/engine", h.engine, methods=["POST"]),
        Route("/v1/copernica/{segment}", h.copernica, methods=["POST"]),
        Route("/v1/engagements", h.engagements, methods=["POST"]),
        Route("/v1/flush", h.flush, methods=["POST"]),
        Route("/v1/status", h.status, methods=["GET"]),
        Route("/metrics", h.metrics, methods=["GET"]),
        Route("/healthz", h.healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={Refusal: _refused, HTTPException: _http_error})
    app.router.redirect_slashes = False  # a redirect would echo the query string (?token=)
    app.add_middleware(_Observed, core=core)
    return app
