"""Damaged input, end to end (the real CLI in a subprocess, the real sandbox on loopback): a quote
that is never closed, a .gz that ends early. Rows before the damage are processed; the damage and
every line after it are rejected or not read, never sent; the run ends with exit 2."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from canopycli.emulators.webhook import Sandbox

from .conftest import emails, report, run_cli, write_config, write_csv

KEYS = ("rows_rejected", "rows_duplicate", "profiles_delivered", "profiles_failed", "profiles_not_sent")


def sha(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def received_ids(rec: Path) -> set[str]:
    out: set[str] = set()
    for line in rec.read_text().splitlines() if rec.exists() else []:
        for c in json.loads(line)["campaigns"]:
            out.update(x["customerId"] for x in c["customers"])
    return out


def adds_up(r: dict) -> bool:
    return sum(r[k] for k in KEYS) + r.get("profiles_unchanged", 0) == r["rows_read"]


def run_bytes(*args: str, stdin: bytes, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "canopycli", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_unclosed_quote_after_delivered_rows(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(record=rec)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    data = write_csv(tmp_path / "s.csv", emails(1200))
    swallowed = [f"late{i}@example.com" for i in range(299)]
    with open(data, "a") as fh:
        fh.write('broken@example.com,"oops\n')  # line 1202
        fh.writelines(f"{e},Late\n" for e in swallowed)
    rej = tmp_path / "rej.csv"
    p = run_cli("push", str(data), "-c", str(cfg), "--rejects", str(rej), "--report-json", str(tmp_path / "r.json"))
    assert p.returncode == 2, p.stderr
    assert f"Error: {data}:1202: a quoted field opens here and is never closed" in p.stderr
    assert "lines 1202-1501 were rejected, not sent" in p.stderr and str(rej) in p.stderr
    assert "This is a bug" not in p.stderr and "@example.com" not in p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["rows_rejected"], r["profiles_delivered"]) == (1500, 300, 1200)
    assert (r["exit_code"], r["stop_reason"]) == (2, "damaged_input") and adds_up(r)
    got = received_ids(rec)
    assert len(got) == 1200 and sb.snapshot()["profiles"] == 1200
    assert not got & {sha(e) for e in [*swallowed, "broken@example.com"]}  # nothing behind the quote was sent
    with rej.open(newline="") as fh:
        rejected = list(csv.reader(fh))[1:]
    assert len(rejected) == 300
    assert rejected[0] == [
        "1202",
        "a quoted field opens on line 1202 and is never closed",
        "",
        "",
        'broken@example.com,"oops',
    ]
    assert rejected[1][-1] == "late0@example.com,Late"
    shown = run_cli("runs", "show", r["run_id"], "--report-json", str(tmp_path / "shown.json"))
    assert shown.returncode == 0 and report(tmp_path / "shown.json")["exit_code"] == 2


def test_unclosed_quote_with_a_short_tail_sends_nothing(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    """1.0 sent u2's line inside u1's note and exited 0."""
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    data = tmp_path / "s.csv"
    data.write_text('email,note\nu1@example.com,"oops\nu2@example.com,fine\n')
    p = run_cli("push", str(data), "-c", str(cfg), "--report-json", str(tmp_path / "r.json"))
    assert p.returncode == 2 and f"Error: {data}:2: a quoted field opens here" in p.stderr
    assert "--rejects" in p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["rows_rejected"], r["profiles_delivered"]) == (2, 2, 0) and adds_up(r)
    assert sb.snapshot()["requests"] == 0


def test_sync_of_a_damaged_snapshot_sends_nothing(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    """A snapshot cut short would remove every profile behind the damage: nothing is sent."""
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    rows = emails(20)
    assert run_cli("sync", str(write_csv(tmp_path / "s.csv", rows)), "-c", str(cfg)).returncode == 0
    before = sb.snapshot()["requests"]
    damaged = tmp_path / "d.csv"
    damaged.write_text(
        "email,firstName\n" + "".join(f"{r['email']},{r['firstName']}\n" for r in rows[:5]) + 'x@example.com,"o\n'
    )
    p = run_cli("sync", str(damaged), "-c", str(cfg), "--rejects", str(tmp_path / "rej.csv"))
    assert p.returncode == 2 and "a sync needs the whole snapshot, so nothing was sent" in p.stderr
    assert f"{damaged}:7: a quoted field opens here" in p.stderr and "This is a bug" not in p.stderr
    assert sb.snapshot()["requests"] == before
    assert len((tmp_path / "rej.csv").read_text().splitlines()) == 2


def gz_csv(rows: int) -> bytes:
    body = "".join(f"u{i}@example.com,N{i}\n" for i in range(rows))
    return gzip.compress(("email,firstName\n" + body).encode())


def test_truncated_gz_file_is_exit_2_before_anything_is_sent(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    whole = gz_csv(30_000)
    data = tmp_path / "s.csv.gz"
    data.write_bytes(whole[: len(whole) // 2])
    p = run_cli("push", str(data), "-c", str(cfg))
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"Error: {data}: cannot be read to the end: the compressed data ends too early")
    assert "truncated or corrupt" in p.stderr and "This is a bug" not in p.stderr
    assert sb.snapshot()["requests"] == 0
    debug = run_cli("push", str(data), "-c", str(cfg), env={"CANOPYCLI_DEBUG": "1"})
    assert "Aborted." not in debug.stderr and "InputError" in debug.stderr  # the real exception, not click's
    assert sb.snapshot()["requests"] == 0


def test_gz_on_stdin_that_breaks_mid_stream(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(record=rec)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    whole = gz_csv(30_000)
    p = run_bytes(
        "push", "-", "--format", "csv", "-c", str(cfg), "--report-json", str(tmp_path / "r.json"),
        stdin=whole[: len(whole) // 2],
    )  # fmt: skip
    err = p.stderr.decode()
    assert p.returncode == 2, err
    r = report(tmp_path / "r.json")
    assert 1_000 < r["rows_read"] < 30_000 and r["profiles_delivered"] == r["rows_read"] and adds_up(r)
    assert r["stop_reason"] == "damaged_input"
    last = r["rows_read"] + 1  # the header is line 1
    assert f"Error: <stdin>:{last}: the input breaks off after this line (the compressed data ends too early)" in err
    assert "This is a bug" not in err and "Aborted." not in err
    assert received_ids(rec) == {sha(f"u{i}@example.com") for i in range(r["rows_read"])}


def test_gz_on_stdin_that_breaks_before_the_first_row(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    p = run_bytes("push", "-", "--format", "csv", "-c", str(cfg), stdin=gz_csv(30_000)[:30])
    err = p.stderr.decode()
    assert p.returncode == 2 and err.startswith("Error: <stdin>: cannot be read: the compressed data ends too early")
    assert "truncated or corrupt" in err and sb.snapshot()["requests"] == 0


def test_state_import_of_a_truncated_gz_is_exit_2_and_changes_nothing(tmp_path: Path) -> None:
    """Sibling: `state import` of a cut-short .gz was "unexpected EOFError ... This is a bug"."""
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    header = {"format": "canopycli-state", "version": 1, "connector": "main", "segment": "WelcomeFlow",
              "identifier": "hashed_email", "profiles": 50_000}  # fmt: skip
    body = json.dumps(header) + "\n" + "".join(json.dumps([f"{i:064x}", "00" * 16]) + "\n" for i in range(50_000))
    whole = gzip.compress(body.encode())
    (tmp_path / "base.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    p = run_cli("state", "import", str(tmp_path / "base.jsonl.gz"), "-c", str(cfg))
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"Error: {tmp_path / 'base.jsonl.gz'}: cannot be read after line ")
    assert "the compressed data ends too early" in p.stderr and "This is a bug" not in p.stderr
    shown = run_cli("state", "show")
    assert "WelcomeFlow" not in shown.stdout  # all or nothing: no baseline was written


def test_damage_after_a_failed_batch_names_retry(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    """Exit 2 for the damage must not hide the batch that failed before it: the message names
    `canopycli retry`, and the retried run still reports its damaged input (exit 2)."""
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(record=rec, fail_first=1)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"retries": 0, "concurrency": 1})
    data = write_csv(tmp_path / "s.csv", emails(1000))
    with open(data, "a") as fh:
        fh.write('broken@example.com,"oops\nlate@example.com,Late\n')
    p = run_cli("push", str(data), "-c", str(cfg), "--report-json", str(tmp_path / "r.json"))
    assert p.returncode == 2, p.stderr
    r = report(tmp_path / "r.json")
    assert (r["profiles_failed"], r["profiles_delivered"], r["rows_rejected"]) == (500, 500, 2) and adds_up(r)
    assert f"500 profiles read before it were not delivered; send them with: canopycli retry {r['run_id']}" in p.stderr
    again = run_cli("retry", r["run_id"], "-c", str(cfg), "--report-json", str(tmp_path / "r2.json"))
    r2 = report(tmp_path / "r2.json")
    assert again.returncode == 2 and "stopped reading its input where it was damaged" in again.stderr
    assert (r2["profiles_delivered"], r2["profiles_failed"], r2["stop_reason"]) == (1000, 0, "damaged_input")
    assert adds_up(r2) and len(received_ids(rec)) == 1000
    assert sha("late@example.com") not in received_ids(rec)
