"""The relay's HTTP side against a fake core: statuses, reasons, limits, auth, and no secrets."""

from __future__ import annotations

import hashlib
import itertools
import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import anyio
import orjson
import pytest
from pydantic import SecretStr

from canopycli.config import CopernicaSettings, RelaySettings, Segment
from canopycli.errors import DiskFullError
from canopycli.pipeline import payloads
from canopycli.relay import app as relay_app
from canopycli.relay.app import build_app
from canopycli.relay.core import Accepted, Item, ShuttingDown
from canopycli.relay.metrics import CONTENT_TYPE, Metrics
from canopycli.relay.signature import SignatureError
from canopycli.store.engagements import Event

with warnings.catch_warnings():
    # starlette 1.10 asks for httpx2 in its test client; the project has httpx (same API)
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

RELAY = "relay-SECRET-0a1b2c3d4e5f6789"
OTHER = "relay-OTHER-99887766554433221"
TOKENS = (RELAY, OTHER)
AUTH = {"Authorization": f"Bearer {RELAY}"}
LIMIT = 1_000
PROFILES = "/v1/segments/WelcomeFlow/profiles"


@dataclass
class FakeCore:
    """The Core protocol in memory: records what ``accept`` got; rejects ``reject``'s indexes."""

    settings: RelaySettings
    segments: Mapping[str, Segment]
    metrics: Metrics = field(default_factory=Metrics)
    keys: Any = None
    accepting: bool = True
    reject: dict[int, str] = field(default_factory=dict)
    failure: Exception | None = None
    unhealthy: str | None = None
    calls: list[list[Item]] = field(default_factory=list)
    flushed: list[str | None] = field(default_factory=list)
    recorded: list[list[Event]] = field(default_factory=list)

    def accept(self, items: list[Item]) -> Accepted:
        self.calls.append(items)
        if self.failure:
            raise self.failure
        rejected = sorted({(it.pos, self.reject[it.pos]) for it in items if it.pos in self.reject})
        return Accepted(sum(it.pos not in self.reject for it in items), rejected)

    def record(self, events: list[Event]) -> int:
        self.recorded.append(events)
        if self.failure:
            raise self.failure
        return len(events)

    def status(self) -> dict[str, Any]:
        return {"segments": {k: {"queued": 3, "oldest_age_s": 1.5} for k in self.segments}}

    def health(self) -> str | None:
        return self.unhealthy

    def flush(self, segment: str | None) -> None:
        self.flushed.append(segment)

    @property
    def items(self) -> list[Item]:
        return [it for call in self.calls for it in call]


def make_core(verify: bool = False, body_timeout: float = 30.0, **kwargs: Any) -> FakeCore:
    settings = RelaySettings(
        tokens=[SecretStr(t) for t in TOKENS],
        max_body_bytes=LIMIT,
        body_timeout=body_timeout,
        copernica=CopernicaSettings(verify=verify),
    )
    segments = {
        "WelcomeFlow": Segment(connector="main", id_column="email", external_id="2582431"),
        "Churn": Segment(connector="main", id_column="customer_id"),
    }
    return FakeCore(settings, segments, **kwargs)


@pytest.fixture
def core() -> FakeCore:
    return make_core()


@pytest.fixture
def client(core: FakeCore) -> TestClient:
    return TestClient(build_app(core))


# --- stand-ins for the payload adapters while pipeline/payloads.py is a placeholder -------------


def fake_engine_records(
    payload: object, segments: Mapping[str, Segment], url_status: str | None
) -> tuple[str, list[dict[str, Any]]]:
    if not isinstance(payload, dict):
        raise payloads.PayloadError("the payload is not a JSON object")
    if not payload.get("partnerIds"):
        raise payloads.PayloadError("the payload has no partnerIds")
    found = [k for k, s in segments.items() if s.external_id == str(payload.get("partnerAudienceId"))]
    if not found:
        raise payloads.PayloadError("partnerAudienceId matches no segment")
    seg = segments[found[0]]
    status = payload.get("status") or url_status or "NEW"
    return found[0], [{seg.id_column: pid, "status": status} for pid in payload["partnerIds"]]


