"""A loopback HTTP server for emulated APIs, with the faults any remote API shows.

Generic: it knows routes, not Deployteq (``webhook.py`` builds the webhook receiver on it; the
next emulated APIs are new routes on the same server). A plain route (a control endpoint) is
answered as it is. An emulated API call (``api()``) takes the same steps whatever the API:

1. ``check`` may refuse it before anything is counted (authentication, say);
2. ``latency`` seconds pass;
3. under the server's lock it is counted (``stats["requests"]``), ``admit`` may refuse it (a
   daily quota, say), and the faults are drawn: a 500 for the first ``fail_first`` requests, for
   the request numbers in ``fail_requests`` and for a ``fail_rate`` share; a dropped connection
   (no answer at all) for a ``drop_rate`` share; for a ``slow_rate`` share, an answer only after
   ``slow_seconds`` (past the client's timeout);
4. ``respond`` answers it (unless it failed or was dropped: an injected failure is the route's
   ``failure`` answer, JSON by default); a slow one's success is held back for ``slow_seconds``,
   a refusal (4xx, 5xx) goes out at once;
5. once ``max_requests`` requests have been counted and answered, the server stops.

Draws come from one ``random.Random(seed)``: a seeded run is reproducible. Binds to loopback only;
answers are JSON unless a ``Response`` carries a raw ``body`` (the SOAP emulator's XML); nothing is
logged (URLs and bodies may carry tokens).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

from ..config import is_loopback
from ..errors import UsageError

COUNTERS = ("requests", "faults", "dropped", "slow")  # the server's own entries in ``stats``
INJECTED_FAILURE = 500, {"error": "injected failure"}
NOT_FOUND = 404, {"error": "not found"}

Fault = Literal["fail", "drop", "slow"]
_COUNTER_OF: dict[Fault, str] = {"fail": "faults", "drop": "dropped", "slow": "slow"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Message
    body: bytes
    note: dict[str, Any] = field(default_factory=dict)  # what ``check`` learned, for ``admit`` and ``respond``


@dataclass(frozen=True)
class Response:
    status: int
    payload: dict[str, Any]  # sent as JSON, unless ``body`` is given
    body: bytes | None = None  # sent as it is, with ``content_type``
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()  # this answer's own headers (Retry-After, ...)

    @classmethod
    def raw(cls, status: int, body: bytes, content_type: str) -> Response:
        """An answer that is not JSON (XML, an HTML page, nothing at all)."""
        return cls(status, {}, body, content_type)


Handler = Callable[[Request], Response]
Gate = Callable[[Request], Response | None]  # a refusal, or None to go on


@dataclass(frozen=True)
class Faults:
    """What goes wrong, on purpose, with emulated API calls (see the module docstring)."""

    fail_rate: float = 0.0
    fail_first: int = 0
    fail_requests: frozenset[int] = frozenset()
    drop_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    latency: float = 0.0


@dataclass(frozen=True)
class _Route:
    respond: Handler
    api: bool = False
    check: Gate | None = None
    admit: Gate | None = None
    failure: Response = Response(*INJECTED_FAILURE)


def require_loopback(host: str, name: str) -> None:
    if not is_loopback(host):
        raise UsageError(f"the {name} binds to loopback only; {host!r} is not a loopback address")


class LoopbackServer:
    """Routes on a ``ThreadingHTTPServer`` on loopback; ``start()`` / ``stop()`` or a with block.

    ``counters`` orders ``stats`` (an emulator's own counters among the server's); ``headers``
    gives extra headers for every answer, read when it is sent."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        seed: int | None = None,
        max_requests: int | None = None,
        counters: Iterable[str] = (),
        headers: Callable[[], Mapping[str, str]] | None = None,
        name: str = "emulator",
    ) -> None:
        require_loopback(host, name)
        self.name = name
        self.faults = faults or Faults()
        self.max_requests = max_requests
        self.headers = headers
        self.lock = threading.Lock()
        own = tuple(counters)
        self.stats: dict[str, int] = dict.fromkeys((*own, *(c for c in COUNTERS if c not in own)), 0)
        self._random = random.Random(seed)
        self._exact: dict[tuple[str, str], _Route] = {}
        self._prefixes: list[tuple[str, str, _Route]] = []  # longest first
        self._http = ThreadingHTTPServer((host, port), _handler_for(self))
        self._http.daemon_threads = True
        self._serving = False
        self._thread: threading.Thread | None = None

    # -- routes ------------------------------------------------------------------------------

    def route(self, method: str, path: str, handler: Handler, *, prefix: bool = False) -> None:
        """A plain endpoint (an emulator's control endpoint): not counted, no faults."""
        self._add(method, path, _Route(handler), prefix)

    def api(
        self,
        method: str,
        path: str,
        respond: Handler,
        *,
        check: Gate | None = None,
        admit: Gate | None = None,
        failure: Response | None = None,
        prefix: bool = False,
    ) -> None:
        """An emulated API call: counted and subject to the faults. ``admit`` runs under ``lock``;
        ``failure`` is the answer to an injected failure (default: a JSON 500)."""
        self._add(method, path, _Route(respond, True, check, admit, failure or Response(*INJECTED_FAILURE)), prefix)

    def _add(self, method: str, path: str, route: _Route, prefix: bool) -> None:
        if prefix:
            self._prefixes.append((method, path, route))
            self._prefixes.sort(key=lambda r: len(r[1]), reverse=True)
        else:
            self._exact[method, path] = route

    def _find(self, method: str, path: str) -> _Route | None:
        route = self._exact.get((method, path))
        if route is None:
            route = next((r for m, p, r in self._prefixes if m == method and path.startswith(p)), None)
        return route

    # -- a request ---------------------------------------------------------------------------

    def dispatch(self, req: Request) -> tuple[Response | None, bool]:
        """The answer (None: drop the connection) and whether the request counts toward ``max_requests``."""
        route = self._find(req.method, req.path)
        if route is None:
            return Response(*NOT_FOUND), False
        if not route.api:
            return route.respond(req), False
        refusal = route.check(req) if route.check is not None else None
        if refusal is not None:
            return refusal, False
        faults = self.faults
        if faults.latency:
            time.sleep(faults.latency)
        with self.lock:
            self.stats["requests"] += 1
            refusal = route.admit(req) if route.admit is not None else None
            fault = self._draw(self.stats["requests"]) if refusal is None else None
        if refusal is not None:
            return refusal, True
        if fault == "fail":
            return route.failure, True
        if fault == "drop":
            return None, False
        answer = route.respond(req)
        if fault == "slow" and answer.status < 400:  # done, but answered late: the client retries
            time.sleep(faults.slow_seconds)
        return answer, True

    def _draw(self, n: int) -> Fault | None:
        """The fault for the ``n``-th request, if any; under ``lock``."""
        f = self.faults
        fault: Fault
        if n <= f.fail_first or n in f.fail_requests:
            fault = "fail"
        else:
            roll = self._random.random()
            if roll < f.drop_rate:
                fault = "drop"
            elif roll < f.drop_rate + f.slow_rate:
                fault = "slow"
            elif self._random.random() < f.fail_rate:
                fault = "fail"
            else:
                return None
        self.stats[_COUNTER_OF[fault]] += 1
        return fault

    def answered(self) -> None:
        """A counted request was answered: stop once ``max_requests`` is reached."""
        limit = self.max_requests
        if limit is not None and self.stats["requests"] >= limit:
            threading.Thread(target=self._http.shutdown, daemon=True).start()

    # -- running -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def thread(self) -> threading.Thread | None:
        """The background thread ``start()`` serves on."""
        return self._thread

    def start(self) -> LoopbackServer:
        """Serve on a background thread."""
        self._serving = True
        self._thread = threading.Thread(target=self._http.serve_forever, name=f"canopycli-{self.name}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until ``stop()`` (from another thread) or ``max_requests``."""
        self._serving = True
        self._http.serve_forever()

    def serve(self, duration: float | None = None) -> None:
        """Block until ``max_requests`` stops the server, ``duration`` seconds pass, or Ctrl-C.

        Starts the server if it is not running; leaves closing it to ``stop()`` (or the with block)."""
        if self._thread is None:
            self.start()
        assert self._thread is not None
        deadline = time.monotonic() + duration if duration else None
        try:
            while self._thread.is_alive():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._thread.join(timeout=0.2)
        except KeyboardInterrupt:
            pass

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call more than once."""
        if self._serving:  # shutdown() waits for a serve_forever() that never ran
            self._http.shutdown()
        self._http.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"canopycli-{server.name}"
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK stall every answer for ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: never log URLs (tokens)
            pass

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET", b"")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            self._serve("POST", self.rfile.read(length) if length else b"")

        def _serve(self, method: str, body: bytes) -> None:
            url = urlsplit(self.path)
            answer, counted = server.dispatch(Request(method, url.path, url.query, self.headers, body))
            if answer is None:
                self.close_connection = True
                return  # no response at all: the client sees a dropped connection
            self._answer(answer)
            if counted:
                server.answered()

        def _answer(self, answer: Response) -> None:
            data = json.dumps(answer.payload).encode() if answer.body is None else answer.body
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (server.headers() if server.headers is not None else {}).items():
                self.send_header(name, value)
            for name, value in answer.headers:
                self.send_header(name, value)
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timeout); nothing to tell it

    return Handler
