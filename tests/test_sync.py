"""Snapshot sync: units of the diff, and the real CLI against the sandbox on loopback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.sandbox import Sandbox
from canopycli.sync import baseline_changes, params_digest

from .conftest import emails, run_cli, tree_has_token, write_config, write_csv

runner = CliRunner()


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def test_baseline_changes_from_an_acknowledged_body() -> None:
    body = orjson.dumps(
        {
            "uuid": "x",
            "customerType": "HASHED_EMAIL",
            "campaigns": [
                {
                    "segmentName": "S",
                    "customers": [
                        {
                            "customerId": "a",
                            "r42Status": "NEW",
                            "params": [{"name": "n", "type": "string", "value": "1"}],
                        },
                        {"customerId": "b", "r42Status": "REMOVED", "params": []},
                    ],
                }
            ],
        }
    )
    from canopycli.batch import Batch

    changes = baseline_changes(Batch(0, "x", body, ["a", "b"], [1, 0]))  # as loaded from the journal
    assert changes == [("a", params_digest(b'[{"name":"n","type":"string","value":"1"}]')), ("b", None)]


def received(rec: Path) -> list[dict[str, Any]]:
    out = []
    for line in rec.read_text().splitlines() if rec.exists() else []:
        for c in json.loads(line)["campaigns"]:
            out.extend(c["customers"])
    return out


def sync(*args: str) -> tuple[int, dict[str, Any], str]:
    r = runner.invoke(app, ["sync", *args, "--report-json", "r.json", "-q"])
    data = json.loads(Path("r.json").read_text()) if Path("r.json").exists() else {}
    Path("r.json").unlink(missing_ok=True)
    return r.exit_code, data, r.stderr


def accounted(r: dict[str, Any]) -> int:
    keys = (
        "rows_rejected",
        "rows_duplicate",
        "profiles_delivered",
        "profiles_failed",
        "profiles_not_sent",
        "profiles_unchanged",
    )
    return sum(r[k] for k in keys)


def test_sync_lifecycle(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(record=rec)
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint))
    rows = emails(1000)
    snap = write_csv(tmp_path / "snap.csv", rows)

    code, r, err = sync(str(snap), "-c", cfg)  # first sync: everything is NEW
    assert code == 0, err
    assert (r["profiles_delivered"], r["profiles_unchanged"], r["removals_delivered"]) == (1000, 0, 0)
    assert {c["r42Status"] for c in received(rec)} == {"NEW"} and len(received(rec)) == 1000
    assert accounted(r) == r["rows_read"] == 1000

    code, r, _ = sync(str(snap), "-c", cfg)  # the same file again: nothing to send
    assert code == 0 and sb.snapshot()["requests"] == 2
    assert (r["profiles_unchanged"], r["profiles_delivered"], r["batches"]) == (1000, 0, [])

    # 10 changed params, 7 gone, 5 new -> exactly 22 profiles, with the right statuses
    changed = [dict(row) for row in rows]
    for i in range(10):
        changed[i]["firstName"] = f"Renamed{i}"
    gone = {changed[i]["email"] for i in range(100, 107)}
    changed = [row for row in changed if row["email"] not in gone] + emails(5, start=5000)
    snap2 = write_csv(tmp_path / "snap2.csv", changed)
    rec.unlink()
    code, r, _ = sync(str(snap2), "-c", cfg)
    assert code == 0
    got = received(rec)
    assert len(got) == 22
    by_status: dict[str, set[str]] = {}
    for c in got:
        by_status.setdefault(c["r42Status"], set()).add(c["customerId"])
    assert by_status["MODIFIED"] == {sha(f"user{i}@example.com") for i in range(10)}
    assert by_status["REMOVED"] == {sha(e) for e in gone}
    assert by_status["NEW"] == {sha(f"user{i}@example.com") for i in range(5000, 5005)}
    assert [c["params"] for c in got if c["r42Status"] == "REMOVED"] == [[]] * 7
    assert (r["profiles_delivered"], r["removals_delivered"], r["profiles_unchanged"]) == (15, 7, 983)
    assert accounted(r) == r["rows_read"] == 998

    # export -> import into an empty state dir -> the next sync sends nothing
    assert runner.invoke(app, ["state", "export", str(tmp_path / "base.jsonl.gz"), "-c", cfg]).exit_code == 0
    other = tmp_path / "other-state"
    r2 = runner.invoke(app, ["state", "import", str(tmp_path / "base.jsonl.gz"), "-c", cfg, "--state-dir", str(other)])
    assert r2.exit_code == 0 and "imported 998 profiles" in r2.stdout
    before = sb.snapshot()["requests"]
    code, r, _ = sync(str(snap2), "-c", cfg, "--state-dir", str(other))
    assert code == 0 and r["profiles_unchanged"] == 998 and sb.snapshot()["requests"] == before
    show = runner.invoke(app, ["state", "show", "--state-dir", str(other)])
    assert "998" in show.stdout and "WelcomeFlow" in show.stdout

    # a snapshot that would remove 90% -> exit 6, nothing sent
    code, r, err = sync(str(write_csv(tmp_path / "tiny.csv", changed[:100])), "-c", cfg)
    assert code == 6 and "would remove 898 of 998 profiles (90%)" in err and sb.snapshot()["requests"] == before
    empty = tmp_path / "empty.csv"
    empty.write_text("email,firstName\n")
    code, _, err = sync(str(empty), "-c", cfg)
    assert code == 6 and "--force" in err and sb.snapshot()["requests"] == before

    # --full: everything as NEW again, and the baseline rebuilt
    rec.unlink()
    code, r, _ = sync(str(snap2), "-c", cfg, "--full")
    assert code == 0 and r["profiles_delivered"] == 998 and {c["r42Status"] for c in received(rec)} == {"NEW"}
    assert tree_has_token(tmp_path) == []


def test_a_failed_batch_is_sent_by_the_next_sync(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(record=rec, fail_requests={2})
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint, connector={"retries": 0, "concurrency": 1}))
    snap = write_csv(tmp_path / "snap.csv", emails(1200))
    p = run_cli("sync", str(snap), "-c", cfg, "--report-json", str(tmp_path / "r1.json"))
    assert p.returncode == 1
    r1 = json.loads((tmp_path / "r1.json").read_text())
    assert (r1["profiles_delivered"], r1["profiles_failed"]) == (700, 500)
    rec.unlink()
    p = run_cli("sync", str(snap), "-c", cfg, "--report-json", str(tmp_path / "r2.json"))
    assert p.returncode == 0, p.stderr
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert (r2["profiles_delivered"], r2["profiles_unchanged"]) == (500, 700)
    assert {c["customerId"] for c in received(rec)} == {sha(f"user{i}@example.com") for i in range(500, 1000)}
    # the failed batch of the first sync is superseded: retrying that run sends nothing stale
    p = run_cli("retry", r1["run_id"], "-c", cfg, "--report-json", str(tmp_path / "r3.json"))
    assert p.returncode == 0 and sb.snapshot()["requests"] == 4
    r3 = json.loads((tmp_path / "r3.json").read_text())
    assert [b["outcome"] for b in r3["batches"]] == ["delivered", "superseded", "delivered"]


def test_duplicates_are_all_rejected_and_status_column_refused(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint))
    rows = emails(6)
    rows[4]["email"] = rows[1]["email"].upper()
    snap = write_csv(tmp_path / "snap.csv", rows)
    r = runner.invoke(app, ["sync", str(snap), "-c", cfg, "--rejects", "rej.csv", "--report-json", "r.json"])
    assert r.exit_code == 0, r.stderr
    lines = (tmp_path / "rej.csv").read_text().splitlines()
    assert lines[1].startswith("3,duplicate identifier in a snapshot (also on line 6)")
    assert lines[2].startswith("6,duplicate identifier in a snapshot (also on line 3)")
    data = json.loads((tmp_path / "r.json").read_text())
    assert (data["rows_duplicate"], data["profiles_delivered"]) == (2, 4)

    with_status = write_csv(tmp_path / "st.csv", [{"email": "a@example.com", "status": "NEW"}])
    r = runner.invoke(app, ["sync", str(with_status), "-c", cfg])
    assert r.exit_code == 2 and "sync derives NEW/MODIFIED/REMOVED itself" in r.stderr


def test_dry_run_never_moves_the_baseline(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint))
    snap = write_csv(tmp_path / "snap.csv", emails(10))
    code, r, _ = sync(str(snap), "-c", cfg, "--dry-run", "--out", "bodies")
    assert code == 0 and r["profiles_not_sent"] == 10 and sb.snapshot()["requests"] == 0
    assert len(list((tmp_path / "bodies").glob("*.json"))) == 1
    code, r, _ = sync(str(snap), "-c", cfg)
    assert code == 0 and r["profiles_delivered"] == 10  # still all NEW: the dry run moved nothing
    r = runner.invoke(app, ["state", "reset", "-c", cfg])
    assert r.exit_code == 0 and "forgot 10 profiles" in r.stdout
    code, r, _ = sync(str(snap), "-c", cfg)
    assert r["profiles_delivered"] == 10


def test_import_refuses_a_damaged_file_and_changes_nothing(tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path / "c.yaml", "https://h.example/x"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"format": "canopycli-state", "version": 1, "identifier": "hashed_email", "profiles": 3}\n["a", "00"]\n'
    )
    r = runner.invoke(app, ["state", "import", str(bad), "-c", cfg])
    assert r.exit_code == 2 and "truncated" in r.stderr
    r = runner.invoke(app, ["state", "import", str(tmp_path / "c.yaml"), "-c", cfg])
    assert r.exit_code == 2 and "not a canopycli state export" in r.stderr


def test_a_member_whose_row_is_rejected_is_held_not_removed(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    """A snapshot row with a valid id but a bad cell is rejected; the profile is still a member,
    so a sync must neither send it nor remove it (issue 9: nothing silently changed)."""
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(record=rec)
    params = {"params": [{"name": "firstName"}, {"name": "age", "type": "number"}]}
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint, segment=params))
    rows = [{**row, "age": "30"} for row in emails(20)]
    code, r, err = sync(str(write_csv(tmp_path / "snap.csv", rows)), "-c", cfg)
    assert code == 0 and r["profiles_delivered"] == 20, err
    rows[3]["age"] = "thirty"  # a bad cell: the row is rejected ...
    rows[19]["age"] = "1e400"  # ... here too, on the last row (after the last full chunk)
    rec.unlink()
    code, r, err = sync(str(write_csv(tmp_path / "snap2.csv", rows)), "-c", cfg)
    assert code == 0, err
    assert (r["rows_rejected"], r["removals_delivered"], r["profiles_unchanged"]) == (2, 0, 18)
    assert received(rec) == []  # ... and neither sent nor removed
    assert accounted(r) == r["rows_read"] == 20
    rows = rows[:3] + rows[4:19]  # really gone now: removed
    code, r, _ = sync(str(write_csv(tmp_path / "snap3.csv", rows)), "-c", cfg)
    assert code == 0 and r["removals_delivered"] == 2
