"""Journal, quota and lock units, and the journal-backed CLI commands."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.deployteq.quota import DailyQuota, requests_needed
from canopycli.deployteq.webhook import Encoder
from canopycli.errors import LockedError, QuotaError
from canopycli.model import FAILED, PENDING, SENT, Profile
from canopycli.store import Store
from canopycli.store.baseline import moves
from canopycli.store.locks import SegmentLock

from .conftest import emails, report, write_config, write_csv


def batch(i: int):  # noqa: ANN201
    cid = f"{i:064x}"
    [b], _ = Encoder("https://h/x", "S", "HASHED_EMAIL", 6_000_000).encode(
        [Profile(i, cid, {"customerId": cid, "r42Status": "NEW", "params": []})], i
    )
    return b


def start(j: Store) -> str:
    return j.runs.start(
        command="push", config_path="c.yaml", connector="main", segment="S", segment_name="S",
        endpoint="https://h/x", input="in.csv", input_sha256="ab", settings={"batch_size": 500},
    )  # fmt: skip


def test_batches_state_and_body_dropped_on_ack(tmp_path: Path) -> None:
    with Store(tmp_path) as j:
        run = start(j)
        for i in range(3):
            j.runs.add_batch(run, batch(i))
        j.runs.record(run, 0, SENT, 200, 1, None, None, body=batch(0).body)
        j.runs.record(run, 1, FAILED, 500, 4, "HTTP 500", "oops", body=batch(1).body)
        j.runs.record(run, 2, "not_sent", None, 0, None, None, body=batch(2).body)
        j.runs.add_batch(run, batch(3))  # killed in flight: no body
        assert [b.state for b in j.runs.batches(run)] == [SENT, FAILED, "not_sent", PENDING]
        again = list(j.runs.unacked(run))
        assert [b.index for b in again] == [1, 2]
        assert again[0].body == batch(1).body and again[0].uuid == batch(1).uuid
        assert j.db.execute("SELECT body IS NULL FROM batches WHERE idx=0").fetchone() == (1,)
        assert len(j.runs.batches(run)) == 4 and j.runs.bodiless(run) == 1
        assert j.runs.last().id == run


def test_prune(tmp_path: Path) -> None:
    with Store(tmp_path) as j:
        run = start(j)
        j.runs.add_batch(run, batch(0))
        j.runs.finish(run, "finished", 0, None)
        assert j.runs.prune(dt.datetime.now(dt.UTC) - dt.timedelta(days=1)) == 0
        assert j.runs.prune(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)) == 1
        assert j.runs.recent() == [] and j.db.execute("SELECT COUNT(*) FROM batches").fetchone() == (0,)


def test_quota_take_observe_and_check(tmp_path: Path) -> None:
    with Store(tmp_path) as j:
        q = DailyQuota(j.requests, "https://h/x", 3)
        assert [q.take() for _ in range(4)] == [True, True, True, False]
        q.save()
        assert DailyQuota(j.requests, "https://h/x", 3).remaining() == 0
        q2 = DailyQuota(j.requests, "https://h/other", 10)
        q2.observe(8)
        assert q2.remaining() == 2
        with pytest.raises(QuotaError, match="needs about 5 requests but only 2"):
            q2.check(5, allow_partial=False)
        q2.check(5, allow_partial=True)
        DailyQuota(j.requests, "https://h/pro", None).check(10**6, allow_partial=False)
    assert requests_needed(1001, 500) == 3 and requests_needed(None, 500) is None


def test_lock_excludes_a_second_holder_and_is_freed_when_its_process_dies(tmp_path: Path) -> None:
    with SegmentLock(tmp_path, "main", "S").acquire():
        with pytest.raises(LockedError, match=f"another push of S is running \\(pid {os.getpid()}\\)"):
            SegmentLock(tmp_path, "main", "S").acquire()
        SegmentLock(tmp_path, "main", "Other").acquire().release()  # other segments are free
    # a process that takes the lock and dies without releasing it
    code = (
        "import sys, os; from pathlib import Path; from canopycli.store.locks import SegmentLock;"
        f"SegmentLock(Path({str(tmp_path)!r}), 'main', 'S').acquire(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    SegmentLock(tmp_path, "main", "S").acquire().release()


def test_runs_commands_and_prune_cli(tmp_path: Path, sandbox) -> None:  # noqa: ANN001
    sb = sandbox()
    runner = CliRunner()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    data = write_csv(tmp_path / "s.csv", emails(700))
    r = runner.invoke(app, ["push", str(data), "-c", str(cfg)])
    assert r.exit_code == 0, r.stderr
    run_id = r.stderr.split("run ")[1].split()[0]
    r = runner.invoke(app, ["runs"])
    assert r.exit_code == 0 and run_id in r.stdout and "finished" in r.stdout
    r = runner.invoke(app, ["runs", "show", run_id])
    assert r.exit_code == 0 and "batches by state: delivered 2" in r.stdout
    r = runner.invoke(app, ["runs", "show", "nope"])
    assert r.exit_code == 2 and "no run 'nope'" in r.stderr
    r = runner.invoke(app, ["runs", "prune", "--older-than", "soon"])
    assert r.exit_code == 2 and "--older-than" in r.stderr
    r = runner.invoke(app, ["runs", "prune", "--older-than", "30d"])
    assert r.exit_code == 0 and "pruned 0 run(s)" in r.stdout
    r = runner.invoke(app, ["retry"])
    assert r.exit_code == 2 and "--last" in r.stderr
    r = runner.invoke(app, ["retry", "--last", "-c", str(cfg)])
    assert r.exit_code == 0 and sb.snapshot()["requests"] == 2  # nothing left to send


def test_baseline_moves_fold_in_order_latest_wins(tmp_path: Path) -> None:
    with Store(tmp_path) as j:
        run = start(j)
        j.runs.add_batch(run, batch(0))
        j.runs.record(run, 0, SENT, 200, 1, None, None, effects=moves("S", [("a", b"1"), ("b", b"1"), ("c", b"1")]))
        j.runs.add_batch(run, batch(1))
        j.runs.record(run, 1, SENT, 200, 1, None, None, effects=moves("S", [("a", b"2"), ("b", None)]))
        j.runs.add_batch(run, batch(2))
        j.runs.record(
            run, 2, FAILED, 500, 1, None, None, effects=moves("S", [("c", None)])
        )  # not acknowledged: no move
        assert j.db.execute("SELECT COUNT(*) FROM baseline").fetchone() == (0,)  # folded lazily
        assert list(j.baselines.rows("S")) == [("a", b"2"), ("c", b"1")]
        assert j.baselines.size("S") == 2 and j.db.execute("SELECT COUNT(*) FROM baseline_moves").fetchone() == (0,)


ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")  # UTC, ISO 8601, milliseconds


def _times(r: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    assert ISO_MS.fullmatch(r["started"]) and ISO_MS.fullmatch(r["finished"]), (r["started"], r["finished"])
    started, finished = dt.datetime.fromisoformat(r["started"]), dt.datetime.fromisoformat(r["finished"])
    assert started <= finished
    return started, finished


def test_timestamps_have_one_precision_and_runs_show_after_a_retry_has_finished(tmp_path: Path, sandbox) -> None:  # noqa: ANN001
    sb = sandbox(fail_requests={2})
    runner = CliRunner()
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint, connector={"retries": 0, "concurrency": 1}))
    data = str(write_csv(tmp_path / "s.csv", emails(700)))
    r = runner.invoke(app, ["push", data, "-c", cfg, "--report-json", "r1.json", "-q"])
    assert r.exit_code == 1, r.stderr
    r1 = report(tmp_path / "r1.json")
    _times(r1)
    r = runner.invoke(app, ["retry", r1["run_id"], "-c", cfg, "--report-json", "r2.json", "-q"])
    assert r.exit_code == 0, r.stderr
    r2 = report(tmp_path / "r2.json")
    started, finished = _times(r2)
    assert r2["started"] == r1["started"] and finished >= dt.datetime.fromisoformat(r1["finished"])
    r = runner.invoke(app, ["runs", "show", r1["run_id"], "--report-json", "shown.json"])
    assert r.exit_code == 0, r.stderr
    shown = report(tmp_path / "shown.json")
    assert (shown["started"], shown["finished"]) == (r2["started"], r2["finished"])  # the journal agrees
    r = runner.invoke(app, ["push", data, "-c", cfg, "--dry-run", "--report-json", "dry.json"])
    assert r.exit_code == 0, r.stderr
    _times(report(tmp_path / "dry.json"))


def test_runs_show_report_json_checks_its_path_and_dash_is_stdout(tmp_path: Path, sandbox) -> None:  # noqa: ANN001
    sb = sandbox()
    runner = CliRunner()
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint))
    r = runner.invoke(
        app, ["push", str(write_csv(tmp_path / "s.csv", emails(3))), "-c", cfg, "--report-json", "r.json"]
    )
    assert r.exit_code == 0, r.stderr
    run_id = report(tmp_path / "r.json")["run_id"]
    r = runner.invoke(app, ["runs", "show", run_id, "--report-json", "/nonexistent/x.json"])
    assert r.exit_code == 2 and "--report-json /nonexistent/x.json: its folder /nonexistent does not exist" in r.stderr
    r = runner.invoke(app, ["runs", "show", run_id, "--report-json", "-"])
    assert r.exit_code == 0 and not (tmp_path / "-").exists()
    shown = json.loads(r.stdout)  # JSON only: the table is left out
    assert (shown["run_id"], shown["profiles_delivered"], shown["finished"]) == (
        run_id,
        3,
        report(tmp_path / "r.json")["finished"],
    )


def test_a_journal_from_1_0_opens_and_gains_what_a_baseline_belongs_to(tmp_path: Path) -> None:
    from canopycli.store.schema import SCHEMA

    old_schema = SCHEMA.split("    last_run TEXT,")[0] + "    last_run TEXT\n);\n"
    assert "segment_name TEXT   --" not in old_schema
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    db.executescript(old_schema)
    db.execute(
        "INSERT INTO scopes VALUES ('main/S', 'main', 'S', 'hashed_email', '2026-01-01T00:00:00.000+00:00', NULL)"
    )
    db.commit()
    db.close()
    with Store(tmp_path) as j:
        assert j.baselines.scope("main/S") == {
            "connector": "main", "segment": "S", "identifier": "hashed_email", "endpoint": None, "segment_name": None,
        }  # fmt: skip
        j.baselines.touch("main/S", "main", "S", "hashed_email", None, endpoint="https://h/x", segment_name="S")
        assert j.baselines.scope("main/S")["endpoint"] == "https://h/x"  # type: ignore[index]
