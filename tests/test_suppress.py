"""Suppression: a segment's suppress: holds back NEW and MODIFIED for profiles with a hard bounce or
a complaint stored in the state folder; REMOVED still goes; the counts add up."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import yaml
from click.testing import Result
from typer.testing import CliRunner

from canopycli.cli import app
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


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_suppressed_lists_how_many_each_segment_holds_back_and_since_when(tmp_path: Path) -> None:
    seed(tmp_path / "state")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "connectors": {
                    "main": {
                        "endpoint": "http://127.0.0.1:9/x",
                        "token": "${CANOPY_TOKEN}",
                        "identifier": "hashed_email",
                    }
                },
                "segments": {
                    "Both": {"connector": "main", "id_column": "email", "suppress": ["bounce", "complaint"]},
                    "Complaints": {"connector": "main", "id_column": "email", "suppress": ["complaint"]},
                    "Plain": {"connector": "main", "id_column": "email"},
                },
            }
        )
    )
    r = _invoke("engagements", "suppressed", "-c", str(cfg), "--format", "json")
    assert r.exit_code == 0, r.output
    got = {row["segment"]: (row["held_back"], row["since"]) for row in json.loads(r.stdout)}
    # user1's hard bounce (2026-11-01) and user3's complaint (2026-11-03); user2's soft bounce never holds
    assert got == {"Both": (2, "2026-11-01"), "Complaints": (1, "2026-11-03")}
    r = _invoke("engagements", "suppressed", "Plain", "-c", str(cfg), "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [{"segment": "Plain", "suppress": "(none)", "held_back": 0, "since": ""}]
    r = _invoke("engagements", "suppressed", "Nope", "-c", str(cfg))
    assert r.exit_code == 2
    assert "Nope" in r.output and "Traceback" not in r.output


def test_prune_forgets_old_events_and_they_no_longer_suppress(tmp_path: Path) -> None:
    seed(tmp_path / "state")
    today = dt.datetime.now(dt.UTC).date()
    with Store(tmp_path / "state") as store:
        store.engagements.store(
            [Event("new", "complaints", f"{today}T01:00:00+00:00", str(today), email_sha256=sha("x@example.com"))]
        )
    r = _invoke("engagements", "prune", "--older-than", "10d")
    assert r.exit_code == 0, r.output
    assert "pruned 4 engagement event(s)" in r.stdout
    with Store(tmp_path / "state") as store:
        assert store.engagements.count() == 1
        assert store.engagements.suppressed_all("email_sha256", ["bounce", "complaint"]).keys() == {
            sha("x@example.com")
        }
    r = _invoke("engagements", "prune", "--older-than", "soon")
    assert r.exit_code == 2 and "--older-than takes" in r.output


def test_a_profile_that_bounced_and_complained_is_named_by_its_bounce_and_ids_are_kept_apart(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    with Store(root) as store:
        store.engagements.store([
            Event("c", "complaints", "2026-11-01T09:00:00+00:00", "2026-11-01", email_sha256=sha("x@example.com")),
            Event("b", "bounces", "2026-11-05T09:00:00+00:00", "2026-11-05", bounce_type="Hard", email_sha256=sha("x@example.com")),
            Event("e", "complaints", "2026-11-02T09:00:00+00:00", "2026-11-02", external_id="77"),
            Event("s", "bounces", "2026-11-02T09:00:00+00:00", "2026-11-02", bounce_type="soft", external_id="78"),
        ])  # fmt: skip
        by_email = store.engagements.suppressed_all("email_sha256", ["bounce", "complaint"])
        assert by_email == {sha("x@example.com"): ("bounces", "2026-11-05")}
        assert store.engagements.suppressed_all("external_id", ["complaint"]) == {"77": ("complaints", "2026-11-02")}
        assert store.engagements.suppressed_all("external_id", ["bounce"]) == {}  # 78's bounce was soft
        assert store.engagements.suppressed("external_id", ["77", "78", "79"], ["bounce", "complaint"]) == {
            "77": "suppressed: complaint on 2026-11-02 (--no-suppress sends it anyway)"
        }
        assert store.engagements.held_back("email_sha256", ["complaint"]) == (1, "2026-11-01")


def test_a_killed_suppressing_push_resumes_holding_back_the_same_rows(
    tmp_path: Path, sandbox: Callable[..., Sandbox]
) -> None:
    import signal
    import subprocess
    import sys
    import time

    sb = sandbox(latency=0.1)
    state = tmp_path / "state"
    state.mkdir()
    held = [Event(f"h{i}", "complaints", "2026-11-01T09:00:00+00:00", "2026-11-01", email_sha256=sha(f"user{i}@example.com"))
            for i in range(0, 3000, 7)]  # fmt: skip
    with Store(state) as store:
        store.engagements.store(held)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 2, "batch_size": 100},
                       segment={"suppress": ["complaint"]})  # fmt: skip
    data = write_csv(tmp_path / "s.csv", emails(3000))
    proc = subprocess.Popen([sys.executable, "-m", "canopycli", "push", str(data), "-c", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 30
    while sb.snapshot()["accepted"] < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert sb.snapshot()["accepted"] < 26
    p = run_cli("retry", "--last", "-c", str(cfg), "--report-json", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["rows_suppressed"], r["profiles_delivered"]) == (3000, len(held), 3000 - len(held))
    assert sb.snapshot()["profiles"] == 3000 - len(held)  # a batch sent twice is counted once
