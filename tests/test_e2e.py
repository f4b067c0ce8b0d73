"""End to end: the real CLI in a subprocess against the real sandbox over loopback sockets."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from canopycli.emulators.webhook import Sandbox

from .conftest import TOKEN, emails, grep_token, report, run_cli, tree_has_token, write_config, write_csv


def received(rec: Path) -> list[dict]:
    return [json.loads(line) for line in rec.read_text().splitlines()] if rec.exists() else []


def push_emails(tmp_path: Path, cfg: Path, n: int, *extra: str) -> subprocess.CompletedProcess[str]:
    """`canopycli push` of ``n`` generated addresses (s.csv), with the JSON report in r.json."""
    csv_path = write_csv(tmp_path / "s.csv", emails(n))
    return run_cli("push", str(csv_path), "-c", str(cfg), *extra, "--report-json", str(tmp_path / "r.json"))


def check_accounting(r: dict) -> None:
    keys = ("rows_rejected", "rows_duplicate", "profiles_delivered", "profiles_failed", "profiles_not_sent")
    assert sum(r[k] for k in keys) + r.get("profiles_unchanged", 0) == r["rows_read"]


def test_1234_rows_make_3_requests(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(record=tmp_path / "rec.jsonl")
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    data = write_csv(tmp_path / "seg.csv", emails(1234))
    p = run_cli("push", str(data), "-c", str(cfg), "--report-json", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["profiles_delivered"], len(r["batches"])) == (1234, 1234, 3)
    assert [b["profiles"] for b in r["batches"]] == [500, 500, 234]
    assert all(b["status_code"] == 200 and b["attempts"] == 1 for b in r["batches"])
    check_accounting(r)
    stats = sb.snapshot()
    assert (stats["requests"], stats["accepted"], stats["profiles"]) == (3, 3, 1234)
    bodies = received(tmp_path / "rec.jsonl")
    assert {b["uuid"] for b in bodies} == {b["uuid"] for b in r["batches"]}
    [first_body] = [b for b in bodies if b["uuid"] == r["batches"][0]["uuid"]]
    first = first_body["campaigns"][0]["customers"][0]
    assert first["customerId"] == hashlib.sha256(b"user0@example.com").hexdigest()
    assert first["params"] == [{"name": "firstName", "type": "string", "value": "Name0"}]
    assert "HTTP 200" in p.stdout and "1,234" in p.stdout
    assert not grep_token(p.stdout, p.stderr)


def test_invalid_emails_rejected_with_line_numbers(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    rows = emails(10)
    rows[2]["email"] = "broken@@example.com"
    rows[6]["email"] = "no-at-sign"
    rows[8]["email"] = rows[1]["email"].upper()  # duplicate after normalization
    data = write_csv(tmp_path / "seg.csv", rows)
    rej = tmp_path / "rejects.csv"
    p = run_cli("push", str(data), "-c", str(cfg), "--rejects", str(rej), "--report-json", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    with rej.open() as fh:
        got = list(csv.DictReader(fh))
    assert [(g["line"], g["reason"]) for g in got] == [
        ("4", "email: is not a valid email address"),
        ("8", "email: is not a valid email address"),
        ("10", "duplicate identifier: line 3 has the same one and is the one sent"),
    ]
    assert got[0]["email"] == "broken@@example.com"  # the user's own row, to fix it
    assert "line 4: email: is not a valid email address" in p.stderr
    assert "broken@@example.com" not in p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_rejected"], r["rows_duplicate"], r["profiles_delivered"]) == (2, 1, 7)
    check_accounting(r)
    assert sb.snapshot()["profiles"] == 7


def test_prehashed_passthrough_and_customer_id_mode(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(record=rec)
    digest = hashlib.sha256(b"x@example.com").hexdigest()
    data = write_csv(tmp_path / "seg.csv", [{"email": digest.upper()}, {"email": "y@example.com"}])
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    assert run_cli("push", str(data), "-c", str(cfg)).returncode == 0
    ids = [c["customerId"] for c in received(rec)[0]["campaigns"][0]["customers"]]
    assert ids == [digest, hashlib.sha256(b"y@example.com").hexdigest()]

    data2 = tmp_path / "ids.jsonl"
    data2.write_text('{"cid": " C-1 ", "status": "removed"}\n{"cid": 42}\n{"cid": ""}\n')
    cfg2 = write_config(
        tmp_path / "c2.yaml", sb.endpoint, connector={"identifier": "customer_id"}, segment={"id_column": "cid"}
    )
    p = run_cli("push", str(data2), "-c", str(cfg2), "--report-json", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    body = received(rec)[1]
    assert body["customerType"] == "CLANG_ID"
    assert [(c["customerId"], c["r42Status"]) for c in body["campaigns"][0]["customers"]] == [
        ("C-1", "REMOVED"),
        ("42", "NEW"),
    ]
    assert report(tmp_path / "r.json")["rows_rejected"] == 1


def test_bearer_auth(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"auth": "bearer"})
    p = run_cli("push", str(write_csv(tmp_path / "s.csv", emails(3))), "-c", str(cfg))
    assert p.returncode == 0, p.stderr
    assert sb.snapshot()["accepted"] == 1


def test_wrong_token_exits_4_and_stops_spending_requests(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(token="a-different-token")
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1})
    p = push_emails(tmp_path, cfg, 2000)
    assert p.returncode == 4, p.stderr
    assert "rejected the credentials" in p.stderr
    r = report(tmp_path / "r.json")
    assert sb.snapshot()["unauthorized"] == 1
    assert (r["profiles_failed"], r["profiles_not_sent"]) == (500, 1500)
    check_accounting(r)
    assert not grep_token(p.stdout, p.stderr, (tmp_path / "r.json").read_text())


def test_500_then_success_retries_with_the_same_uuid(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(fail_first=2)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1})
    p = push_emails(tmp_path, cfg, 700)
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert [b["attempts"] for b in r["batches"]] == [3, 1]
    assert sb.attempts_by_uuid == {r["batches"][0]["uuid"]: 3, r["batches"][1]["uuid"]: 1}
    assert sb.snapshot()["accepted"] == 2 and r["requests"] == 4


def test_daily_limit_exits_3_with_honest_counts(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(daily_limit=2)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1})
    p = push_emails(tmp_path, cfg, 2234)
    assert p.returncode == 3, p.stderr
    r = report(tmp_path / "r.json")
    assert (r["profiles_delivered"], r["profiles_failed"], r["profiles_not_sent"]) == (1000, 0, 1234)
    assert [b["status_code"] for b in r["batches"]] == [200, 200, 429, None, None]
    assert sb.snapshot()["requests"] == 3  # nothing more spent after the 429
    assert "daily request limit" in p.stderr
    check_accounting(r)


def test_failures_exit_1(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(fail_rate=1.0)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"retries": 1})
    p = push_emails(tmp_path, cfg, 5)
    assert p.returncode == 1
    r = report(tmp_path / "r.json")
    assert r["profiles_failed"] == 5 and r["batches"][0]["attempts"] == 2 and r["batches"][0]["error"] == "HTTP 500"
    assert "HTTP 500" in p.stdout and "Internal server error" in p.stdout


def test_dry_run_makes_no_request_and_writes_bodies(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    out = tmp_path / "bodies"
    p = push_emails(tmp_path, cfg, 1234, "--dry-run", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert sb.snapshot()["requests"] == 0
    files = sorted(out.glob("*.json"))
    assert len(files) == 3
    assert [len(json.loads(f.read_bytes())["campaigns"][0]["customers"]) for f in files] == [500, 500, 234]
    r = report(tmp_path / "r.json")
    assert r["dry_run"] is True and r["profiles_not_sent"] == 1234 and r["exit_code"] == 0
    assert tree_has_token(tmp_path) == []


def test_unreachable_endpoint_reports_connection_error_without_token(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    cfg = write_config(tmp_path / "c.yaml", f"http://127.0.0.1:{port}/hook", connector={"retries": 1, "timeout": 2})
    p = push_emails(tmp_path, cfg, 3)
    assert p.returncode == 1
    assert "Connection error" in p.stdout
    assert not grep_token(p.stdout, p.stderr) and tree_has_token(tmp_path) == []


def test_stdin_and_jsonl_non_object_line(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    p = run_cli(
        "push",
        "-",
        "-c",
        str(cfg),
        "--report-json",
        str(tmp_path / "r.json"),
        input=b'{"email":"a@example.com"}\n"just a string"\n',
    )
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["rows_rejected"], r["profiles_delivered"]) == (2, 1, 1)


def test_demo_runs_from_an_empty_folder(tmp_path: Path) -> None:
    p = run_cli("demo", "--report-json", str(tmp_path / "r.json"), env={"CANOPY_TOKEN": ""})
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert r["rows_read"] == 1234 and r["profiles_delivered"] > 1200
    check_accounting(r)
    assert "The sandbox accepted 3 batches" in p.stdout  # its folder is gone unless --keep (issue 9)


def test_debug_env_shows_traceback(tmp_path: Path) -> None:
    p = run_cli("push", "nope.csv", "-c", str(write_config(tmp_path / "c.yaml", "https://h.example/x")))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == "Error: nope.csv: no such file\nCheck the path; use - to read from stdin."
    p = run_cli("push", "nope.csv", "-c", str(tmp_path / "c.yaml"), env={"CANOPYCLI_DEBUG": "1"})
    assert p.returncode != 0 and "Traceback" in p.stderr
    assert TOKEN not in p.stderr
