"""`push --format engine|copernica`: files of JSON Lines payloads, through the same pipeline."""

from __future__ import annotations

import csv
import hashlib
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from canopycli.emulators.webhook import Sandbox

from .conftest import report, run_cli, write_config
from .test_e2e import check_accounting, received


def two_segments(tmp_path: Path, endpoint: str) -> Path:
    """WelcomeFlow (External ID 2582431) and Winback (selected by its key), on one connector."""
    cfg = write_config(tmp_path / "c.yaml", endpoint, segment={"external_id": "2582431"})
    data = yaml.safe_load(cfg.read_text())
    data["segments"]["Winback"] = {"connector": "main", "id_column": "email"}
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg


def jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def h(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def customers(rec: Path) -> list[dict[str, Any]]:
    return [c for body in received(rec) for camp in body["campaigns"] for c in camp["customers"]]


def rejects(path: Path) -> list[tuple[str, str]]:
    with path.open() as fh:
        return [(r["line"], r["reason"]) for r in csv.DictReader(fh)]


def payload(audience: object, ids: list[str], **more: Any) -> dict[str, Any]:
    return {"siteNumber": 1, "partnerAudienceId": audience, "partnerIds": ids, "profileId": "p", **more}


def test_push_engine(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(record=tmp_path / "rec.jsonl")
    cfg = two_segments(tmp_path, sb.endpoint)
    data = jsonl(
        tmp_path / "events.jsonl",
        [
            payload("2582431", ["a@example.com", "b@example.com"], audienceVariables={"tier": "gold"}),
            payload(2582431, ["c@example.com"], r42Status="removed", data={"tier": "x"}),
            payload("Winback", ["d@example.com"]),
            payload("2582431", []),
            "not json",
            payload("2582431", ["not-an-email"], status="MODIFIED"),
            payload("9", ["e@example.com"]),
            payload("2582431", ["a@example.com"]),
        ],
    )
    rej = tmp_path / "rej.csv"
    p = run_cli(
        "push", str(data), "-c", str(cfg), "-s", "WelcomeFlow", "--format", "engine", "--status", "MODIFIED",
        "--rejects", str(rej), "--report-json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["rows_rejected"], r["rows_duplicate"], r["profiles_delivered"]) == (9, 5, 1, 3)
    check_accounting(r)
    got = {c["customerId"]: c for c in customers(tmp_path / "rec.jsonl")}
    assert set(got) == {h("a@example.com"), h("b@example.com"), h("c@example.com")}
    assert got[h("a@example.com")]["r42Status"] == "MODIFIED"  # --status: the default of payloads without one
    assert got[h("a@example.com")]["params"] == [{"name": "tier", "type": "string", "value": "gold"}]
    assert got[h("c@example.com")]["r42Status"] == "REMOVED"
    assert rejects(rej) == [
        ("3", "partnerAudienceId 'Winback' selects segment 'Winback', not 'WelcomeFlow'"),
        ("4", "partnerIds is empty: the payload names no profile"),
        ("5", "not valid JSON (invalid literal, expected 'null')"),
        ("6", "email: is not a valid email address"),
        ("7", "partnerAudienceId '9' matches no segment (set external_id: on the segment it is for)"),
        ("8", "duplicate identifier: line 1 has the same one and is the one sent"),
    ]
    for email in "abcde":
        assert f"{email}@example.com" not in p.stderr + p.stdout


def test_push_copernica(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(record=tmp_path / "rec.jsonl")
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    data = jsonl(
        tmp_path / "callbacks.jsonl",
        [
            {"id": 1, "action": "create", "fields": {"email": "a@example.com", "city": "Utrecht"}, "interests": []},
            {"id": 2, "action": "update", "fields": {"email": "b@example.com", "city": "A"}, "updated": {"city": "B"}},
            {"type": "delete", "profile": "3", "database": "1", "fields": {"email": "c@example.com"}},
            {"type": "click", "profile": "4", "fields": {"email": "d@example.com"}},
            {"action": "create", "fields": {"name": "no email"}},
        ],
    )
    rej = tmp_path / "rej.csv"
    p = run_cli(
        "push", str(data), "-c", str(cfg), "--format", "copernica", "--rejects", str(rej),
        "--report-json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["rows_rejected"], r["profiles_delivered"]) == (5, 2, 3)
    check_accounting(r)
    got = {c["customerId"]: c for c in customers(tmp_path / "rec.jsonl")}
    assert [got[h(f"{x}@example.com")]["r42Status"] for x in "abc"] == ["NEW", "MODIFIED", "REMOVED"]
    assert got[h("b@example.com")]["params"] == [{"name": "city", "type": "string", "value": "B"}]
    assert rejects(rej) == [
        ("4", "type 'click' is not a profile create, update or delete"),
        ("5", "the callback has no field 'email' (the segment's id_column)"),
    ]


def test_push_copernica_refuses_status(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9/hook")
    data = jsonl(tmp_path / "cb.jsonl", [{"action": "create", "fields": {"email": "a@example.com"}}])
    p = run_cli("push", str(data), "-c", str(cfg), "--format", "copernica", "--status", "NEW", "--dry-run")
    assert p.returncode == 2
    assert "--status does not apply to --format copernica" in p.stderr


def test_sync_refuses_payloads(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9/hook")
    data = jsonl(tmp_path / "e.jsonl", [payload("WelcomeFlow", ["a@example.com"])])
    p = run_cli("sync", str(data), "-c", str(cfg), "--format", "engine", "--dry-run")
    assert p.returncode == 2
    assert "sync takes the full membership as CSV or JSONL" in p.stderr


def test_push_engine_dry_run_by_name(tmp_path: Path) -> None:
    """Without external_id, the segment's key selects it; a dry run adapts the same way."""
    cfg = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9/hook")
    data = jsonl(tmp_path / "e.jsonl", [payload("WelcomeFlow", ["a@example.com", "b@example.com"])])
    p = run_cli(
        "push", str(data), "-c", str(cfg), "--format", "engine", "--dry-run", "--out", str(tmp_path / "out"),
        "--report-json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    [body] = [json.loads(f.read_text()) for f in (tmp_path / "out").iterdir()]
    assert [c["r42Status"] for c in body["campaigns"][0]["customers"]] == ["NEW", "NEW"]
    assert report(tmp_path / "r.json")["rows_read"] == 2


def test_sigterm_then_retry_adapts_the_payloads_again(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    """retry rebuilds an engine run from its file with the selection and --status the run used."""
    from .test_delivery_e2e import popen, wait_for

    sb = sandbox(latency=0.15)
    cfg = two_segments(tmp_path, sb.endpoint)
    data = yaml.safe_load(cfg.read_text())
    data["connectors"]["main"].update(concurrency=1, batch_size=100)
    cfg.write_text(yaml.safe_dump(data))
    lines = [payload("2582431", [f"u{i}-{j}@example.com" for j in range(10)]) for i in range(300)]
    events = jsonl(tmp_path / "events.jsonl", [*lines, payload("Winback", ["x@example.com"])])
    args = ("-c", str(cfg), "-s", "WelcomeFlow")
    proc = popen(
        "push",
        str(events),
        *args,
        "--format",
        "engine",
        "--status",
        "REMOVED",
        "--report-json",
        str(tmp_path / "r1.json"),
    )
    wait_for(lambda: sb.snapshot()["accepted"] >= 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    r1 = report(tmp_path / "r1.json")
    assert r1["profiles_delivered"] < 3000
    p = run_cli("retry", r1["run_id"], "-c", str(cfg), "--report-json", str(tmp_path / "r2.json"))
    assert p.returncode == 0, p.stderr
    stats = sb.snapshot()
    assert (stats["accepted"], stats["duplicates"], stats["profiles"]) == (30, 0, 3000)
    r2 = report(tmp_path / "r2.json")
    assert (r2["rows_read"], r2["rows_rejected"]) == (3001, 1)
