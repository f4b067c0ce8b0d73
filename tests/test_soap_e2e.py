"""End to end over SOAP: the real CLI against the sandbox's SOAP emulator on loopback."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from canopycli.emulators.webhook import Sandbox

from .conftest import TOKEN, run_cli, tree_has_token

pytestmark = pytest.mark.timeout(120)


def soap_config(path: Path, sb: Sandbox, identifier: str = "customer_id", **conn: Any) -> Path:
    id_column = "customer_id" if identifier == "customer_id" else "email"
    cfg = {
        "connectors": {
            "realtime": {"api": "soap", "soap_url": sb.soap_url, "token": "${CANOPY_TOKEN}",
                         "identifier": identifier, "backoff": 0.01, **conn},
        },
        "segments": {
            "PasswordReset": {"connector": "realtime", "campaign": "Password reset", "id_column": id_column,
                              "params": [{"name": "firstname", "column": "first_name"},
                                         {"name": "gender", "type": "gender"},
                                         {"name": "plan"}]},
        },
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def rows(n: int, start: int = 0, status: str = "NEW") -> list[dict[str, Any]]:
    return [
        {"customer_id": f"c{i}", "first_name": f"Name{i}", "gender": "f", "plan": "gold", "status": status}
        for i in range(start, start + n)
    ]


def campaign(sb: Sandbox, name: str) -> dict[str, Any]:
    return next(c for c in sb.soap.snapshot()["campaigns"] if c["name"] == name)


def test_campaigns_lists_the_emulators_campaigns(tmp_path: Path, sandbox: Callable[..., Sandbox]) -> None:
    sb = sandbox(campaigns="Password reset,Newsletter")
    cfg = soap_config(tmp_path / "c.yaml", sb)
    p = run_cli("campaigns", "-c", str(cfg), "--json")
    assert p.returncode == 0, p.stderr
    assert [c["name"] for c in json.loads(p.stdout)] == ["Password reset", "Newsletter"]
    assert TOKEN not in p.stdout + p.stderr


def test_a_mixed_push_leaves_membership_and_options_as_expected_and_a_repeat_costs_two_calls(
    tmp_path: Path, sandbox: Callable[..., Sandbox]
) -> None:
    sb = sandbox(campaigns="Password reset,Newsletter")
    reset = campaign(sb, "Password reset")["id"]
    members_before = [sb.soap.add_customer(external_id=f"c{i}", campaigns=[reset]) for i in range(100, 110)]
    for i in range(10):
        sb.soap.add_customer(external_id=f"c{i}", fields={"firstname": "Old"})
    data = rows(90) + rows(5, 100, "MODIFIED") + rows(10, 110, "MODIFIED")
    data += rows(5, 105, "REMOVED") + rows(10, 500, "REMOVED")
    assert len(data) == 120
    cfg = soap_config(tmp_path / "c.yaml", sb)
    report = tmp_path / "r.json"
    p = run_cli("push", str(write_rows(tmp_path / "in.csv", data)), "-c", str(cfg), "--report-json", str(report))
    assert p.returncode == 0, p.stderr
    r = json.loads(report.read_text())
    assert r["profiles_delivered"] == 120 and r["profiles_not_found"] == 10 and r["faults"] == {}
    members = set(campaign(sb, "Password reset")["members"])
    by_ext = {c["externalId"]: int(cid) for cid, c in sb.soap.snapshot()["customers"].items()}
    assert len(by_ext) == 10 + 10 + 80 + 10  # existing, plus 80 NEW and 10 MODIFIED inserted
    assert members == {by_ext[f"c{i}"] for i in range(90)} | set(members_before[:5])
    assert not {by_ext[f"c{i}"] for i in range(110, 120)} & members  # MODIFIED of unknown ones: no campaign
    c3 = sb.soap.snapshot()["customers"][by_ext["c3"]]
    assert c3["fields"]["firstname"] == "Name3" and c3["fields"]["gender"] == "WOMAN"
    assert c3["options"] == {"plan": "gold"}
    assert r["calls"] <= 3 * 120 + 1
    # the same NEW profiles again: remembered ids, update + addMember (107) only
    again = tmp_path / "again.json"
    p = run_cli("push", str(write_rows(tmp_path / "new.csv", rows(80))), "-c", str(cfg), "--report-json", str(again))
    assert p.returncode == 0, p.stderr
    assert json.loads(again.read_text())["calls"] <= 2 * 80 + 1  # + the campaign lookup, if not cached
    assert not tree_has_token(tmp_path)


def test_faults_fail_only_those_profiles_and_retry_resends_only_them(
    tmp_path: Path, sandbox: Callable[..., Sandbox]
) -> None:
    sb = sandbox()
    sb.soap.fail_customers(external_ids={"c3", "c7"}, code=500, text="Internal trouble", times=1)
    cfg = soap_config(tmp_path / "c.yaml", sb)
    rejects = tmp_path / "rej.csv"
    report = tmp_path / "r.json"
    src = write_rows(tmp_path / "in.csv", rows(20))
    p = run_cli("push", str(src), "-c", str(cfg), "--report-json", str(report), "--rejects", str(rejects))
    assert p.returncode == 1, p.stderr
    r = json.loads(report.read_text())
    assert r["profiles_failed"] == 2 and r["faults"] == {"500": 2} and r["profiles_delivered"] == 18
    assert "fault 500" in rejects.read_text()
    calls_before = sum(sb.soap.snapshot()["calls"].values())
    p = run_cli("retry", r["run_id"], "-c", str(cfg), "--report-json", str(tmp_path / "retry.json"))
    assert p.returncode == 0, p.stderr
    assert sum(sb.soap.snapshot()["calls"].values()) - calls_before <= 2 * 3 + 1
    members = set(campaign(sb, "Password reset")["members"])
    assert len(members) == 20


def test_a_rejected_token_is_exit_4_before_anything_is_sent(tmp_path: Path, sandbox: Callable[..., Sandbox]) -> None:
    sb = sandbox(token="another-token-0123456789")
    cfg = soap_config(tmp_path / "c.yaml", sb)
    p = run_cli("push", str(write_rows(tmp_path / "in.csv", rows(3))), "-c", str(cfg))
    assert p.returncode == 4, p.stderr
    assert "Traceback" not in p.stderr and TOKEN not in p.stderr + p.stdout


def test_an_unknown_campaign_is_exit_2_with_close_matches(tmp_path: Path, sandbox: Callable[..., Sandbox]) -> None:
    sb = sandbox(campaigns="Password reset,Newsletter")
    cfg = soap_config(tmp_path / "c.yaml", sb)
    cfg.write_text(cfg.read_text().replace("campaign: Password reset", "campaign: Pasword reset"))
    p = run_cli("push", str(write_rows(tmp_path / "in.csv", rows(3))), "-c", str(cfg))
    assert p.returncode == 2, p.stderr
    assert "Password reset" in p.stderr
    assert sb.soap.snapshot()["calls"].get("customer_getByExternalId", 0) == 0


def test_identifier_email_sends_the_address_and_keeps_only_its_hash(
    tmp_path: Path, sandbox: Callable[..., Sandbox]
) -> None:
    sb = sandbox()
    cfg = soap_config(tmp_path / "c.yaml", sb, identifier="email")
    data = [{"email": f" User{i}@Example.com", "first_name": "X", "gender": "m", "plan": "p", "status": "NEW"}
            for i in range(5)] + [{"email": "broken", "first_name": "X", "gender": "m", "plan": "p", "status": "NEW"}]  # fmt: skip
    rejects = tmp_path / "rej.csv"
    p = run_cli("push", str(write_rows(tmp_path / "in.csv", data)), "-c", str(cfg), "--rejects", str(rejects),
                "--report-json", str(tmp_path / "r.json"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    addresses = {c["emailAddress"] for c in sb.soap.snapshot()["customers"].values()}
    assert addresses == {f"user{i}@example.com" for i in range(5)}
    for f in [*(tmp_path / "state").rglob("*"), tmp_path / "r.json"]:
        if f.is_file():
            assert b"user1@example.com" not in f.read_bytes().lower()
    assert "broken" not in rejects.read_text()


def test_a_token_rejected_mid_run_is_exit_4_and_retry_finishes(tmp_path: Path, sandbox: Callable[..., Sandbox]) -> None:
    sb = sandbox()
    cfg = soap_config(tmp_path / "c.yaml", sb, concurrency=1)
    src = write_rows(tmp_path / "in.csv", rows(10))
    assert run_cli("campaigns", "-c", str(cfg)).returncode == 0  # the campaign list is cached now
    sb.soap.token = "changed-token-000000000000"  # Deployteq now refuses the token
    report = tmp_path / "r.json"
    p = run_cli("push", str(src), "-c", str(cfg), "--report-json", str(report))
    assert p.returncode == 4, p.stderr
    r = json.loads(report.read_text())
    assert r["profiles_delivered"] == 0 and r["profiles_failed"] + r["profiles_not_sent"] == 10
    sb.soap.token = TOKEN
    p = run_cli("retry", r["run_id"], "-c", str(cfg))
    assert p.returncode == 0, p.stderr
    assert len(campaign(sb, "Password reset")["members"]) == 10


def test_a_broken_reply_fails_that_profile_with_the_reason(tmp_path: Path, sandbox: Callable[..., Sandbox]) -> None:
    sb = sandbox()
    cfg = soap_config(tmp_path / "c.yaml", sb, concurrency=1, retries=0)
    assert run_cli("campaigns", "-c", str(cfg)).returncode == 0
    sb.soap.bad_replies("html", 1)
    report = tmp_path / "r.json"
    p = run_cli("push", str(write_rows(tmp_path / "in.csv", rows(3))), "-c", str(cfg), "--report-json", str(report))
    assert p.returncode == 1, p.stderr
    r = json.loads(report.read_text())
    assert r["profiles_failed"] == 1 and r["profiles_delivered"] == 2
    assert "Traceback" not in p.stderr


def test_a_relay_event_for_a_soap_segment_arrives_within_a_second(
    tmp_path: Path, sandbox: Callable[..., Sandbox]
) -> None:
    import time

    from .relay_harness import Relay

    sb = sandbox()
    cfg = soap_config(tmp_path / "c.yaml", sb)
    data = yaml.safe_load(cfg.read_text())
    data["relay"] = {"tokens": ["relay-SECRET-5d4c3b2a1f0e9d8c7b6a"], "flush_interval": "20m"}
    cfg.write_text(yaml.safe_dump(data))
    relay = Relay(cfg, tmp_path / "state")
    try:
        reset = campaign(sb, "Password reset")["id"]
        posted = time.monotonic()
        r = relay.post("/v1/segments/PasswordReset/profiles", {"customer_id": "c42", "first_name": "Ada"})
        assert r.status_code == 202, r.text
        relay.wait_until(lambda: len(sb.soap.members(reset)) == 1, timeout=10)
        assert time.monotonic() - posted < 1.0
    finally:
        assert relay.stop() == 0


def test_demo_soap_shows_the_whole_path(tmp_path: Path) -> None:
    p = run_cli("demo", "--soap")
    assert p.returncode == 0, p.stderr
    assert "now has 99 members" in p.stdout and "Accepted by Deployteq" in p.stdout


def test_sync_over_soap_sends_only_changes_per_profile(tmp_path: Path, sandbox: Callable[..., Sandbox]) -> None:
    sb = sandbox()
    cfg = soap_config(tmp_path / "c.yaml", sb)
    snap = [{k: v for k, v in r.items() if k != "status"} for r in rows(10)]
    assert run_cli("sync", str(write_rows(tmp_path / "s1.csv", snap)), "-c", str(cfg)).returncode == 0
    changed = snap[:8]
    changed[0] = {**changed[0], "first_name": "Renamed"}
    report = tmp_path / "r.json"
    p = run_cli("sync", str(write_rows(tmp_path / "s2.csv", changed)), "-c", str(cfg), "--report-json", str(report))
    assert p.returncode == 0, p.stderr
    r = json.loads(report.read_text())
    assert (r["profiles_unchanged"], r["profiles_delivered"], r["removals_delivered"]) == (7, 1, 2)
    assert len(campaign(sb, "Password reset")["members"]) == 8


def test_retry_of_an_email_run_rebuilds_the_profiles_from_the_file(
    tmp_path: Path, sandbox: Callable[..., Sandbox]
) -> None:
    sb = sandbox()
    sb.soap.fail_customers(email_addresses={"user2@example.com"}, code=500, text="trouble", times=1)
    cfg = soap_config(tmp_path / "c.yaml", sb, identifier="email")
    data = [{"email": f"user{i}@example.com", "first_name": "X", "gender": "m", "plan": "p", "status": "NEW"}
            for i in range(5)]  # fmt: skip
    report = tmp_path / "r.json"
    p = run_cli("push", str(write_rows(tmp_path / "in.csv", data)), "-c", str(cfg), "--report-json", str(report))
    assert p.returncode == 1, p.stderr
    run_id = json.loads(report.read_text())["run_id"]
    p = run_cli("retry", run_id, "-c", str(cfg))
    assert p.returncode == 0, p.stderr
    assert len(campaign(sb, "Password reset")["members"]) == 5
    p = run_cli("push", "-", "--format", "csv", "-c", str(cfg), input=(tmp_path / "in.csv").read_bytes())
    assert p.returncode == 0, p.stderr