def fake_copernica_record(payload: Mapping[str, object], segment: Segment) -> dict[str, Any]:
    fields = payload.get("fields")
    if not isinstance(fields, dict) or segment.id_column not in fields:
        raise payloads.PayloadError(f"fields has no {segment.id_column}")
    status = {"create": "NEW", "update": "MODIFIED", "delete": "REMOVED"}[str(payload.get("action", "create"))]
    return {segment.id_column: fields[segment.id_column], "status": status}


def fake_copernica_form(body: bytes) -> dict[str, object]:
    pairs = parse_qsl(body.decode(), strict_parsing=True)
    return {
        "action": dict(pairs).get("action", "create"),
        "fields": {k[7:-1]: v for k, v in pairs if k.startswith("fields[")},
    }


@pytest.fixture(autouse=True)
def _adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake the adapters only while payloads.py is the placeholder; the real ones pass these too."""
    if (payloads.__doc__ or "").startswith("Placeholder"):
        monkeypatch.setattr(relay_app, "engine_records", fake_engine_records)
        monkeypatch.setattr(relay_app, "copernica_record", fake_copernica_record)
        monkeypatch.setattr(relay_app, "copernica_form", fake_copernica_form)


def ndjson(lines: Iterable[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


# --- refusals: the table ---------------------------------------------------------------------


@dataclass
class Case:
    method: str
    path: str
    status: int
    reason: str  # a part of {"error": ...}
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterator[bytes] = b""


J = {"Content-Type": "application/json"}
ND = {"Content-Type": "application/x-ndjson"}
REFUSALS = {
    "no bearer": Case("POST", PROFILES, 401, "no bearer token", J, b"{}"),
    "wrong bearer": Case("POST", PROFILES, 401, "not one of relay.tokens", {**J, "Authorization": "Bearer nope"}),
    "basic, not bearer": Case("POST", PROFILES, 401, "not 'Bearer", {**J, "Authorization": f"Basic {RELAY}"}),
    "bearer without token": Case("POST", PROFILES, 401, "not 'Bearer", {**J, "Authorization": "Bearer "}),
    "token's prefix": Case("POST", PROFILES, 401, "not one of", {**J, "Authorization": f"Bearer {RELAY[:-1]}"}),
    "unknown segment, no auth": Case("POST", "/v1/segments/Nope/profiles", 401, "no bearer token", J, b"{}"),
    "unknown segment": Case("POST", "/v1/segments/Nope/profiles", 404, "no such segment", {**AUTH, **J}, b"{}"),
    "status, no auth": Case("GET", "/v1/status", 401, "no bearer token"),
    "metrics, no auth": Case("GET", "/metrics", 401, "no bearer token"),
    "flush, no auth": Case("POST", "/v1/flush", 401, "no bearer token"),
    "engine, no auth": Case("POST", "/v1/engine", 401, "no bearer token", J, b"{}"),
    "flush unknown segment": Case("POST", "/v1/flush?segment=Nope", 404, "no such segment", AUTH),
    "text/plain": Case("POST", PROFILES, 415, "unsupported content type", {**AUTH, "Content-Type": "text/plain"}),
    "no content type": Case("POST", PROFILES, 415, "unsupported content type", AUTH, b"{}"),
    "latin-1 charset": Case(
        "POST", PROFILES, 415, "charset", {**AUTH, "Content-Type": "application/json; charset=latin-1"}, b"{}"
    ),
    "form on profiles": Case(
        "POST", PROFILES, 415, "unsupported", {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    ),
    "invalid JSON": Case("POST", PROFILES, 400, "not valid JSON", {**AUTH, **J}, b'{"email": '),
    "not UTF-8": Case("POST", PROFILES, 400, "not UTF-8", {**AUTH, **J}, b'{"email": "\xff@x.nl"}'),
    "empty": Case("POST", PROFILES, 400, "empty", {**AUTH, **J}, b""),
    "blank": Case("POST", PROFILES, 400, "empty", {**AUTH, **ND}, b"\n \n"),
    "empty array": Case("POST", PROFILES, 400, "no records", {**AUTH, **J}, b"[]"),
    "a JSON string": Case("POST", PROFILES, 400, "not a JSON object or an array", {**AUTH, **J}, b'"x"'),
    "bad ndjson line": Case("POST", PROFILES, 400, "line 3 is not valid JSON", {**AUTH, **ND}, b"{}\n\n{\n{}"),
    "ndjson line not UTF-8": Case("POST", PROFILES, 400, "line 2 is not UTF-8", {**AUTH, **ND}, b'{}\n"\xc3"'),
    "Content-Length over": Case("POST", PROFILES, 413, "max_body_bytes", {**AUTH, **J}, b"[" + b"{}," * 400 + b"{}]"),
    "streamed over": Case("POST", PROFILES, 413, "max_body_bytes", {**AUTH, **J}, iter([b"[", b" " * 1200, b"]"])),
    "bad Content-Length": Case("POST", PROFILES, 400, "Content-Length", {**AUTH, **J, "Content-Length": "x1"}, b"{}"),
    "bad ?status": Case("POST", "/v1/engine?status=GONE", 400, "?status= must be one of", {**AUTH, **J}, b"{}"),
    "unknown route": Case("GET", "/v2/nothing", 404, "no such route", AUTH),
    "wrong method": Case("GET", PROFILES, 405, "method not allowed", AUTH),
    "copernica, no token": Case("POST", "/v1/copernica/WelcomeFlow", 401, "?token=", J, b"{}"),
    "copernica, bad token": Case("POST", "/v1/copernica/WelcomeFlow?token=nope", 401, "?token=", J, b"{}"),
    "copernica, bearer only": Case("POST", "/v1/copernica/WelcomeFlow", 401, "?token=", {**AUTH, **J}, b"{}"),
    "copernica, unknown": Case("POST", f"/v1/copernica/Nope?token={RELAY}", 404, "no such segment", J, b"{}"),
    "copernica, ndjson": Case("POST", f"/v1/copernica/WelcomeFlow?token={RELAY}", 415, "unsupported", ND, b"{}"),
}


def call(client: TestClient, case: Case) -> Any:
    return client.request(case.method, case.path, headers=case.headers, content=case.body)


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_refusals(client: TestClient, core: FakeCore, case: Case) -> None:
    r = call(client, case)
    assert (r.status_code, r.headers["content-type"]) == (case.status, "application/json")
    assert case.reason in r.json()["error"]
    assert core.calls == []
    if case.status == 401 and "copernica" not in case.path:
        assert r.headers["www-authenticate"] == "Bearer"


def test_no_token_or_query_in_any_answer_or_log(caplog: pytest.LogCaptureFixture) -> None:
    """Every answer of the table, and an internal error's log line, hold no token and no query."""
    caplog.set_level(logging.DEBUG)
    for case in REFUSALS.values():
        if isinstance(case.body, Iterator):
            continue  # consumed by test_refusals' run of it; one-shot
        r = call(TestClient(build_app(make_core())), case)
        text = r.text + str(r.headers)
        assert not any(t in text for t in TOKENS) and "nope" not in text, case
    core = make_core(failure=RuntimeError(f"boom {RELAY} alice@example.com"))
    r = TestClient(build_app(core)).post(PROFILES, headers=AUTH, json={"email": "alice@example.com"})
    assert (r.status_code, r.json()) == (500, {"error": "internal error"})
    assert "internal error answering POST /v1/segments/{segment}/profiles: RuntimeError" in caplog.text
    assert RELAY not in caplog.text and "alice" not in caplog.text


