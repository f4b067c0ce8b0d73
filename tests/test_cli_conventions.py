"""CLI conventions and the messages a user sees when a run cannot finish normally (issue 9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.emulators.webhook import Sandbox

from .conftest import emails, grep_token, report, run_cli, write_config, write_csv

runner = CliRunner()
BOX = set("│┃━─┏┓┗┛╭╮╰╯┡┩")


@pytest.mark.parametrize("args", [["-h"], ["push", "-h"], ["runs", "-h"], ["state", "export", "-h"]])
def test_short_help(args: list[str]) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "Usage:" in r.stdout


def test_completion_and_flags_shown_as_flags() -> None:
    top = runner.invoke(app, ["--help"]).stdout
    assert "--install-completion" in top
    push = runner.invoke(app, ["push", "--help"]).stdout
    dry = next(line for line in push.splitlines() if "--dry-run" in line)
    assert "<bool>" not in push and "<path>" in push  # types stay for options that take a value
    assert "Do everything" in dry


def test_piped_output_is_plain_text(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    data = write_csv(tmp_path / "s.csv", emails(3))
    p = run_cli("push", str(data), "-c", str(cfg), "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "profiles not sent" in p.stdout and "Dry run" in p.stdout
    assert not BOX & set(p.stdout), p.stdout


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        (
            "--report-json",
            "missing-dir/r.json",
            "--report-json missing-dir/r.json: its folder missing-dir does not exist",
        ),
        ("--rejects", "missing-dir/rej.csv", "--rejects missing-dir/rej.csv: its folder missing-dir does not exist"),
        ("--report-json", ".", "is a folder"),
        ("--rejects", "s.csv/x", "s.csv is not a folder"),
    ],
)
def test_output_paths_checked_before_anything_is_sent(
    sandbox: Callable[..., Sandbox], tmp_path: Path, option: str, value: str, fragment: str
) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    data = write_csv(tmp_path / "s.csv", emails(5))
    p = run_cli("push", str(data), "-c", str(cfg), option, value)
    assert p.returncode == 2, p.stderr
    assert fragment in p.stderr and "Nothing was sent" in p.stderr
    assert "This is a bug" not in p.stderr
    assert sb.snapshot()["requests"] == 0
    assert not (tmp_path / "state" / "journal.sqlite3").exists() or "no runs yet" in run_cli("runs").stdout


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    data = write_csv(tmp_path / "s.csv", emails(5))
    p = run_cli("push", str(data), "-c", str(cfg), "--dry-run", "--out", str(data))
    assert p.returncode == 2 and "is a file, not a folder" in p.stderr


def test_retry_checks_its_report_path_first(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    p = run_cli("retry", "--last", "-c", str(cfg), "--report-json", "nope/r.json")
    assert p.returncode == 2 and "--report-json nope/r.json" in p.stderr


def test_stdout_on_a_full_device(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    data = write_csv(tmp_path / "s.csv", emails(5))
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            [sys.executable, "-m", "canopycli", "push", str(data), "-c", str(cfg), "--report-json", "r.json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert p.returncode == 1, p.stderr
    assert "cannot write to stdout: No space left on device" in p.stderr
    assert "canopycli runs show" in p.stderr and "Traceback" not in p.stderr and "Exception ignored" not in p.stderr
    assert sb.snapshot()["profiles"] == 5
    assert report(tmp_path / "r.json")["profiles_delivered"] == 5


def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    data = write_csv(tmp_path / "s.csv", emails(5))
    cmd = [sys.executable, "-m", "canopycli", "push", str(data), "-c", str(cfg), "--dry-run"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # like `| head -0`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_rejects_on_a_full_disk_names_the_run_to_retry(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    rows = emails(600)
    rows[550]["email"] = "not-an-address"
    data = write_csv(tmp_path / "s.csv", rows)
    p = run_cli("push", str(data), "-c", str(cfg), "--rejects", "/dev/full")
    assert p.returncode == 1, p.stderr
    assert "cannot write the rejects file" in p.stderr and "No space left on device" in p.stderr
    assert "canopycli retry" in p.stderr and "This is a bug" not in p.stderr


def test_debug_shows_the_real_traceback(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    p = run_cli("push", "missing.csv", "-c", str(cfg), env={"CANOPYCLI_DEBUG": "1"})
    assert p.returncode == 2
    assert "Traceback (most recent call last)" in p.stderr and "InputError" in p.stderr
    assert "Aborted" not in p.stderr
    plain = run_cli("push", "missing.csv", "-c", str(cfg))
    assert "Traceback" not in plain.stderr and "missing.csv: no such file" in plain.stderr


def test_status_option_and_a_status_column_are_refused_together(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    data = write_csv(tmp_path / "s.csv", [{"email": "a@example.com", "status": "NEW"}])
    p = run_cli("push", str(data), "-c", str(cfg), "--dry-run", "--status", "REMOVED")
    assert p.returncode == 2 and "has a 'status' column, and --status REMOVED was given" in p.stderr
    assert run_cli("push", str(data), "-c", str(cfg), "--dry-run").returncode == 0
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text('{"email": "a@example.com", "status": "NEW"}\n{"email": "b@example.com"}\n')
    p = run_cli("push", str(jsonl), "-c", str(cfg), "--dry-run", "--status", "REMOVED", "--report-json", "r.json")
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["rows_rejected"], r["profiles_not_sent"]) == (2, 1, 1)
    assert "line 1: has its own 'status' and --status REMOVED was given" in p.stderr


def test_daily_limit_hint_names_retry_not_push_again(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(daily_limit=1)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1})
    data = write_csv(tmp_path / "s.csv", emails(1200))
    p = run_cli("push", str(data), "-c", str(cfg), "--report-json", "r.json")
    assert p.returncode == 3, p.stderr
    run_id = report(tmp_path / "r.json")["run_id"]
    assert f"canopycli retry {run_id}" in p.stderr
    assert "again tomorrow" not in p.stderr


def test_credentials_hint_names_retry(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(token="another-token")
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    p = run_cli("push", str(write_csv(tmp_path / "s.csv", emails(3))), "-c", str(cfg), "--report-json", "r.json")
    assert p.returncode == 4
    assert f"canopycli retry {report(tmp_path / 'r.json')['run_id']}" in p.stderr
    assert not grep_token(p.stdout, p.stderr)


def test_sigterm_hint_names_retry(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(latency=0.2)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1, "batch_size": 100})
    data = write_csv(tmp_path / "s.csv", emails(2000))
    cmd = [sys.executable, "-m", "canopycli", "push", str(data), "-c", str(cfg), "--report-json", "r.json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        if sb.snapshot()["requests"] >= 1:
            break
        subprocess.run(["sleep", "0.05"], check=True)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert f"Finish with: canopycli retry {report(tmp_path / 'r.json')['run_id']}" in err


def test_sandbox_prints_its_final_stats_as_json() -> None:
    p = run_cli("sandbox", "--port", "0", "--duration", "0.3")
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stderr.splitlines() if x.startswith("sandbox stopped: "))
    stats = json.loads(line.removeprefix("sandbox stopped: "))
    assert stats["requests"] == 0 and "day" in stats


def test_demo_leaves_nothing_behind_unless_keep(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    p = run_cli("demo", env=env)
    assert p.returncode == 0, p.stderr
    assert "demo: working in" in p.stderr and "removed when the demo ends" in p.stderr
    assert "--keep keeps them all" in p.stderr and "--rejects" not in p.stderr
    assert list(tmp.iterdir()) == []
    p = run_cli("demo", "--keep", env=env)
    assert p.returncode == 0, p.stderr
    [kept] = list(tmp.iterdir())
    assert kept.name.startswith("canopycli-demo-") and (kept / "rejects.csv").exists()
    assert str(kept) in p.stdout


def test_listings_for_scripts(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    data = write_csv(tmp_path / "s.csv", emails(7))
    assert run_cli("sync", str(data), "-c", str(cfg), "--report-json", "r.json").returncode == 0
    run_id = report(tmp_path / "r.json")["run_id"]
    runs = json.loads(run_cli("runs", "--format", "json").stdout)
    assert [(r["run"], r["command"], r["rows_read"], r["profiles_delivered"]) for r in runs] == [(run_id, "sync", 7, 7)]
    tsv = run_cli("runs", "--format", "tsv").stdout.splitlines()
    assert tsv[0].split("\t")[:3] == ["run", "started", "command"] and tsv[1].split("\t")[0] == run_id
    scopes = json.loads(run_cli("state", "show", "--format", "json").stdout)
    assert [(s["segment"], s["profiles"], s["last_run"]) for s in scopes] == [("WelcomeFlow", 7, run_id)]
    table = run_cli("runs").stdout
    assert run_id in table and not BOX & set(table)
    bad = run_cli("runs", "--format", "xml")
    assert bad.returncode == 2 and "--format takes table, tsv or json" in bad.stderr


def test_report_json_to_stdout_and_rejects_owner_only(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    rows = emails(4)
    rows[1]["email"] = "broken"
    data = write_csv(tmp_path / "s.csv", rows)
    p = run_cli("push", str(data), "-c", str(cfg), "--report-json", "-", "--rejects", "rej.csv")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)  # the JSON report is all of stdout: no table
    assert (r["rows_read"], r["rows_rejected"], r["profiles_delivered"]) == (4, 1, 3)
    assert not (tmp_path / "-").exists()
    assert (tmp_path / "rej.csv").stat().st_mode & 0o077 == 0  # it holds raw addresses
    p = run_cli("push", str(data), "-c", str(cfg), "--rejects", "-")
    assert p.returncode == 2 and "--rejects needs a file name" in p.stderr
    assert not (tmp_path / "-").exists() and sb.snapshot()["requests"] == 1
