"""The relay's wiring: the Core the app talks to, uvicorn, the intake and flusher threads, and
the order things stop in.

Start: the journal is opened (and migrated) and the queue counted, so whatever a killed relay
left queued or in flight is picked up; the socket is bound before anything else starts, so a
busy port is a clean error. Stop (SIGTERM/SIGINT): new requests get 503 at once; uvicorn lets
requests in flight finish; the intake commits what it was handed; the flusher finishes the
request it is making (``--drain``: sends everything queued first) and everything is recorded.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import Config, RelaySettings, Resolved, Segment, is_loopback, listen_address, resolve
from ..errors import StateError, UsageError, scrub
from ..pipeline.drive import Wiring
from ..store import Store
from ..store.engagements import Event
from ..store.locks import state_dir
from .core import Accepted, Item, ShuttingDown
from .flusher import Flusher
from .intake import Intake
from .metrics import Metrics
from .signature import DnsKeys, KeySource, PinnedKeys


@dataclass
class RelayOptions:
    listen: str | None = None  # default: the config's relay.listen
    drain: bool = False
    insecure_listen: bool = False
    state_dir: Path | None = None


class RelayCore:
    """The real ``Core``: intake into the queue, the flusher's status and health."""

    def __init__(
        self,
        config: Config,
        config_path: str,
        root: Path,
        wiring: Wiring | None = None,
        keys: KeySource | None = None,
    ) -> None:
        settings = config.relay
        if settings is None or not settings.tokens:
            raise UsageError(
                f"{config_path} has no relay: block with tokens",
                hint="Add `relay: {tokens: [${RELAY_TOKEN}]}` (see the README's Relay section).",
            )
        self.settings: RelaySettings = settings
        self.resolved: dict[str, Resolved] = {key: resolve(config, key, config_path) for key in config.segments}
        plain = sorted(k for k, r in self.resolved.items() if r.connector.identifier == "email")
        if plain:
            raise UsageError(
                f"segment(s) {', '.join(plain)} use a connector with identifier: email, which the relay cannot"
                " queue: its queue keeps no addresses",
                hint="Relay those segments with identifier: customer_id, or push them with `canopycli push`.",
            )
        self.segments: Mapping[str, Segment] = {key: r.segment for key, r in self.resolved.items()}
        self.metrics = Metrics()
        self.keys = keys or _keys(settings, Path(config_path).parent)
        self._accepting = True
        with Store(root) as store:  # opens and migrates the journal; what the last process left
            self.flusher = Flusher(root, config_path, self.resolved, settings, self.metrics, wiring)
            self.flusher.load(store)
        self.intake = Intake(root, self.resolved, self.metrics, self.flusher.committed)

    @property
    def accepting(self) -> bool:
        return self._accepting

    def accept(self, items: list[Item]) -> Accepted:
        if not self._accepting:
            raise ShuttingDown
        return self.intake.accept(items)

    def record(self, events: list[Event]) -> int:
        if not self._accepting:
            raise ShuttingDown
        return self.intake.record(events)

    def status(self) -> dict[str, Any]:
        return self.flusher.status()

    def health(self) -> str | None:
        if self.intake.failure is not None:
            return f"the queue cannot be written: {self.intake.failure.message}; restart the relay"
        return self.flusher.health()

    def flush(self, segment: str | None) -> None:
        self.flusher.request_flush(segment)

    def start(self) -> None:
        self.flusher.start()

    def stop_accepting(self) -> None:
        self._accepting = False

    def close(self, drain: bool) -> None:
        """After the server stopped: commit what intake holds, then stop (or drain) the flusher."""
        self._accepting = False
        self.intake.close()
        self.flusher.stop(drain)


def _keys(settings: RelaySettings, base: Path) -> KeySource:
    pinned = settings.copernica.public_key_file
    if pinned is None:
        return DnsKeys()
    path = Path(pinned) if Path(pinned).is_absolute() else base / pinned
    return PinnedKeys(path)