# --- profiles ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"email": "a@x.nl"}'),
        ("application/json; charset=UTF-8", b'[{"email": "a@x.nl"}]'),
        ("application/x-ndjson", b'{"email": "a@x.nl"}\n'),
        ("application/jsonl", b'\n{"email": "a@x.nl"}\r\n\n'),
        ("application/json-lines", b'\xef\xbb\xbf{"email": "a@x.nl"}'),
    ],
)
def test_profiles_accepted(client: TestClient, core: FakeCore, content_type: str, body: bytes) -> None:
    r = client.post(PROFILES, headers={**AUTH, "Content-Type": content_type}, content=body)
    assert (r.status_code, r.json()) == (202, {"accepted": 1, "rejected": []})
    assert core.items == [Item(0, "WelcomeFlow", {"email": "a@x.nl"})]


def test_second_token_works(client: TestClient) -> None:
    r = client.post(PROFILES, headers={"Authorization": f"bearer {OTHER}"}, json={"email": "a@x.nl"})
    assert r.status_code == 202


def test_non_objects_rejected_by_index_without_blocking_the_others(client: TestClient, core: FakeCore) -> None:
    core.reject = {3: "email: not an email address"}
    body = [{"email": "a@x.nl"}, 7, {"email": "b@x.nl"}, {"email": "bad"}, ["x"], {"email": "c@x.nl"}]
    r = client.post(PROFILES, headers=AUTH, json=body)
    assert r.status_code == 202
    assert r.json() == {
        "accepted": 3,
        "rejected": [
            {"index": 1, "reason": "record 1 is not a JSON object"},
            {"index": 3, "reason": "email: not an email address"},
            {"index": 4, "reason": "record 4 is not a JSON object"},
        ],
    }
    assert [it.pos for it in core.items] == [0, 2, 3, 5]
    assert 'canopycli_relay_events_total{outcome="rejected",segment="WelcomeFlow"} 2.0' in (
        core.metrics.exposition().decode()
    )


