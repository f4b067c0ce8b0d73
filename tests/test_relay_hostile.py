"""Hostile input against the real ``canopycli relay`` subprocess, over real sockets on loopback.

One relay (small ``max_body_bytes``, 1 s header and body timeouts) in front of the sandbox. Valid
events are queued first; then a table of bad requests, each of which must get its documented
status and a JSON reason that says what is wrong (``error``, or ``rejected[].reason``) and never
echoes a token or an address; then slow clients on raw sockets. Afterwards the relay still
answers, everything queued before is delivered, and its stderr holds no traceback and no secret.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from canopycli.emulators.webhook import Sandbox
from canopycli.relay.signature import sign

from .conftest import TOKEN
from .relay_harness import RELAY_TOKEN, Relay, profiles, recorded, relay_config

pytestmark = pytest.mark.timeout(60)

LIMIT = 100_000  # relay.max_body_bytes
TIMEOUT = 1.0  # relay.header_timeout and relay.body_timeout
PROFILES = "/v1/segments/WelcomeFlow/profiles"
COPERNICA = "/v1/copernica/Copernica"
BEFORE = 120  # valid events queued before the table: all must be delivered after it
J = "application/json"
ND = "application/x-ndjson"
FORM = "application/x-www-form-urlencoded"
ADDRESS = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@dataclass
class World:
    relay: Relay
    sandbox: Sandbox
    received: Path
    key: RSAPrivateKey

    @property
    def host(self) -> str:
        return self.relay.url.removeprefix("http://")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.host.split(":")
        return host, int(port)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("hostile")
    sandbox = Sandbox(TOKEN, port=0, record=tmp / "received.jsonl").start()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp / "copernica.pem").write_bytes(pem)
    cfg = relay_config(
        tmp / "relay.yaml",
        sandbox.endpoint,
        TOKEN,
        flush_interval="1h",  # nothing leaves until the last test flushes
        max_body_bytes=LIMIT,
        header_timeout=f"{TIMEOUT:g}s",
        body_timeout=f"{TIMEOUT:g}s",
        copernica={"public_key_file": "copernica.pem", "max_skew": "5m"},
    )
    relay = Relay(cfg, tmp / "state")
    try:
        yield World(relay, sandbox, tmp / "received.jsonl", key)
    finally:
        try:
            relay.stop()
        finally:
            sandbox.stop()


# --- requests ----------------------------------------------------------------------------------


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterator[bytes] = b""


def bearer(ctype: str | None = J, token: str = RELAY_TOKEN) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    return {**headers, "Content-Type": ctype} if ctype else headers


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def signed(
    w: World,
    body: bytes,
    ctype: str = J,
    *,
    signed_path: str = COPERNICA,
    sent_path: str = COPERNICA,
    sent_body: bytes | None = None,
    now: float | None = None,
    covered: tuple[str, ...] | None = None,
) -> Req:
    """A Copernica callback signed with the test key (then maybe sent elsewhere, or another body)."""
    headers = sign("POST", signed_path, {"Host": w.host, "Content-Type": ctype}, body, w.key, covered=covered, now=now)
    return Req("POST", sent_path, headers, body if sent_body is None else sent_body)


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def engine(**payload: Any) -> Req:
    return Req("POST", "/v1/engine", bearer(), dumps({"partnerAudienceId": "2582431", **payload}))


def chunks(total: int, size: int = 10_000) -> Iterator[bytes]:
    """A chunked body of ``total`` bytes (no Content-Length: the limit must be enforced while reading)."""
    yield b"["
    for _ in range(total // size):
        yield b" " * size
    yield b"]"


@dataclass
class Case:
    status: int
    says: str  # in "error", or in some rejected[].reason
    build: Callable[[World], Req]


LEGACY = {"id": "1", "action": "create", "fields": {"email": "cop@example.com", "city": "Delft"}}

# fmt: off
CASES: dict[str, Case] = {
    # bodies that are not what the route takes
    "invalid JSON": Case(400, "not valid JSON", lambda w: Req("POST", PROFILES, bearer(), b'{"email": ')),
    "JSON string": Case(400, "not a JSON object or an array", lambda w: Req("POST", PROFILES, bearer(), b'"x"')),
    "JSON number": Case(400, "not a JSON object or an array", lambda w: Req("POST", PROFILES, bearer(), b"42")),
    "array of numbers": Case(422, "not a JSON object", lambda w: Req("POST", PROFILES, bearer(), b"[1, 2]")),
    "empty body": Case(400, "empty", lambda w: Req("POST", PROFILES, bearer(), b"")),
    "not UTF-8": Case(400, "not UTF-8", lambda w: Req("POST", PROFILES, bearer(), b'{"email": "\xff@x.nl"}')),
    "NDJSON, one bad line": Case(400, "line 2 is not valid JSON", lambda w: Req(
        "POST", PROFILES, bearer(ND), b'{"email": "nd1@example.com"}\n{"email": \n{"email": "nd2@example.com"}\n')),
    "wrong content type": Case(415, "unsupported content type", lambda w: Req(
        "POST", PROFILES, bearer("text/plain"), b"{}")),
    "no content type": Case(415, "unsupported content type", lambda w: Req("POST", PROFILES, bearer(None), b"{}")),
    "charset latin-1": Case(415, "charset", lambda w: Req(
        "POST", PROFILES, bearer("application/json; charset=latin-1"), b'{"email": "x@example.com"}')),
    "over the limit, streamed": Case(413, "max_body_bytes", lambda w: Req(
        "POST", PROFILES, bearer(), chunks(LIMIT + 50_000))),
    "deep nesting (10,000 [)": Case(400, "not valid JSON", lambda w: Req(
        "POST", PROFILES, bearer(), b"[" * 10_000 + b"]" * 10_000)),
    "deep nesting in NDJSON": Case(400, "line 1 is not valid JSON", lambda w: Req(
        "POST", PROFILES, bearer(ND), b'{"a":' * 2_000 + b"1" + b"}" * 2_000)),
    "deep nesting in a param": Case(422, "", lambda w: Req(
        "POST", PROFILES, bearer(), b'{"email": "deep@example.com", "p": ' + b"[" * 1000 + b"]" * 1000 + b"}")),
    "integer past 64 bits": Case(422, "out of range", lambda w: Req(
        "POST", PROFILES, bearer(), b'{"email": "big@example.com", "n": 123456789012345678901234567890}')),
    "30,000 tiny NDJSON records": Case(422, "no 'email' value", lambda w: Req(
        "POST", PROFILES, bearer(ND), b"{}\n" * 30_000)),
    "NUL in an identifier": Case(422, "", lambda w: Req(
        "POST", PROFILES, bearer(), dumps({"email": "nul\u0000x@example.com"}))),
    "control characters in an identifier": Case(422, "", lambda w: Req(
        "POST", PROFILES, bearer(), dumps({"email": "ctl\u0007\u001b[2J@example.com"}))),
    "NUL in a param name": Case(202, "", lambda w: Req(
        "POST", PROFILES, bearer(), dumps({"email": "pn@example.com", "a\u0000b": "v"}))),
    "a param named like an address": Case(202, "", lambda w: Req(
        "POST", PROFILES, bearer(), dumps({"email": "pa@example.com", "victim@example.com": "v"}))),
    # auth, routes
    "unknown segment": Case(404, "no such segment", lambda w: Req(
        "POST", "/v1/segments/Nope/profiles", bearer(), b"{}")),
    "missing token": Case(401, "no bearer token", lambda w: Req("POST", PROFILES, {"Content-Type": J}, b"{}")),
    "wrong token": Case(401, "not one of relay.tokens", lambda w: Req(
        "POST", PROFILES, bearer(token="relay-WRONG-000000000000000000"), b"{}")),
    "Bearer without a token": Case(401, "not 'Bearer", lambda w: Req(
        "POST", PROFILES, {"Authorization": "Bearer", "Content-Type": J}, b"{}")),
    "Basic auth": Case(401, "not 'Bearer", lambda w: Req(
        "POST", PROFILES, {"Authorization": "Basic dXNlcjpwYXNz", "Content-Type": J}, b"{}")),
    "GET on a POST route": Case(405, "method not allowed", lambda w: Req("GET", PROFILES, bearer(None))),
    "unknown route": Case(404, "no such route", lambda w: Req("GET", "/v2/nothing", bearer(None))),
    "status without a token": Case(401, "no bearer token", lambda w: Req("GET", "/v1/status")),
    # engine payloads
    "engine without partnerIds": Case(422, "no partnerIds", lambda w: engine()),
    "engine, empty partnerIds": Case(422, "partnerIds is empty", lambda w: engine(partnerIds=[])),
    "engine, 10,001 partnerIds": Case(422, "at most 10000", lambda w: engine(partnerIds=[str(i) for i in range(10_001)])),
    "engine for an unknown audience": Case(422, "matches no segment", lambda w: engine(
        partnerAudienceId="999", partnerIds=["eng@example.com"])),
    "engine, statuses disagree": Case(422, "disagree", lambda w: engine(
        partnerIds=["eng@example.com"], status="NEW", r42Status="REMOVED")),
    "engine, variable named like id_column": Case(422, "id_column", lambda w: engine(
        partnerIds=["eng@example.com"], audienceVariables={"email": "other@example.com"})),
    "engine, a string": Case(400, "not a JSON object or an array", lambda w: Req(
        "POST", "/v1/engine", bearer(), b'"2582431"')),
    "engine, bad ?status=": Case(400, "?status= must be one of", lambda w: Req(
        "POST", "/v1/engine?status=GONE", bearer(), dumps({"partnerAudienceId": "2582431", "partnerIds": ["x"]}))),
    # Copernica's signature
    "Copernica unsigned": Case(401, "unsigned", lambda w: Req(
        "POST", COPERNICA, {"Content-Type": J, "Host": w.host}, dumps(LEGACY))),
    "Copernica with a bearer only": Case(401, "unsigned", lambda w: Req("POST", COPERNICA, bearer(), dumps(LEGACY))),
    "Copernica bad signature": Case(401, "bad signature", lambda w: bad_signature(signed(w, dumps(LEGACY)))),
    "Copernica stale Date": Case(401, "stale Date", lambda w: signed(w, dumps(LEGACY), now=time.time() - 3600)),
    "Copernica Date in the future": Case(401, "Date in the future", lambda w: signed(
        w, dumps(LEGACY), now=time.time() + 3600)),
    "Copernica tampered body": Case(401, "does not match its Digest", lambda w: signed(
        w, dumps(LEGACY), sent_body=dumps({**LEGACY, "action": "delete"}))),
    "Copernica wrong path": Case(401, "bad signature", lambda w: signed(
        w, dumps(LEGACY), sent_path="/v1/copernica/WelcomeFlow")),
    "Copernica not covering digest": Case(401, "does not cover digest", lambda w: signed(
        w, dumps(LEGACY), covered=("(request-target)", "host", "date", "x-copernica-id"))),
    "Copernica keyId elsewhere": Case(401, "not under .copernica.com", lambda w: Req(
        "POST", COPERNICA, {**(r := signed(w, dumps(LEGACY))).headers,
                            "Signature": r.headers["Signature"].replace("copernica.com", "example.org")}, r.body)),
    "Copernica form, repeated key": Case(422, "more than once", lambda w: signed(
        w, b"type=update&fields%5Bemail%5D=a%40example.com&fields%5Bemail%5D=b%40example.com", FORM)),
    "Copernica form, not a form": Case(422, "not a form", lambda w: signed(w, b"type=update&&junk", FORM)),
    "Copernica, a click": Case(422, "not a profile create", lambda w: signed(
        w, form(type="click", profile="1", **{"fields[email]": "click@example.com"}), FORM)),
    "Copernica, no id field": Case(422, "the segment's id_column", lambda w: signed(
        w, dumps({"action": "update", "fields": {"city": "Delft"}}))),
    "Copernica, ndjson": Case(415, "unsupported content type", lambda w: signed(w, dumps(LEGACY), ND)),
    "Copernica, unknown segment": Case(404, "no such segment", lambda w: signed(
        w, dumps(LEGACY), signed_path="/v1/copernica/Nope", sent_path="/v1/copernica/Nope")),
}
# fmt: on
ACCEPTED_IN_TABLE = sum(case.status == 202 for case in CASES.values())


def bad_signature(req: Req) -> Req:
    """The same request with another (valid base64) signature value."""
    value = re.sub(r'signature="[^"]+"', 'signature="' + "A" * 344 + '"', req.headers["Signature"])
    return Req(req.method, req.path, {**req.headers, "Signature": value}, req.body)


def reasons(answer: dict[str, Any]) -> list[str]:
    if "error" in answer:
        return [answer["error"]]
    return [r["reason"] for r in answer["rejected"]]


def no_secret(text: str) -> None:
    assert RELAY_TOKEN not in text and TOKEN not in text
    assert not ADDRESS.search(text), text[:300]


# --- raw sockets -------------------------------------------------------------------------------


class Conn:
    """A raw client connection, reading answers off a buffer (pipelined answers may share a read)."""

    def __init__(self, w: World, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(w.address, timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next HTTP/1.1 response (one with a Content-Length)."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._more():
                raise AssertionError(f"closed without an answer: {self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        size = int(headers.get("content-length", "0"))
        while len(self.buffer) < size and self._more():
            pass
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return int(line.split()[1]), headers, body

    def closed(self, within: float = TIMEOUT + 0.5) -> bool:
        """The server closed the connection (EOF, or a reset) within ``within`` seconds: it does not
        keep reading a body it has refused (uvicorn would, for keep-alive's sake)."""
        self.sock.settimeout(within)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def head(w: World, method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {w.host}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int, says: str) -> None:
    assert status == expected, body
    assert headers.get("content-type", "").startswith("application/json"), (headers, body)
    assert says in json.loads(body)["error"]


# --- before: events that must survive everything below ---------------------------------------


def test_valid_events_are_queued_before_the_table(world: World) -> None:
    r = world.relay.post(PROFILES, profiles(BEFORE - 20))
    assert (r.status_code, r.json()) == (202, {"accepted": BEFORE - 20, "rejected": []})
    r = world.relay.post(
        "/v1/engine", {"partnerAudienceId": "2582431", "partnerIds": [f"e{i}@example.com" for i in range(10)]}
    )
    assert r.status_code == 202 and r.json()["accepted"] == 10
    for i in range(10):
        body = dumps({"action": "create", "fields": {"email": f"c{i}@example.com", "city": "Delft"}})
        req = signed(world, body)
        r = world.relay.client.post(req.path, content=body, headers={**req.headers, "Authorization": ""})
        assert r.status_code == 202, r.text
    queued = sum(s["queued"] for s in world.relay.status().values())
    assert queued == BEFORE


# --- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_request(world: World, case: Case) -> None:
    req = case.build(world)
    with httpx.Client(base_url=world.relay.url, timeout=10) as client:
        r = client.request(req.method, req.path, headers=req.headers, content=req.body)
    assert r.status_code == case.status, r.text[:500]
    assert r.headers["content-type"] == "application/json"
    no_secret(r.text)
    if case.status == 202:  # odd but valid: queued like any record (and delivered at the end)
        assert r.json() == {"accepted": 1, "rejected": []}
        return
    said = reasons(r.json())
    assert said and all(said), r.text[:500]  # a reason, and never an empty one
    assert any(case.says in s for s in said), said[:3]
    if case.status == 422:
        assert r.json()["accepted"] == 0


def test_over_the_limit_by_content_length_is_refused_before_the_body(world: World) -> None:
    """Only the headers are sent: the 413 must come without waiting for (or reading) the body."""
    with Conn(world) as sock:
        sock.sendall(head(world, "POST", PROFILES, {**bearer(), "Content-Length": str(LIMIT + 1)}))
        assert_json_error(*sock.answer(), 413, "max_body_bytes")
        assert sock.closed()


def test_a_refused_body_is_not_read_for_ever(world: World) -> None:
    """Refused before its body (401 here), a client that keeps sending is cut off after body_timeout."""
    with Conn(world) as sock:
        sock.sendall(head(world, "POST", PROFILES, {"Content-Type": J, "Content-Length": str(LIMIT * 1000)}))
        assert_json_error(*sock.answer(), 401, "no bearer token")
        started = time.monotonic()
        with pytest.raises(OSError):  # EPIPE or a reset, once the relay closed
            while time.monotonic() - started < TIMEOUT + 3:
                sock.sendall(b" " * 1000)
                time.sleep(0.01)
        assert time.monotonic() - started < TIMEOUT + 1


@pytest.mark.parametrize("value", ["12abc", "-1", "1e3", "10, 20"])
def test_a_malformed_content_length_is_400_in_json(world: World, value: str) -> None:
    with Conn(world) as sock:
        sock.sendall(head(world, "POST", PROFILES, {**bearer(), "Content-Length": value}) + b"{}")
        assert_json_error(*sock.answer(), 400, "not valid HTTP/1.1")
        assert sock.closed()


def test_garbage_instead_of_a_request_is_400_in_json(world: World) -> None:
    with Conn(world) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
        assert_json_error(*sock.answer(), 400, "not valid HTTP/1.1")


# --- slow clients ------------------------------------------------------------------------------


def test_headers_that_never_end_are_408_and_closed(world: World) -> None:
    with Conn(world) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/segments/Welc")
        status, headers, body = sock.answer()
        took = time.monotonic() - started
        assert_json_error(status, headers, body, 408, "headers did not arrive")
        assert TIMEOUT * 0.8 <= took < TIMEOUT + 2
        assert sock.closed()


def test_a_slow_second_request_on_a_kept_alive_connection_is_408_too(world: World) -> None:
    """After one answered request, the next one's headers have the same deadline."""
    with Conn(world) as sock:
        sock.sendall(head(world, "GET", "/healthz", {}))
        assert sock.answer()[0] == 200
        started = time.monotonic()
        sock.sendall(b"GET /heal")
        status, headers, body = sock.answer()
        assert_json_error(status, headers, body, 408, "headers did not arrive")
        assert time.monotonic() - started < TIMEOUT + 2
        assert sock.closed()


def test_pipelined_requests_are_all_answered(world: World) -> None:
    with Conn(world) as sock:
        sock.sendall(head(world, "GET", "/healthz", {}) * 3 + b"GET /heal")
        assert [sock.answer()[0] for _ in range(3)] == [200, 200, 200]
        assert_json_error(*sock.answer(), 408, "headers did not arrive")


def test_a_body_that_stalls_is_408_and_closed(world: World) -> None:
    with Conn(world) as sock:
        sock.sendall(head(world, "POST", PROFILES, {**bearer(), "Content-Length": "100"}) + b'[{"email":')
        started = time.monotonic()
        status, headers, body = sock.answer()
        took = time.monotonic() - started
        assert_json_error(status, headers, body, 408, "relay.body_timeout")
        assert TIMEOUT * 0.8 <= took < TIMEOUT + 2
        assert sock.closed()


def test_a_slow_client_does_not_hold_up_the_others(world: World) -> None:
    with Conn(world) as slow:
        slow.sendall(b"POST /v1/segm")
        started = time.monotonic()
        for _ in range(5):
            assert world.relay.client.get("/healthz").status_code == 200
        assert time.monotonic() - started < TIMEOUT / 2


# --- after: still serving, nothing lost, nothing leaked ---------------------------------------


def test_afterwards_the_relay_serves_and_delivers_everything_queued_before(world: World) -> None:
    relay = world.relay
    assert relay.client.get("/healthz").status_code == 200
    total = BEFORE + ACCEPTED_IN_TABLE
    assert sum(s["queued"] for s in relay.status().values()) == total  # nothing refused got in
    assert relay.post("/v1/flush").status_code == 202
    relay.wait_until(lambda: world.sandbox.snapshot()["profiles"] == total, timeout=15)
    relay.wait_until(lambda: sum(s["queued"] for s in relay.status().values()) == 0, timeout=5)
    by_segment: dict[str, int] = {}
    for c in recorded(world.received):
        by_segment[c["segmentName"]] = by_segment.get(c["segmentName"], 0) + 1
    assert by_segment == {"WelcomeFlow": BEFORE - 20 + ACCEPTED_IN_TABLE, "Engine": 10, "CopernicaSync": 10}
    metrics = relay.client.get("/metrics").text
    assert 'canopycli_relay_http_requests_total{route="unmatched",status="404"}' in metrics
    assert 'status="500"' not in metrics
    err = relay.stderr
    assert "Traceback" not in err and "internal error" not in err, err
    no_secret(err)