def _raw_answer(status: bytes, error: bytes) -> bytes:
    """A JSON error answer written straight to the transport (no request cycle to answer it)."""
    body = b'{"error":"%s"}' % error
    head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nconnection: close\r\n" % status
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers: a client that connects
    (or, on a kept-alive connection, starts its next request) and never finishes them gets 408
    and is closed (uvicorn has no such timeout); and a request h11 cannot parse is refused in JSON
    like every other answer, not with uvicorn's plain text."""

    header_timeout = 10.0  # relay.header_timeout
    body_timeout = 30.0  # relay.body_timeout

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: Any = self.loop.call_later(self.header_timeout, self._too_slow)

    def _waiting_for_headers(self) -> bool:
        """No request under way: the next one's headers have not all arrived."""
        return (self.cycle is None or self.cycle.response_complete) and self.conn.their_state is h11.IDLE

    def data_received(self, data: bytes) -> None:
        # The next request on a kept-alive connection began: its headers get the same deadline
        # (uvicorn cancels its keep-alive timer on any data, so nothing else would end the wait).
        if self._deadline is None and self._waiting_for_headers():
            self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)
        super().data_received(data)

    def on_response_complete(self) -> None:
        if self._deadline is not None:  # kept alive: uvicorn's keep-alive timer has it until more data
            self._deadline.cancel()
            self._deadline = None
        answered = self.cycle
        super().on_response_complete()
        if self._waiting_for_headers() and self.conn.trailing_data[0]:  # a pipelined request's start
            self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)
        if self.conn.their_state is h11.SEND_BODY:
            # Answered before the body ended (a refusal): uvicorn reads and drops the rest to keep
            # the connection, however long that takes; give it body_timeout, then close.
            self.loop.call_later(self.body_timeout, self._stop_draining, answered)

    def _stop_draining(self, answered: Any) -> None:
        if self.cycle is answered and self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()

    def _too_slow(self) -> None:
        if self._waiting_for_headers() and not self.transport.is_closing():
            why = b"the request headers did not arrive within %g seconds" % self.header_timeout
            self.transport.write(_raw_answer(b"408 Request Timeout", why))
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        why = b"the request is not valid HTTP/1.1 (request line, headers, Content-Length or Transfer-Encoding)"
        self.transport.write(_raw_answer(b"400 Bad Request", why))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)


class _Server(uvicorn.Server):
    """uvicorn, telling the core first when a signal asks it to stop (new requests: 503)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        """As uvicorn's, without recording the signal: uvicorn would raise it again once the
        server stopped, killing the process before the queue and the flusher are closed."""
        self.on_exit()
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def bind(listen: str, insecure: bool, tls: bool) -> socket.socket:
    """The listening socket, bound now: a busy port or a public address without TLS is a clean error."""
    try:
        host, port = listen_address(listen)
    except ValueError as e:
        raise UsageError(f"--listen {listen}: {e}") from None
    if not is_loopback(host) and not tls and not insecure:
        raise UsageError(
            f"--listen {listen} is not a loopback address, and the relay has no TLS: tokens would cross the network"
            " in clear text",
            hint="Set relay.tls_cert and relay.tls_key, put a TLS proxy in front and listen on 127.0.0.1,"
            " or pass --insecure-listen.",
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of a socket that says it
    # is TCP, and without it every answer's body waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise StateError(f"cannot listen on {listen}: {e.strerror or e}", hint="Choose another --listen.") from None
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def _second_signal_stops(core: RelayCore) -> Iterator[None]:
    """While the relay closes (a --drain may take a while), another SIGTERM/SIGINT stops sending:
    what is in flight is recorded, the rest stays queued."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: core.flusher.cancel.set("terminated")) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Scrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None
        return True


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Scrub())
    for name in ("canopycli.relay", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _uvicorn_config(app: Any, s: RelaySettings, base: Path, tls: bool) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=type("RelayProtocol", (_Protocol,), {"header_timeout": s.header_timeout, "body_timeout": s.body_timeout}),
        log_config=None,
        access_log=False,  # an access log would print ?token= of the Copernica route
        lifespan="off",
        timeout_keep_alive=5,
        timeout_graceful_shutdown=30,
        limit_concurrency=2048,
        ssl_certfile=str(base / s.tls_cert) if tls and s.tls_cert else None,
        ssl_keyfile=str(base / s.tls_key) if tls and s.tls_key else None,
    )


@contextlib.contextmanager
def background(
    config: Config, config_path: str, root: Path, keys: KeySource | None = None
) -> Iterator[tuple[RelayCore, str]]:
    """A relay on 127.0.0.1 (any free port) in this process, for the demo: yields the core and its
    URL; stops (draining) on exit."""
    from .app import build_app

    core = RelayCore(config, config_path, state_dir(root), keys=keys)
    sock = bind("127.0.0.1:0", False, False)
    server = uvicorn.Server(_uvicorn_config(build_app(core), core.settings, Path(config_path).parent, False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="relay-http", daemon=True)
    core.start()
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    try:
        yield core, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        core.stop_accepting()
        server.should_exit = True
        thread.join(30)
        core.close(drain=True)
        sock.close()


def serve(
    config: Config,
    config_path: str,
    opts: RelayOptions,
    say: Callable[[str], None],
) -> Mapping[str, Any]:
    """Run the relay until SIGTERM/SIGINT; returns the final status."""
    from .app import build_app

    root = state_dir(opts.state_dir)
    core = RelayCore(config, config_path, root)
    s = core.settings
    tls = s.tls_cert is not None and s.tls_key is not None
    sock = bind(opts.listen or s.listen, opts.insecure_listen, tls)
    base = Path(config_path).parent
    uv = _uvicorn_config(build_app(core), s, base, tls)
    configure_logging()
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if ":" in host else host
    core.start()
    say(f"relay: listening on {scheme}://{shown}:{port} (segments: {', '.join(sorted(core.segments))}); state {root}")
    server = _Server(uv, core.stop_accepting)
    try:
        server.run(sockets=[sock])
    finally:
        say("relay: stopping" + (" after sending everything queued (--drain)" if opts.drain else ""))
        with _second_signal_stops(core):
            core.close(opts.drain)
        sock.close()
    return core.status()
