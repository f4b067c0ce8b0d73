"""End to end: the real ``canopycli relay`` in a subprocess against the sandbox on loopback."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from canopycli.emulators.webhook import Sandbox

from .conftest import TOKEN, run_cli
from .relay_harness import RELAY_TOKEN, Relay, profiles, recorded, relay_config

pytestmark = pytest.mark.timeout(120)


def sha(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


@pytest.fixture
def world(tmp_path: Path, sandbox: Callable[..., Sandbox]) -> dict[str, Any]:
    rec = tmp_path / "received.jsonl"
    sb = sandbox(record=rec)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "copernica.pem").write_bytes(pem)
    cfg = relay_config(
        tmp_path / "relay.yaml", sb.endpoint, TOKEN, copernica={"public_key_file": "copernica.pem", "max_skew": "5m"}
    )
    return {"sb": sb, "rec": rec, "cfg": cfg, "state": tmp_path / "state", "key": key, "tmp": tmp_path}


def test_1234_events_leave_as_two_full_batches_at_once_and_the_rest_on_the_clock(world: dict[str, Any]) -> None:
    cfg = relay_config(world["tmp"] / "five.yaml", world["sb"].endpoint, TOKEN, flush_interval="5s")
    relay = Relay(cfg, world["state"])
    try:
        posted = time.monotonic()
        for start in range(0, 1234, 100):
            r = relay.post("/v1/segments/WelcomeFlow/profiles", profiles(min(100, 1234 - start), start))
            assert r.status_code == 202, r.text
            assert r.json()["rejected"] == []
        relay.wait_until(lambda: world["sb"].snapshot()["profiles"] >= 1000, timeout=10)
        full_at = time.monotonic() - posted
        assert world["sb"].snapshot()["profiles"] == 1000  # the 234 wait for flush_interval (5 s)
        relay.wait_until(lambda: world["sb"].snapshot()["profiles"] == 1234, timeout=20)
        sizes = [len(json.loads(line)["campaigns"][0]["customers"]) for line in world["rec"].read_text().splitlines()]
        assert sorted(sizes) == [234, 500, 500]
        assert full_at < 3.0  # at once: long before the 5 s interval
        relay.wait_until(lambda: relay.status()["WelcomeFlow"]["queued"] == 0)  # the ack is recorded
        status = relay.status()["WelcomeFlow"]
        assert status["queued"] == 0 and status["last_error"] is None and status["requests_today"] == 3
    finally:
        assert relay.stop() == 0
    got = {c["customerId"] for c in recorded(world["rec"])}
    assert got == {sha(f"user{i}@example.com") for i in range(1234)}


def test_engine_payloads_and_copernica_callbacks_arrive_with_their_statuses(world: dict[str, Any]) -> None:
    from canopycli.relay.signature import sign

    relay = Relay(world["cfg"], world["state"])
    try:
        engine = [
            {"partnerAudienceId": "2582431", "partnerIds": ["a@example.com", "b@example.com"],
             "audienceVariables": {"TestVar": "x"}, "data": {"Custom": "y"}},
            {"partnerAudienceId": 2582431, "partnerIds": ["c@example.com"], "r42Status": "REMOVED"},
            {"partnerAudienceId": "999", "partnerIds": ["d@example.com"]},
            {"partnerAudienceId": "2582431"},
        ]  # fmt: skip
        r = relay.post("/v1/engine", engine)
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 3 and [x["index"] for x in r.json()["rejected"]] == [2, 3]
        r = relay.post("/v1/engine?status=MODIFIED", {"partnerAudienceId": "2582431", "partnerIds": ["e@example.com"]})
        assert r.status_code == 202

        def copernica(body: bytes, ctype: str) -> int:
            path = "/v1/copernica/Copernica"
            host = relay.url.removeprefix("http://")
            headers = sign("POST", path, {"Host": host, "Content-Type": ctype}, body, world["key"])
            return relay.client.post(path, content=body, headers={**headers, "Authorization": ""}).status_code

        legacy = {"id": "1", "action": "create", "fields": {"email": "f@example.com", "city": "Delft"}}
        assert copernica(json.dumps(legacy).encode(), "application/json") == 202
        form = urllib.parse.urlencode({"type": "update", "profile": "2", "fields[email]": "g@example.com"}).encode()
        assert copernica(form, "application/x-www-form-urlencoded") == 202
        form = urllib.parse.urlencode({"type": "delete", "profile": "3", "fields[email]": "h@example.com"}).encode()
        assert copernica(form, "application/x-www-form-urlencoded") == 202
        assert relay.post("/v1/flush").status_code == 202
        relay.wait_until(lambda: world["sb"].snapshot()["profiles"] == 7)
    finally:
        assert relay.stop() == 0
    by_id = {c["customerId"]: (c["segmentName"], c["r42Status"]) for c in recorded(world["rec"])}
    assert by_id == {
        sha("a@example.com"): ("Engine", "NEW"), sha("b@example.com"): ("Engine", "NEW"),
        sha("c@example.com"): ("Engine", "REMOVED"), sha("e@example.com"): ("Engine", "MODIFIED"),
        sha("f@example.com"): ("CopernicaSync", "NEW"), sha("g@example.com"): ("CopernicaSync", "MODIFIED"),
        sha("h@example.com"): ("CopernicaSync", "REMOVED"),
    }  # fmt: skip


def test_an_echoed_unchanged_event_sends_nothing(world: dict[str, Any]) -> None:
    relay = Relay(world["cfg"], world["state"])
    try:
        one = profiles(1, 7, city="Delft")
        assert relay.post("/v1/segments/WelcomeFlow/profiles", one).status_code == 202
        relay.post("/v1/flush?segment=WelcomeFlow")
        relay.wait_until(lambda: world["sb"].snapshot()["accepted"] == 1)
        echo = [{**one[0], "status": "MODIFIED"}]
        assert relay.post("/v1/segments/WelcomeFlow/profiles", echo).status_code == 202
        assert relay.post("/v1/flush?segment=WelcomeFlow").status_code == 202
        relay.wait_until(lambda: relay.status()["WelcomeFlow"]["queued"] == 0)
        time.sleep(0.3)
        assert world["sb"].snapshot()["requests"] == 1
        metrics = relay.client.get("/metrics").text
        assert 'canopycli_relay_events_total{outcome="suppressed",segment="WelcomeFlow"} 1.0' in metrics
    finally:
        assert relay.stop() == 0


def test_kill_9_under_load_then_restart_loses_nothing_and_sends_nothing_twice(world: dict[str, Any]) -> None:
    relay = Relay(world["cfg"], world["state"])
    acked: list[int] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        import httpx

        with httpx.Client(base_url=relay.url, headers={"Authorization": f"Bearer {RELAY_TOKEN}"}, timeout=10) as c:
            n = worker * 1_000_000
            while not stop.is_set():
                batch = profiles(50, n)
                try:
                    r = c.post("/v1/segments/WelcomeFlow/profiles", json=batch)
                except httpx.HTTPError:
                    return  # the relay died under us: those 50 were never answered 202
                if r.status_code == 202:
                    acked.extend(range(n, n + 50))
                n += 50

    workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    time.sleep(1.5)
    relay.kill()
    stop.set()
    for w in workers:
        w.join(15)
    assert len(acked) >= 500
    again = Relay(world["cfg"], world["state"])
    try:
        again.post("/v1/flush")
        again.wait_until(lambda: again.status()["WelcomeFlow"]["queued"] == 0, timeout=60)
    finally:
        assert again.stop() == 0
    uuids: dict[str, set[str]] = defaultdict(set)
    for c in recorded(world["rec"]):
        uuids[c["customerId"]].add(c["uuid"])
    assert {sha(f"user{i}@example.com") for i in acked} <= set(uuids)
    assert all(len(u) == 1 for u in uuids.values())  # never under two uuids


def test_sigterm_keeps_partial_batches_queued_and_drain_sends_them(world: dict[str, Any]) -> None:
    cfg = relay_config(world["tmp"] / "slow.yaml", world["sb"].endpoint, TOKEN, flush_interval="1h")
    relay = Relay(cfg, world["state"])
    assert relay.post("/v1/segments/WelcomeFlow/profiles", profiles(10)).status_code == 202
    assert relay.stop() == 0
    assert world["sb"].snapshot()["requests"] == 0
    assert json.loads(relay.stdout)["segments"]["WelcomeFlow"]["queued"] == 10
    relay = Relay(cfg, world["state"], "--drain")
    assert relay.status()["WelcomeFlow"]["queued"] == 10  # picked up again on start
    assert relay.stop() == 0
    assert world["sb"].snapshot()["profiles"] == 10


def test_no_secret_or_address_in_logs_status_metrics_queue_or_journal(world: dict[str, Any]) -> None:
    relay = Relay(world["cfg"], world["state"])
    try:
        relay.post("/v1/segments/WelcomeFlow/profiles", profiles(5) + [{"email": "not-an-address"}])
        relay.client.post("/v1/segments/WelcomeFlow/profiles", json=profiles(1), headers={"Authorization": "Bearer x"})
        relay.post("/v1/flush")
        relay.wait_until(lambda: world["sb"].snapshot()["profiles"] == 5)
        texts = [relay.client.get("/v1/status").text, relay.client.get("/metrics").text,
                 relay.client.get("/healthz").text]  # fmt: skip
    finally:
        assert relay.stop() == 0
    texts += [relay.stderr, relay.stdout]
    db = sqlite3.connect(world["state"] / "journal.sqlite3")
    texts += [repr(row) for t in ("runs", "batches", "queue") for row in db.execute(f"SELECT * FROM {t}")]
    db.close()
    blob = "\n".join(texts) + "".join(
        p.read_bytes().decode(errors="replace") for p in world["state"].rglob("*") if p.is_file()
    )
    for secret in (TOKEN, RELAY_TOKEN, "user0@example.com", "not-an-address"):
        assert secret not in blob


def test_engagements_posted_to_the_relay_are_stored_and_hold_back_a_suppressing_segment(
    world: dict[str, Any],
) -> None:
    cfg = yaml.safe_load(world["cfg"].read_text())
    cfg["segments"]["WelcomeFlow"]["suppress"] = ["bounce", "complaint"]
    world["cfg"].write_text(yaml.safe_dump(cfg))
    relay = Relay(world["cfg"], world["state"])
    try:
        events = [
            {"type": "Email Bounce", "timestamp": "2026-11-20T10:00:00Z", "email": "user1@example.com",
             "bounceType": "hard", "campaignId": "42"},
            {"type": "Email Bounce", "timestamp": "2026-11-20T10:00:00Z", "email": "user2@example.com",
             "bounceType": "soft", "campaignId": "42"},
            {"type": "Email Complaint", "timestamp": "2026-11-20T11:00:00Z", "email": "USER3@example.com "},
            {"type": "Email Open", "timestamp": "2026-11-20T11:00:00Z", "email": "user4@example.com"},
            {"type": "Email Fax", "timestamp": "2026-11-20T11:00:00Z"},
        ]  # fmt: skip
        r = relay.post("/v1/engagements", events)
        assert r.status_code == 202 and r.json()["accepted"] == 4, r.text
        assert [x["index"] for x in r.json()["rejected"]] == [4]
        assert relay.post("/v1/engagements", events[:4]).json()["accepted"] == 4  # posted twice: stored once
        assert relay.post("/v1/segments/WelcomeFlow/profiles", profiles(6)).status_code == 202
        relay.post("/v1/flush?segment=WelcomeFlow")
        relay.wait_until(lambda: relay.status()["WelcomeFlow"]["queued"] == 0)
        relay.wait_until(lambda: world["sb"].snapshot()["profiles"] == 4)
    finally:
        assert relay.stop() == 0
    sent = {c["customerId"] for c in recorded(world["rec"])}
    assert sent == {sha(f"user{i}@example.com") for i in (0, 2, 4, 5)}  # 1 bounced hard, 3 complained
    db = sqlite3.connect(world["state"] / "journal.sqlite3")
    stored = db.execute("SELECT metric, email_sha256, source FROM engagements ORDER BY metric, email_sha256").fetchall()
    run = db.execute("SELECT rows_read, rows_suppressed FROM runs WHERE command = 'relay'").fetchone()
    db.close()
    assert len(stored) == 4 and {s[2] for s in stored} == {"relay"}
    assert (sha("user3@example.com") in {s[1] for s in stored}) and run == (6, 2)
    blob = b"".join(p.read_bytes() for p in world["state"].rglob("*") if p.is_file())
    assert b"example.com" not in blob
    p = run_cli("engagements", "report", "--since", "2026-11-01", "--until", "2026-11-30", "--json",
                "--state-dir", str(world["state"]))  # fmt: skip
    assert p.returncode == 0, p.stderr
    totals = json.loads(p.stdout)["totals"]
    assert (totals["opens"], totals["bounces"], totals["complaints"], totals["unique_profiles"]) == (1, 2, 1, 4)
