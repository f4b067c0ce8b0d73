"""The state folder: owner-only files, and a clear exit 2 (or a resume hint) when it cannot be used."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.emulators.webhook import Sandbox
from canopycli.errors import DiskFullError, ExitCode, StateError
from canopycli.pipeline import diff as sync_module
from canopycli.store import Store
from canopycli.store.baseline import scratch_error
from canopycli.store.db import sqlite_trouble
from canopycli.store.locks import SegmentLock, os_error, state_dir
from canopycli.store.runs import Runs

from .conftest import emails, report, run_cli, write_config, write_csv

runner = CliRunner()


@pytest.fixture(autouse=True)
def _usual_umask() -> Any:
    """The usual umask, under which what SQLite creates by itself would be 0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Every file and folder in the state folder (the folder itself too), with its permission bits."""
    return {str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def open_to_others(root: Path) -> dict[str, str]:
    return {name: oct(mode) for name, mode in modes(root).items() if mode & 0o077}


def wait_for(pred: Callable[[], bool], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


# --- owner-only ---------------------------------------------------------------------------------


def test_every_file_in_the_state_folder_is_owner_only_after_a_push_a_kill_and_a_sync(
    sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = sandbox(latency=0.05)
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1, "batch_size": 100}))
    data = write_csv(tmp_path / "s.csv", emails(3000))
    root = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "canopycli", "push", str(data), "-c", cfg],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: sb.snapshot()["accepted"] >= 2)
    proc.send_signal(signal.SIGKILL)  # what a crash leaves behind: the WAL with unacknowledged bodies
    proc.wait(timeout=10)
    found = modes(root)
    assert {"state/journal.sqlite3-wal", "state/journal.sqlite3-shm", "state/locks"} <= set(found)
    assert open_to_others(root) == {}
    assert run_cli("retry", "--last", "-c", cfg).returncode == 0
    p = run_cli("sync", str(data), "-c", cfg, "-s", "WelcomeFlow")
    assert p.returncode == 0, p.stderr
    assert open_to_others(root) == {}
    with Store(root):  # while a journal is open, its -wal and -shm exist
        assert {"state/journal.sqlite3-wal", "state/journal.sqlite3-shm"} <= set(modes(root))
        assert open_to_others(root) == {}


def test_the_journal_is_created_owner_only_and_tightens_side_files_left_wider(tmp_path: Path) -> None:
    with Store(tmp_path) as j:
        j.requests.save("https://h/x", "2026-01-01", 1)
        assert open_to_others(tmp_path) == {} and len(modes(tmp_path)) == 4  # the folder, db, -wal, -shm
    # a journal whose files an older release left 0644, with a process still holding it open
    other = tmp_path / "old"
    other.mkdir(mode=0o700)
    db = sqlite3.connect(other / "journal.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE x (y)")
    for p in other.iterdir():
        p.chmod(0o644)
    assert len(open_to_others(other)) == 3
    with Store(other):
        assert open_to_others(other) == {}
    db.close()


def test_lock_folder_and_files_are_owner_only(tmp_path: Path) -> None:
    (tmp_path / "locks").mkdir(mode=0o755)  # as 1.0 made it
    with SegmentLock(tmp_path, "main", "S").acquire(note="push"):
        assert open_to_others(tmp_path) == {}


def test_a_new_state_folder_is_0700_and_an_existing_wider_one_is_kept_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = state_dir(tmp_path / "a" / "b" / "state")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert stat.S_IMODE(made.parent.stat().st_mode) == 0o755  # parents are the user's: usual modes
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    with caplog.at_level(logging.WARNING, logger="canopycli"):
        assert state_dir(shared) == shared
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # not changed: it may be a folder the user chose
    assert f"state folder {shared} is open to other users (mode 0755)" in caplog.text
    assert f"chmod 700 {shared}" in caplog.text
    p = run_cli("runs", "--state-dir", str(shared))  # the warning reaches stderr, one line
    assert p.returncode == 0 and p.stderr.count("Warning: the state folder") == 1


def test_the_sync_scratch_database_is_an_unlinked_owner_only_file_outside_the_state_folder(
    sandbox: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc")
    seen: list[tuple[str, int]] = []
    check = sync_module.DiffStage._check_removals

    def look(self: Any, *args: Any) -> None:  # while the diff's scratch database is open
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
                mode = stat.S_IMODE(os.stat(f"/proc/self/fd/{fd}").st_mode)
            except OSError:
                continue
            if "etilqs_" in target:  # SQLite's temporary files
                seen.append((target, mode))
        check(self, *args)

    monkeypatch.setattr(sync_module.DiffStage, "_check_removals", look)
    monkeypatch.setattr(sync_module, "_SCRATCH_CACHE_KIB", 16)  # spill to the file at once
    sb = sandbox()
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint))
    r = runner.invoke(app, ["sync", str(write_csv(tmp_path / "s.csv", emails(2000))), "-c", cfg])
    assert r.exit_code == 0, r.stderr
    assert seen, "the scratch database never reached the disk"
    for target, mode in seen:
        assert target.endswith("(deleted)") and mode == 0o600 and str(tmp_path) not in target


# --- a state folder that cannot be used: exit 2, never "This is a bug" ---------------------------


def clear(r: Any, code: int, *fragments: str) -> None:
    assert r.exit_code == code, (r.exit_code, r.stderr)
    assert "This is a bug" not in r.stderr and "Traceback" not in r.stderr
    for f in fragments:
        assert f in r.stderr, r.stderr


def _a_file(s: Path) -> tuple[Path, str]:
    s.write_text("x")
    return s, f"the state folder {s} is a file, not a folder"


def _under_a_file(s: Path) -> tuple[Path, str]:
    s.write_text("x")
    return s / "state", f"the state folder {s}/state is under {s}, which is a file"


def _locks_a_file(s: Path) -> tuple[Path, str]:
    s.mkdir()
    (s / "locks").write_text("x")
    return s, f"{s}/locks is a file, not a folder"


def _journal_a_folder(s: Path) -> tuple[Path, str]:
    (s / "journal.sqlite3").mkdir(parents=True)
    return s, f"the run journal {s}/journal.sqlite3 is a folder"


def _journal_not_a_database(s: Path) -> tuple[Path, str]:
    s.mkdir()
    (s / "journal.sqlite3").write_bytes(b"not a database, at all" * 100)
    return s, f"{s}/journal.sqlite3 is not a canopycli run journal, or it is damaged"


@pytest.mark.parametrize("setup", [_a_file, _under_a_file, _locks_a_file, _journal_a_folder, _journal_not_a_database])
def test_an_unusable_state_folder_is_a_clear_exit_2(tmp_path: Path, setup: Callable[[Path], tuple[Path, str]]) -> None:
    cfg = str(write_config(tmp_path / "c.yaml", "https://h.example/x"))
    data = str(write_csv(tmp_path / "s.csv", emails(3)))
    where, expected = setup(tmp_path / "st")
    for args in (["push", data, "-c", cfg], ["runs"], ["state", "show"], ["state", "export", "b.jsonl", "-c", cfg]):
        if setup is _locks_a_file and args[0] != "push":
            continue  # only a push takes a lock
        clear(runner.invoke(app, [*args, "--state-dir", str(where)]), 2, expected)


def test_a_read_only_state_folder_is_a_clear_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # tests run as root, for whom permission bits do not stop writes: ask os.access as a user would
    s = tmp_path / "ro"
    s.mkdir(mode=0o700)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == s and m & os.W_OK else real(p, m, **kw))
    clear(runner.invoke(app, ["runs", "--state-dir", str(s)]), 2, f"the state folder {s} is read-only", "permissions")


def test_errors_from_the_os_and_sqlite_say_what_happened() -> None:
    assert isinstance(os_error(OSError(28, "No space left on device"), "x"), DiskFullError)
    assert "read-only" in str(os_error(PermissionError(13, "Permission denied"), "x"))
    assert sqlite_trouble(sqlite3.OperationalError("database or disk is full")) == "full"
    assert sqlite_trouble(sqlite3.OperationalError("attempt to write a readonly database")) == "readonly"
    assert sqlite_trouble(sqlite3.DatabaseError("file is not a database")) == "damaged"
    assert sqlite_trouble(sqlite3.IntegrityError("UNIQUE constraint failed")) is None  # a bug stays a bug
    assert sqlite_trouble(sqlite3.OperationalError("no such table: x")) is None
    err = scratch_error(sqlite3.OperationalError("database or disk is full"))
    assert isinstance(err, DiskFullError) and "nothing was sent" in str(err) and "SQLITE_TMPDIR" in str(err)


# --- a full disk (or a journal turned read-only) mid-run ---------------------------------------


_start_run = Runs.start


def _after_start(monkeypatch: pytest.MonkeyPatch, pragma: Callable[[sqlite3.Connection], str]) -> None:
    """Once the run is in the journal, make its connection fail writes the way a machine would."""
    original = Runs.start

    def start_run(self: Runs, **kwargs: Any) -> str:
        run_id = original(self, **kwargs)
        self.db.execute(pragma(self.db))
        return run_id

    monkeypatch.setattr(Runs, "start", start_run)


def test_a_full_disk_mid_run_keeps_the_journal_consistent_and_the_run_resumable(
    sandbox: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = sandbox(fail_requests={2})  # batch 2 fails: its outcome needs room (the body is kept for retry)
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint, connector={"retries": 0, "concurrency": 1}))
    data = str(write_csv(tmp_path / "s.csv", emails(1500)))
    # SQLite's own "database or disk is full" (SQLITE_FULL): the journal may not grow past its size
    _after_start(monkeypatch, lambda db: f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0] + 1}")
    r = runner.invoke(app, ["push", data, "-c", cfg, "--report-json", "r.json"])
    run_id = Store(tmp_path / "state").runs.last().id
    clear(r, 1, "the disk holding the run journal", "is full", "Free some space.")
    assert f"Run {run_id} is recorded up to this point. Finish it with: canopycli retry {run_id}" in r.stderr
    assert "--state-dir" not in r.stderr  # the run is in this journal: another folder would lose it
    assert sb.snapshot()["accepted"] == 1
    monkeypatch.setattr(Runs, "start", _start_run)  # space freed
    with Store(tmp_path / "state") as j:
        assert j.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert [b.state for b in j.runs.batches(run_id)][0] == "sent"  # what was committed is kept
    assert runner.invoke(app, ["runs", "show", run_id]).exit_code == 0
    r = runner.invoke(app, ["retry", run_id, "-c", cfg, "--report-json", "r.json", "-q"])
    assert r.exit_code == 0, r.stderr
    done = report(tmp_path / "r.json")
    assert (done["profiles_delivered"], done["rows_read"]) == (1500, 1500)
    stats = sb.snapshot()
    assert (stats["accepted"], stats["profiles"], stats["duplicates"]) == (3, 1500, 0)


def test_a_journal_that_turns_read_only_before_anything_is_sent_is_exit_2(
    sandbox: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = sandbox()
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint))
    _after_start(monkeypatch, lambda db: "PRAGMA query_only=1")  # SQLite's "attempt to write a readonly database"
    r = runner.invoke(app, ["push", str(write_csv(tmp_path / "s.csv", emails(10))), "-c", cfg])
    clear(r, 2, "is read-only for this user", "Fix the permissions", "Start it again with: canopycli retry")
    assert sb.snapshot()["requests"] == 0


def test_a_journal_error_mid_retry_names_the_run_and_exits_1(tmp_path: Path) -> None:
    with Store(tmp_path) as j:
        run_id = j.runs.start(
            command="push", config_path=None, connector="c", segment="S", segment_name="S",
            endpoint="https://h/x", input="-", input_sha256=None, settings={},
        )  # fmt: skip
        j.runs.claim(run_id)
        j.db.execute("PRAGMA query_only=1")
        with pytest.raises(StateError) as got:
            j.runs.finish(run_id, "finished", 0, None)
    assert (got.value.exit_code, got.value.run_id, got.value.sent) == (ExitCode.FAILED, run_id, True)


def test_state_export_to_a_reader_that_goes_away_stops_quietly(tmp_path: Path, sandbox: Callable[..., Sandbox]) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    assert run_cli("sync", str(write_csv(tmp_path / "s.csv", emails(3000))), "-c", str(cfg)).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "canopycli", "state", "export", "-", "-c", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"Error" not in err and b"Traceback" not in err
