"""Suppression: a segment's suppress: holds back NEW and MODIFIED for profiles with a hard bounce or
a complaint stored in the state folder; REMOVED still goes; the counts add up."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from canopycli.emulators.webhook import Sandbox
from canopycli.store import Store
from canopycli.store.engagements import Event

from .conftest import emails, report, run_cli, write_config, write_csv


def sha(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def seed(state: Path) -> None:
    events = [
        Event("u1", "bounces", "2026-11-01T10:00:00+00:00", "2026-11-01", bounce_type="HARD", email_sha256=sha("user1@example.com")),
        Event("u2", "bounces", "2026-11-02T10:00:00+00:00", "2026-11-02", bounce_type="soft", email_sha256=sha("user2@example.com")),
        Event("u3", "complaints", "2026-11-03T10:00:00+00:00", "2026-11-03", email_sha256=sha("user3@example.com")),
        Event("u4", "opens", "2026-11-03T10:00:00+00:00", "2026-11-03", email_sha256=sha("user4@example.com")),
    ]  # fmt: skip
    state.mkdir(parents=True, exist_ok=True)
    with Store(state) as store:
        store.engagements.store(events)


def test_push_holds_back_the_bounced_and_complaining_and_the_counts_add_up(
    tmp_path: Path, sandbox: Callable[..., Sandbox]
) -> None:
    sb = sandbox(record=tmp_path / "rec.jsonl")
    seed(tmp_path / "state")
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, segment={"suppress": ["bounce", "complaint"]})
    rows = emails(6)
    rows[3] = {**rows[3], "status": "REMOVED"}  # a removal of a complaining profile still goes
    rows = [{**r, "status": r.get("status", "NEW")} for r in rows]
    src = write_csv(tmp_path / "in.csv", rows)
    p = run_cli("push", str(src), "-c", str(cfg), "--report-json", str(tmp_path / "r.json"), "--rejects",
                str(tmp_path / "rej.csv"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["rows_suppressed"], r["profiles_delivered"]) == (6, 1, 5)
    sent = {c["customerId"]: c["r42Status"] for line in (tmp_path / "rec.jsonl").read_text().splitlines()
            for c in json.loads(line)["campaigns"][0]["customers"]}  # fmt: skip
    assert sha("user1@example.com") not in sent  # hard bounce: held
    assert sent[sha("user2@example.com")] == "NEW"  # soft bounce: never suppresses
    assert sent[sha("user3@example.com")] == "REMOVED"  # a complaint never holds back a removal
    rejects = (tmp_path / "rej.csv").read_text()
    assert "suppressed: hard bounce on 2026-11-01" in rejects
    # --no-suppress sends it this once
    p = run_cli("push", str(src), "-c", str(cfg), "--no-suppress", "--report-json", str(tmp_path / "r2.json"))
    assert p.returncode == 0, p.stderr
    assert report(tmp_path / "r2.json")["rows_suppressed"] == 0


def test_dry_run_and_sync_hold_back_too(tmp_path: Path, sandbox: Callable[..., Sandbox]) -> None:
    sb = sandbox()
    seed(tmp_path / "state")
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, segment={"suppress": ["complaint"]})
    src = write_csv(tmp_path / "in.csv", emails(5))
    p = run_cli("push", str(src), "-c", str(cfg), "--dry-run", "--report-json", str(tmp_path / "d.json"))
    assert p.returncode == 0, p.stderr
    assert report(tmp_path / "d.json")["rows_suppressed"] == 1  # user3's complaint; user1's bounce is not listed
    p = run_cli("sync", str(src), "-c", str(cfg), "--report-json", str(tmp_path / "s.json"))
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "s.json")
    assert (r["rows_suppressed"], r["profiles_delivered"], r["removals_delivered"]) == (1, 4, 0)
    # the held profile is in the snapshot: the next sync neither sends nor removes it
    p = run_cli("sync", str(src), "-c", str(cfg), "--report-json", str(tmp_path / "s2.json"))
    r = report(tmp_path / "s2.json")
    assert (r["rows_suppressed"], r["profiles_unchanged"], r["removals_delivered"]) == (1, 4, 0)