def test_ndjson_indexes_count_records_not_lines(client: TestClient, core: FakeCore) -> None:
    r = client.post(PROFILES, headers={**AUTH, **ND}, content=b'{"email": "a@x.nl"}\n\n3\n{"email": "b@x.nl"}\n')
    assert r.json()["rejected"] == [{"index": 1, "reason": "record 1 is not a JSON object"}]
    assert [it.pos for it in core.items] == [0, 2]


def test_all_rejected_is_422(client: TestClient, core: FakeCore) -> None:
    core.reject = {1: "email: missing"}
    r = client.post(PROFILES, headers=AUTH, json=[1, {"email": ""}])
    assert r.status_code == 422
    assert r.json() == {
        "accepted": 0,
        "rejected": [
            {"index": 0, "reason": "record 0 is not a JSON object"},
            {"index": 1, "reason": "email: missing"},
        ],
    }


def test_only_non_objects_never_reach_the_core(client: TestClient, core: FakeCore) -> None:
    r = client.post(PROFILES, headers=AUTH, json=[1, None])
    assert (r.status_code, r.json()["accepted"], core.calls) == (422, 0, [])


def test_body_exactly_at_the_limit_is_read(client: TestClient) -> None:
    body = b'{"email": "a@x.nl"}'.ljust(LIMIT)
    r = client.post(PROFILES, headers={**AUTH, **J}, content=iter([body[:500], body[500:]]))
    assert r.status_code == 202


def asgi_post(app: Any, path: str, headers: dict[str, str], chunks: Iterable[bytes | None]) -> tuple[int, int]:
    """POST straight into the app, a chunk per receive() (None: the client stalls for good);
    (status, chunks it asked for)."""
    feed, asked, status = iter(chunks), 0, 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        chunk = next(feed, b"")  # b"": the end of the body
        if chunk is None:
            await anyio.sleep_forever()
        return {"type": "http.request", "body": chunk, "more_body": chunk != b""}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    anyio.run(app, scope, receive, send)
    return status, asked


def test_an_endless_chunked_body_is_cut_at_the_limit(core: FakeCore) -> None:
    status, asked = asgi_post(build_app(core), PROFILES, {**AUTH, **J}, itertools.repeat(b" " * 400))
    assert (status, asked) == (413, 3)  # 1,200 bytes > 1,000: refused without asking for more


def test_a_stalled_body_is_408() -> None:
    app = build_app(make_core(body_timeout=0.05))
    assert asgi_post(app, PROFILES, {**AUTH, **J}, [b"[", None]) == (408, 2)


