"""The generic loopback server under the sandbox: routes, the API-call steps and the faults,
with a trivial emulated API (proof that the next emulators are new routes on it)."""

from __future__ import annotations

import time

import httpx
import pytest

from canopycli.emulators.server import Faults, LoopbackServer, Request, Response
from canopycli.errors import UsageError


def echo_api(server: LoopbackServer) -> None:
    """A toy API: POST /api/echo/... needs a key header, allows 3 calls in all, echoes the body."""
    quota = {"left": 3}

    def check(req: Request) -> Response | None:
        if req.headers.get("X-Key") != "k":
            return Response(401, {"error": "no key"})
        req.note["text"] = req.body.decode()
        return None

    def admit(req: Request) -> Response | None:
        quota["left"] -= 1
        return Response(429, {"error": "quota"}) if quota["left"] < 0 else None

    def respond(req: Request) -> Response:
        return Response(200, {"echo": req.note["text"], "path": req.path, "query": req.query})

    server.api("POST", "/api/echo/", respond, check=check, admit=admit, prefix=True)


def test_plain_routes_and_not_found() -> None:
    with LoopbackServer() as server:
        server.route("GET", "/ping", lambda _: Response(200, {"pong": True}))
        server.route("GET", "/a/", lambda r: Response(200, {"short": r.path}), prefix=True)
        server.route("GET", "/a/b/", lambda r: Response(200, {"long": r.path}), prefix=True)
        with httpx.Client(base_url=server.base_url) as c:
            assert c.get("/ping").json() == {"pong": True}
            assert c.get("/a/x").json() == {"short": "/a/x"}
            assert c.get("/a/b/x?q=1").json() == {"long": "/a/b/x"}  # the longest prefix wins
            r = c.post("/ping", content=b"x")  # routes are per method
            assert r.status_code == 404 and r.json() == {"error": "not found"}
            assert c.get("/nope").status_code == 404
        assert server.stats == {"requests": 0, "faults": 0, "dropped": 0, "slow": 0}  # plain routes are not counted


def test_an_api_call_is_checked_counted_admitted_and_fails_on_purpose() -> None:
    server = LoopbackServer(
        faults=Faults(fail_first=1, fail_requests=frozenset({3})),
        counters=("calls", "requests"),
        headers=lambda: {"X-Requests": str(server.stats["requests"])},
        name="toy",
    )
    echo_api(server)
    with server, httpx.Client(base_url=server.base_url, headers={"X-Key": "k"}) as c:
        assert c.post("/api/echo/1", content=b"hi", headers={"X-Key": "bad"}).status_code == 401  # not counted
        first = c.post("/api/echo/1", content=b"hi")
        assert (first.status_code, first.json()) == (500, {"error": "injected failure"})
        ok = c.post("/api/echo/2?x=1", content=b"hi")
        assert ok.json() == {"echo": "hi", "path": "/api/echo/2", "query": "x=1"}
        assert ok.headers["X-Requests"] == "2" and ok.headers["Server"].startswith("canopycli-toy")
        assert c.post("/api/echo/3", content=b"hi").status_code == 500  # fail_requests
        assert c.post("/api/echo/4", content=b"hi").status_code == 429  # admit: past the quota, no fault drawn
    assert list(server.stats) == ["calls", "requests", "faults", "dropped", "slow"]
    assert server.stats == {"calls": 0, "requests": 4, "faults": 2, "dropped": 0, "slow": 0}


def test_drops_and_seeded_draws_are_reproducible() -> None:
    def statuses(seed: int) -> list[int | str]:
        with LoopbackServer(faults=Faults(fail_rate=0.3, drop_rate=0.3), seed=seed) as server:
            server.api("POST", "/x", lambda _: Response(200, {}))
            got: list[int | str] = []
            for _ in range(20):
                with httpx.Client(base_url=server.base_url) as c:  # a dropped connection is not reused
                    try:
                        got.append(c.post("/x").status_code)
                    except httpx.TransportError:
                        got.append("dropped")
            assert server.stats["dropped"] == got.count("dropped") > 0
            assert server.stats["faults"] == got.count(500) > 0
            return got

    assert statuses(7) == statuses(7)


def test_slow_answers_success_late_and_refusals_at_once() -> None:
    with LoopbackServer(faults=Faults(slow_rate=1.0, slow_seconds=0.3)) as server:
        server.api("POST", "/ok", lambda _: Response(200, {}))
        server.api("POST", "/bad", lambda _: Response(400, {"error": "bad"}))
        with httpx.Client(base_url=server.base_url) as c:
            t = time.monotonic()
            assert c.post("/bad").status_code == 400
            assert time.monotonic() - t < 0.25
            assert c.post("/ok").status_code == 200
            assert time.monotonic() - t >= 0.3
        assert server.stats["slow"] == 2


def test_serve_returns_at_max_requests_or_after_the_duration() -> None:
    server = LoopbackServer(max_requests=2)
    server.api("POST", "/x", lambda _: Response(200, {}))
    server.start()
    try:
        with httpx.Client(base_url=server.base_url) as c:
            c.post("/x")
            c.post("/x")
        t = time.monotonic()
        server.serve(duration=10)  # the second request stopped it
        assert time.monotonic() - t < 5
    finally:
        server.stop()
        server.stop()  # twice is fine

    idle = LoopbackServer()
    t = time.monotonic()
    idle.serve(duration=0.3)  # starts it, returns after the duration
    assert 0.3 <= time.monotonic() - t < 5
    idle.stop()
    LoopbackServer().stop()  # never started: stop does not wait for it


def test_loopback_only() -> None:
    with pytest.raises(UsageError, match="the toy binds to loopback only"):
        LoopbackServer(host="0.0.0.0", name="toy")
