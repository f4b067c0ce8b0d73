from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from canopycli.emulators.webhook import Sandbox
from canopycli.model import Reject

# A distinctive token: tests grep every output, file and database for it.
TOKEN = "tok-SECRET-9f8e7d6c5b4a39281706"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's config or state, or depends on the current folder."""
    monkeypatch.delenv("CANOPYCLI_CONFIG", raising=False)
    monkeypatch.delenv("CANOPYCLI_DEBUG", raising=False)
    monkeypatch.setenv("CANOPYCLI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CANOPY_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes on loopback; all are stopped at the end of the test."""
    started: list[Sandbox] = []

    def start(**kwargs: Any) -> Sandbox:
        kwargs.setdefault("port", 0)
        sb = Sandbox(kwargs.pop("token", TOKEN), **kwargs).start()
        started.append(sb)
        return sb

    yield start
    for sb in started:
        sb.stop()


def write_config(
    path: Path,
    endpoint: str,
    *,
    connector: dict[str, Any] | None = None,
    segment: dict[str, Any] | None = None,
    segment_name: str = "WelcomeFlow",
) -> Path:
    conn = {"endpoint": endpoint, "token": "${CANOPY_TOKEN}", "identifier": "hashed_email", "backoff": 0.01}
    conn.update(connector or {})
    seg = {"connector": "main", "id_column": "email"}
    seg.update(segment or {})
    path.write_text(yaml.safe_dump({"connectors": {"main": conn}, "segments": {segment_name: seg}}, sort_keys=False))
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return path


def emails(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"email": f"user{i}@example.com", "firstName": f"Name{i}"} for i in range(start, start + n)]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """The real CLI, in a subprocess, as a user or cron would run it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "canopycli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        input=input.decode() if input is not None else None,
    )


def report(path: Path) -> dict[str, Any]:
    """A ``--report-json`` file."""
    return dict(json.loads(path.read_text()))


def grep_token(*texts: str | bytes) -> bool:
    return any((TOKEN.encode() if isinstance(t, bytes) else TOKEN) in t for t in texts)


def tree_has_token(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def reject_of(got: object) -> object:
    """A reject as (line, reason): the id it may carry (for sync) is not what unit tests check."""
    return Reject(*got[:2]) if isinstance(got, Reject) else got


def cli_commands() -> list[str]:
    """Every command and sub-command of the app (``push``, ``runs``, ``runs show``, ...), from the app itself."""
    import typer.main

    from canopycli.cli import app

    def walk(group: Any, prefix: str) -> Iterator[str]:
        for name, command in getattr(group, "commands", {}).items():
            yield f"{prefix}{name}"
            yield from walk(command, f"{prefix}{name} ")

    return sorted(walk(typer.main.get_command(app), ""))