def test_shutting_down_answers_503(core: FakeCore, client: TestClient) -> None:
    core.accepting = False
    for path in (PROFILES, "/v1/engine", "/v1/flush", f"/v1/copernica/WelcomeFlow?token={RELAY}"):
        r = client.post(path, headers=AUTH, json={"email": "a@x.nl"})
        assert r.status_code == 503, path
        assert r.json() == {"error": "the relay is shutting down; send again later"}
        assert r.headers["retry-after"]
    assert client.get("/v1/status", headers=AUTH).status_code == 200
    assert core.calls == [] and core.flushed == []


def test_shutting_down_during_accept_answers_503(core: FakeCore, client: TestClient) -> None:
    core.failure = ShuttingDown()
    r = client.post(PROFILES, headers=AUTH, json={"email": "a@x.nl"})
    assert (r.status_code, r.json()["error"]) == (503, "the relay is shutting down; send again later")


def test_a_queue_that_cannot_be_written_answers_503_with_the_reason(
    core: FakeCore, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    core.failure = DiskFullError("the disk holding /state/journal.sqlite3 is full", hint="Free some space.")
    r = client.post(PROFILES, headers=AUTH, json={"email": "a@x.nl"})
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.json() == {
        "error": "the queue cannot be written: the disk holding /state/journal.sqlite3 is full; nothing was queued,"
        " send again"
    }
    assert "the queue cannot be written" in caplog.text and "Traceback" not in caplog.text


# --- engine ---------------------------------------------------------------------------------


def test_engine_payloads(client: TestClient, core: FakeCore) -> None:
    body = [
        {"partnerAudienceId": "2582431", "partnerIds": ["a@x.nl", "b@x.nl"]},
        {"partnerAudienceId": "2582431"},
        {"partnerAudienceId": "404", "partnerIds": ["c@x.nl"]},
        {"partnerAudienceId": 2582431, "partnerIds": ["d@x.nl"]},
    ]
    r = client.post("/v1/engine?status=removed", headers=AUTH, json=body)
    assert (r.status_code, r.json()["accepted"]) == (202, 3)
    assert [rej["index"] for rej in r.json()["rejected"]] == [1, 2]
    assert "partnerIds" in r.json()["rejected"][0]["reason"]
    assert [(it.pos, it.segment, it.record["email"]) for it in core.items] == [
        (0, "WelcomeFlow", "a@x.nl"),
        (0, "WelcomeFlow", "b@x.nl"),
        (3, "WelcomeFlow", "d@x.nl"),
    ]
    assert {it.record["status"] for it in core.items} == {"REMOVED"}


def test_engine_ndjson_and_single_object(client: TestClient, core: FakeCore) -> None:
    line = b'{"partnerAudienceId": "2582431", "partnerIds": ["a@x.nl"]}'
    assert client.post("/v1/engine", headers={**AUTH, **ND}, content=ndjson([line, line])).json()["accepted"] == 2
    assert client.post("/v1/engine", headers={**AUTH, **J}, content=line).status_code == 202
    assert [it.pos for it in core.items] == [0, 1, 0]


def test_engine_without_partner_ids_is_422(client: TestClient, core: FakeCore) -> None:
    r = client.post("/v1/engine", headers=AUTH, json={"partnerAudienceId": "2582431", "audienceVariables": {}})
    assert r.status_code == 422
    [rejection] = r.json()["rejected"]
    assert rejection["index"] == 0 and "partnerIds" in rejection["reason"]
    assert core.calls == []


# --- copernica ------------------------------------------------------------------------------


def test_copernica_with_query_token(client: TestClient, core: FakeCore) -> None:
    legacy = {"id": 12, "action": "update", "fields": {"email": "a@x.nl"}, "interests": []}
    r = client.post(f"/v1/copernica/WelcomeFlow?token={OTHER}", json=[legacy, "x"])
    assert (r.status_code, r.json()["accepted"]) == (202, 1)
    assert r.json()["rejected"] == [{"index": 1, "reason": "record 1 is not a JSON object"}]
    assert core.items[0].record["email"] == "a@x.nl" and core.items[0].record["status"] == "MODIFIED"


def test_copernica_form(client: TestClient, core: FakeCore) -> None:
    form = {"type": "update", "action": "create", "profile": "12", "fields[email]": "a@x.nl"}
    r = client.post(f"/v1/copernica/WelcomeFlow?token={RELAY}", data=form)
    assert r.status_code == 202
    assert core.items[0].segment == "WelcomeFlow" and core.items[0].record["email"] == "a@x.nl"


def test_copernica_record_refused_is_422(client: TestClient) -> None:
    r = client.post(f"/v1/copernica/WelcomeFlow?token={RELAY}", json={"action": "create", "fields": {}})
    assert r.status_code == 422 and r.json()["rejected"][0]["index"] == 0


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """verify() stood in for: records its arguments; refuses a body that says "tampered"."""
    seen: list[tuple[Any, ...]] = []

    def verify(method: str, target: str, headers: Mapping[str, str], body: bytes, keys: Any, skew: float) -> None:
        seen.append((method, target, headers.get("x-copernica-id"), body, keys, skew))
        if b"tampered" in body:
            raise SignatureError("the Digest does not match the body")

    monkeypatch.setattr(relay_app, "verify", verify)
    return seen


def test_copernica_signed(signed: list[tuple[Any, ...]]) -> None:
    core = make_core(verify=True, keys="the keys")
    body = b'{"action": "create", "fields": {"email": "a@x.nl"}}'
    r = TestClient(build_app(core)).post(
        "/v1/copernica/WelcomeFlow?a=1&b=%2F", headers={**J, "X-Copernica-ID": "7"}, content=body
    )
    assert r.status_code == 202
    assert signed == [("POST", "/v1/copernica/WelcomeFlow?a=1&b=%2F", "7", body, "the keys", 300.0)]


def test_copernica_bad_signature_is_401_with_the_reason(signed: list[tuple[Any, ...]]) -> None:
    core = make_core(verify=True)
    client = TestClient(build_app(core))
    r = client.post("/v1/copernica/Nope", headers=J, content=b'{"tampered": 1}')
    assert (r.status_code, r.json()) == (401, {"error": "the Digest does not match the body"})
    r = client.post(f"/v1/copernica/WelcomeFlow?token={RELAY}", headers=J, content=b'{"tampered": 1}')
    assert r.status_code == 401  # with verify on, a token is no way around the signature
    assert core.calls == []


# --- health, status, metrics, flush ------------------------------------------------------------


def test_healthz(client: TestClient, core: FakeCore) -> None:
    r = client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert "canopycli_relay_healthy 1.0" in core.metrics.exposition().decode()
    core.unhealthy = "Deployteq rejected the credentials of connector main (401)"
    r = client.get("/healthz")
    assert (r.status_code, r.json()) == (503, {"status": "unhealthy", "reason": core.unhealthy})
    assert "canopycli_relay_healthy 0.0" in core.metrics.exposition().decode()


def test_status(client: TestClient) -> None:
    r = client.get("/v1/status", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["segments"]["WelcomeFlow"] == {"queued": 3, "oldest_age_s": 1.5}


def test_metrics(client: TestClient) -> None:
    client.post(PROFILES, headers=AUTH, json={"email": "a@x.nl"})
    client.post("/v1/segments/Nope/profiles", headers=AUTH, json={})
    client.get(f"/v1/missing?token={RELAY}")
    r = client.get("/metrics", headers=AUTH)
    assert (r.status_code, r.headers["content-type"]) == (200, CONTENT_TYPE)
    text = r.text
    assert 'canopycli_relay_http_requests_total{route="/v1/segments/{segment}/profiles",status="202"} 1.0' in text
    assert 'canopycli_relay_http_requests_total{route="/v1/segments/{segment}/profiles",status="404"} 1.0' in text
    assert 'canopycli_relay_http_requests_total{route="unmatched",status="404"} 1.0' in text
    assert 'canopycli_relay_http_request_seconds_count{route="/v1/segments/{segment}/profiles"} 2.0' in text
    assert "Nope" not in text and "missing" not in text
    assert not any(t in text for t in TOKENS)


@pytest.mark.parametrize(
    ("query", "flushed", "names"), [("", None, ["Churn", "WelcomeFlow"]), ("?segment=Churn", "Churn", ["Churn"])]
)
def test_flush(client: TestClient, core: FakeCore, query: str, flushed: str | None, names: list[str]) -> None:
    r = client.post(f"/v1/flush{query}", headers=AUTH)
    assert (r.status_code, r.json()) == (202, {"flushing": names})
    assert core.flushed == [flushed]


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
def test_too_many_records_in_one_request_is_413_and_nothing_is_queued(
    client: TestClient, core: FakeCore, content_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from canopycli.relay import app

    monkeypatch.setattr(app, "MAX_RECORDS", 5)
    body = b"[" + b",".join([b"{}"] * 6) + b"]" if content_type == "application/json" else b"{}\n" * 6
    r = client.post(PROFILES, content=body, headers={**AUTH, "Content-Type": content_type})
    assert r.status_code == 413 and "more than 5 records in one request" in r.json()["error"]
    assert core.items == []
    ok = b"[" + b",".join([b'{"email": "a@x.nl"}'] * 5) + b"]"
    assert client.post(PROFILES, content=ok, headers={**AUTH, "Content-Type": "application/json"}).status_code == 202


# --- engagements ---------------------------------------------------------------------------

ENGAGEMENTS = "/v1/engagements"
OPEN = {"type": "Email Open", "timestamp": "2026-11-20T10:00:00Z", "email": "Someone@Example.com ",
        "campaignId": "42", "uuid": "e-1"}  # fmt: skip


def test_engagements_are_stored_with_the_address_only_as_its_hash(client: TestClient, core: FakeCore) -> None:
    click = {"type": "email click", "timestamp": "2026-11-20T11:00:00+01:00", "customerId": "c7",
             "linkHref": "https://example.com/a", "uuid": "e-2"}  # fmt: skip
    r = client.post(ENGAGEMENTS, json=[OPEN, click, {"type": "Email Fax"}, "nope"], headers=AUTH)
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 2
    assert [x["index"] for x in body["rejected"]] == [2, 3]
    stored = core.recorded[0]
    assert [(e.uuid, e.metric, e.day, e.source) for e in stored] == [
        ("e-1", "opens", "2026-11-20", "relay"),
        ("e-2", "clicks", "2026-11-20", "relay"),
    ]
    assert stored[0].email_sha256 == hashlib.sha256(b"someone@example.com").hexdigest()
    assert stored[1].external_id == "c7" and stored[1].link == "https://example.com/a"
    assert "someone@example.com" not in r.text.lower()


def test_engagements_answer_like_the_other_routes(client: TestClient, core: FakeCore) -> None:
    assert client.post(ENGAGEMENTS, json=[OPEN]).status_code == 401
    assert client.post(ENGAGEMENTS, content=b"x", headers={**AUTH, "content-type": "text/plain"}).status_code == 415
    assert (
        client.post(ENGAGEMENTS, content=b"{", headers={**AUTH, "content-type": "application/json"}).status_code == 400
    )
    r = client.post(ENGAGEMENTS, json=[{"type": "Email Open"}], headers=AUTH)  # no timestamp
    assert r.status_code == 422 and r.json()["accepted"] == 0
    ndjson = b"\n".join(orjson.dumps({**OPEN, "uuid": f"n{i}"}) for i in range(3))
    r = client.post(ENGAGEMENTS, content=ndjson, headers={**AUTH, "content-type": "application/x-ndjson"})
    assert r.status_code == 202 and r.json() == {"accepted": 3, "rejected": []}
    core.failure = DiskFullError("the disk is full")
    r = client.post(ENGAGEMENTS, json=[OPEN], headers=AUTH)
    assert r.status_code == 503 and "send again" in r.json()["error"]
    core.failure, core.accepting = None, False
    assert client.post(ENGAGEMENTS, json=[OPEN], headers=AUTH).status_code == 503
