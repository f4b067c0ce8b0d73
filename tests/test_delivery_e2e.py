"""Delivery you can trust: real CLI subprocesses against the sandbox on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from canopycli.emulators.webhook import Sandbox

from .conftest import emails, grep_token, report, run_cli, tree_has_token, write_config, write_csv


def popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "canopycli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def wait_for(pred: Callable[[], bool], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_faults_everything_delivered_once_and_attempts_match(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(fail_rate=0.3, slow_rate=0.1, slow_seconds=1.0, drop_rate=0.05, seed=7)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"timeout": 0.5, "retries": 10, "backoff": 0.01})
    data = write_csv(tmp_path / "s.csv", emails(5000))
    p = run_cli("push", str(data), "-c", str(cfg), "--report-json", str(tmp_path / "r.json"), timeout=120)
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    stats = sb.snapshot()
    assert (stats["accepted"], stats["profiles"], r["profiles_delivered"]) == (10, 5000, 5000)
    assert stats["faults"] > 0 and stats["slow"] + stats["dropped"] > 0  # the faults did happen
    assert {b["uuid"]: b["attempts"] for b in r["batches"]} == sb.attempts_by_uuid
    assert r["requests"] == stats["requests"]
    assert not grep_token(p.stdout, p.stderr) and tree_has_token(tmp_path) == []


def test_kill_9_then_retry_last_delivers_everything_once(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(latency=0.1)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 2, "batch_size": 100})
    data = write_csv(tmp_path / "s.csv", emails(4000))  # 40 batches
    proc = popen("push", str(data), "-c", str(cfg))
    wait_for(lambda: sb.snapshot()["accepted"] >= 5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    before = sb.snapshot()
    assert before["accepted"] < 40
    runs = run_cli("runs")
    assert "killed" in runs.stdout, runs.stdout
    p = run_cli("retry", "--last", "-c", str(cfg), "--report-json", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    stats = sb.snapshot()
    assert (stats["accepted"], stats["profiles"]) == (40, 4000)
    assert stats["duplicates"] <= 2  # only batches in flight at the kill can be sent twice
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["profiles_delivered"], len(r["batches"])) == (4000, 4000, 40)
    assert not grep_token(p.stdout, p.stderr) and tree_has_token(tmp_path) == []


def test_429_then_next_day_retry_completes_without_duplicates(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(daily_limit=3)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1})
    data = write_csv(tmp_path / "s.csv", emails(2500))
    p = run_cli("push", str(data), "-c", str(cfg), "--report-json", str(tmp_path / "r1.json"))
    assert p.returncode == 3, p.stderr
    assert "retry after 00:00 UTC" in p.stderr
    r1 = report(tmp_path / "r1.json")
    assert (r1["profiles_delivered"], r1["profiles_not_sent"]) == (1500, 1000)
    assert r1["run_id"] and sb.snapshot()["requests"] == 4
    p = run_cli("retry", r1["run_id"], "-c", str(cfg))
    assert p.returncode == 3  # still the same day at the receiver
    httpx.post(sb.base_url + "/_sandbox/next-day")
    os.remove(data)  # the journal holds what is needed: the input is no longer required
    p = run_cli("retry", "--last", "-c", str(cfg), "--report-json", str(tmp_path / "r2.json"))
    assert p.returncode == 0, p.stderr
    r2 = report(tmp_path / "r2.json")
    assert (r2["run_id"], r2["rows_read"], r2["profiles_delivered"], r2["profiles_not_sent"]) == (
        r1["run_id"],
        2500,
        2500,
        0,
    )
    stats = sb.snapshot()
    assert (stats["accepted"], stats["duplicates"], stats["profiles"]) == (5, 0, 2500)


def test_quota_precheck_refuses_before_sending_unless_allow_partial(
    sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"daily_limit": 2, "concurrency": 1})
    data = write_csv(tmp_path / "s.csv", emails(2200))
    p = run_cli("push", str(data), "-c", str(cfg))
    assert p.returncode == 3 and "needs about 5 requests but only 2" in p.stderr
    assert sb.snapshot()["requests"] == 0
    p = run_cli("push", str(data), "-c", str(cfg), "--allow-partial", "--report-json", str(tmp_path / "r.json"))
    assert p.returncode == 3
    r = report(tmp_path / "r.json")
    assert (r["profiles_delivered"], r["profiles_not_sent"], sb.snapshot()["requests"]) == (1000, 1200, 2)
    p = run_cli("push", str(data), "-c", str(cfg), "--allow-partial")
    assert p.returncode == 3 and "Nothing was sent" in p.stderr and sb.snapshot()["requests"] == 2


def test_two_concurrent_pushes_one_exits_5(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(latency=0.3)  # 10 requests: the first push is still running when the second starts
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1})
    data = write_csv(tmp_path / "s.csv", emails(5000))
    first = popen("push", str(data), "-c", str(cfg))
    wait_for(lambda: sb.snapshot()["requests"] >= 1)
    second = run_cli("push", str(data), "-c", str(cfg))
    assert second.returncode == 5
    assert f"another push of WelcomeFlow is running (pid {first.pid})" in second.stderr
    queued = popen("push", str(data), "-c", str(cfg), "--wait")
    first.communicate(timeout=30)
    assert first.returncode == 0
    queued.communicate(timeout=30)
    assert queued.returncode == 0
    lock_files = list((tmp_path / "state" / "locks").iterdir())
    assert lock_files and tree_has_token(tmp_path) == []


def test_sigterm_stops_cleanly_and_retry_finishes(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(latency=0.15)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1, "batch_size": 100})
    data = write_csv(tmp_path / "s.csv", emails(3000))
    proc = popen("push", str(data), "-c", str(cfg), "--report-json", str(tmp_path / "r1.json"))
    wait_for(lambda: sb.snapshot()["accepted"] >= 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "Stopping" in err
    r1 = report(tmp_path / "r1.json")
    assert r1["stop_reason"] == "terminated" and r1["profiles_delivered"] < 3000
    assert "terminated" in run_cli("runs").stdout
    p = run_cli("retry", r1["run_id"], "-c", str(cfg), "--report-json", str(tmp_path / "r2.json"))
    assert p.returncode == 0, p.stderr
    stats = sb.snapshot()
    assert (stats["accepted"], stats["duplicates"], stats["profiles"]) == (30, 0, 3000)
    assert report(tmp_path / "r2.json")["rows_read"] == 3000


def test_retry_refuses_a_changed_input_or_another_endpoint(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(latency=0.1)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1, "batch_size": 100})
    data = write_csv(tmp_path / "s.csv", emails(3000))
    proc = popen("push", str(data), "-c", str(cfg))
    wait_for(lambda: sb.snapshot()["accepted"] >= 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    other = write_config(tmp_path / "o.yaml", sb.endpoint.replace("32-sandbox", "99-other"))
    p = run_cli("retry", "--last", "-c", str(other))
    assert p.returncode == 2 and "now points at" in p.stderr
    with open(data, "a") as fh:
        fh.write("late@example.com,Late\n")
    p = run_cli("retry", "--last", "-c", str(cfg))
    assert p.returncode == 2 and "but the file has changed since" in p.stderr
