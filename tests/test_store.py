"""The store: a journal written by 1.0 opens, migrates and retries; migrations, roles, transactions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from canopycli.emulators.webhook import Sandbox
from canopycli.errors import ExitCode, StateError
from canopycli.store import Store, schema
from canopycli.store.db import connect, transaction

from .conftest import report, run_cli, write_config

FIXTURE = Path(__file__).parent / "fixtures" / "journal-1.0.sql"


def journal_1_0(root: Path) -> sqlite3.Connection:
    """A state folder holding the journal canopycli 1.0 wrote (see fixtures/make_journal_1_0.py)."""
    root.mkdir(mode=0o700)
    db = sqlite3.connect(root / "journal.sqlite3")
    db.executescript(FIXTURE.read_text())
    return db


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_run_journaled_by_1_0_is_retried_by_the_real_cli_with_its_uuids(
    sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = sandbox(record=tmp_path / "got.jsonl")
    root = tmp_path / "state"  # $CANOPYCLI_STATE_DIR (conftest)
    db = journal_1_0(root)
    assert db.execute("PRAGMA user_version").fetchone() == (0,)  # 1.0 never set it
    (run_id,) = db.execute("SELECT id FROM runs WHERE command = 'push'").fetchone()
    failed = db.execute(
        "SELECT uuid, body FROM batches WHERE run_id = ? AND state = 'failed' ORDER BY idx", (run_id,)
    ).fetchall()
    assert len(failed) == 2 and all(body for _, body in failed)
    # The run went to the sandbox 1.0 ran on another port; point it at this one. Its stored bodies
    # are resent as they are: the uuids were fixed when the batches were built.
    db.execute("UPDATE runs SET endpoint = ? WHERE id = ?", (sb.endpoint, run_id))
    db.commit()
    db.close()
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint, connector={"retries": 0, "batch_size": 3}))

    p = run_cli("retry", run_id, "-c", cfg, "--report-json", str(tmp_path / "r.json"), "-q")

    assert p.returncode == 0, p.stderr
    sent = [json.loads(line) for line in (tmp_path / "got.jsonl").read_text().splitlines()]
    assert sorted(b["uuid"] for b in sent) == sorted(uuid for uuid, _ in failed)
    assert sorted(json.dumps(b, sort_keys=True) for b in sent) == sorted(
        json.dumps(json.loads(body), sort_keys=True) for _, body in failed
    )
    done = report(tmp_path / "r.json")
    assert (done["run_id"], done["exit_code"], done["rows_read"], done["profiles_delivered"]) == (run_id, 0, 7, 7)
    assert sb.snapshot()["accepted"] == 2
    assert user_version(root / "journal.sqlite3") == schema.VERSION
    listed = run_cli("runs", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [r["run"] for r in json.loads(listed.stdout)] == [
        "20261123-205536-85fd",  # 1.0's sync
        run_id,
    ]
    shown = run_cli("runs", "show", run_id)
    assert shown.returncode == 0 and "batches by state: delivered 3" in shown.stdout, shown.stderr
    state = run_cli("state", "show", "--format", "json")
    assert state.returncode == 0 and json.loads(state.stdout)[0]["profiles"] == 4, state.stderr


def test_a_1_0_journal_gains_what_later_versions_added(tmp_path: Path) -> None:
    journal_1_0(tmp_path / "state").close()
    with Store(tmp_path / "state") as store:
        assert store.db.execute("PRAGMA user_version").fetchone() == (schema.VERSION,)
        assert store.baselines.scope("main/WelcomeFlow") == {
            "connector": "main", "segment": "WelcomeFlow", "identifier": "hashed_email",
            "endpoint": None, "segment_name": None,
        }  # fmt: skip
        assert store.baselines.size("main/WelcomeFlow") == 4
        assert [b.removals for b in store.runs.batches("20261123-205536-85fd")] == [0, 0]


def columns(db: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every table's columns (name, type, not null, default, primary key) and every index's name."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    shape: dict[str, list[tuple[object, ...]]] = {
        t: [r[1:] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables
    }
    shape["indexes"] = [r for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")]
    return shape


def test_the_migrations_build_exactly_the_schema(tmp_path: Path) -> None:
    expected = sqlite3.connect(":memory:")
    expected.executescript(schema.SCHEMA)
    (tmp_path / "new").mkdir()
    with Store(tmp_path / "new") as new:
        assert columns(new.db) == columns(expected)
    journal_1_0(tmp_path / "old").close()
    with Store(tmp_path / "old") as old:
        assert columns(old.db) == columns(expected)


def test_a_journal_from_before_sync_gains_the_sync_tables_and_batch_removals(tmp_path: Path) -> None:
    before_sync = schema.SCHEMA_1_0.split("CREATE INDEX")[0].replace("    removals INTEGER NOT NULL DEFAULT 0,\n", "")
    assert "removals" not in before_sync and "baseline" not in before_sync
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    db.executescript(before_sync)
    db.execute(
        "INSERT INTO runs (id, command, started, connector, segment, segment_name, endpoint, settings)"
        " VALUES ('r1', 'push', '2025-01-01T00:00:00.000+00:00', 'main', 'S', 'S', 'https://h/x', '{}')"
    )
    db.execute(
        "INSERT INTO batches (run_id, idx, uuid, profiles, state, created, updated)"
        " VALUES ('r1', 0, 'u', 1, 'failed', '2025-01-01', '2025-01-01')"
    )
    db.commit()
    db.close()
    with Store(tmp_path) as store:
        assert [(b.uuid, b.removals) for b in store.runs.batches("r1")] == [("u", 0)]
        assert store.baselines.scopes() == []
        assert store.db.execute("PRAGMA user_version").fetchone() == (schema.VERSION,)


def test_a_journal_from_a_newer_canopycli_is_refused_not_misread(tmp_path: Path) -> None:
    with Store(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="written by a newer canopycli") as got:
        Store(tmp_path)
    assert got.value.exit_code == ExitCode.USAGE
    assert user_version(tmp_path / "journal.sqlite3") == schema.VERSION + 1  # left as it was


def test_each_role_has_its_own_connection_and_sees_the_others_commits(tmp_path: Path) -> None:
    with Store(tmp_path, "intake") as intake, Store(tmp_path, "flusher") as flusher:
        assert intake.db is not flusher.db and (intake.role, flusher.role) == ("intake", "flusher")
        intake.requests.save("https://h/x", "2026-01-01", 3)
        assert flusher.requests.count("https://h/x", "2026-01-01") == 3
    with pytest.raises(ValueError, match="unknown journal role 'nope'"):
        connect(tmp_path / "journal.sqlite3", "nope")


def test_a_transaction_commits_whole_or_not_at_all(tmp_path: Path) -> None:
    db = connect(tmp_path / "journal.sqlite3", "cli")
    with transaction(db):
        db.execute("INSERT INTO requests VALUES ('a', 'd', 1)")
        db.execute("INSERT INTO requests VALUES ('b', 'd', 1)")
    with pytest.raises(sqlite3.IntegrityError), transaction(db):
        db.execute("INSERT INTO requests VALUES ('c', 'd', 1)")
        db.execute("INSERT INTO requests VALUES ('a', 'd', 2)")  # the same key: the whole transaction goes
    assert not db.in_transaction
    assert db.execute("SELECT endpoint FROM requests ORDER BY endpoint").fetchall() == [("a",), ("b",)]
    db.close()
