"""Hostile input, table-driven: what a careless export, a typo or a broken disk does to canopycli.

Each case: the files it writes, the command, the exit code, a fragment of the message (stderr),
and for runs that read rows, the counts of the report. For every case: no traceback, never
"This is a bug", the token never printed, and the counts add up to ``rows_read``.
The CLI runs in-process (Typer's CliRunner) against one real sandbox on loopback.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.emulators.webhook import Sandbox

from .conftest import TOKEN

runner = CliRunner()
COUNTS = ("rows_rejected", "rows_duplicate", "profiles_delivered", "profiles_failed", "profiles_not_sent")

Files = dict[str, bytes | str]


@dataclass
class Case:
    id: str
    files: Files
    args: list[str]
    exit: int
    message: str = ""  # a fragment of stderr
    counts: dict[str, int] = field(default_factory=dict)  # expected report keys (a subset)
    config: dict[str, Any] = field(default_factory=dict)  # overrides: {"connector": {...}, "segment": {...}}
    env: dict[str, str] = field(default_factory=dict)


def csv(*lines: str) -> str:
    return "\n".join(lines) + "\n"


OK3 = csv("email,name", "a@example.com,A", "b@example.com,B", "c@example.com,C")
PUSH = ["push", "{in}", "-c", "{cfg}", "--report-json", "{report}"]
DRY = [*PUSH, "--dry-run"]

CASES = [
    # --- the input file itself ---------------------------------------------------------
    Case("missing file", {}, ["push", "nope.csv", "-c", "{cfg}"], 2, "nope.csv: no such file"),
    Case("a folder as input", {"dir.csv/x": "x"}, ["push", "dir.csv", "-c", "{cfg}"], 2, "is a folder, not a file"),
    Case("empty file", {"in.csv": ""}, DRY, 2, "is empty"),
    Case("only whitespace", {"in.csv": "\n\n  \n"}, DRY, 2, "is empty"),
    Case("binary file", {"in.csv": b"\x00\x01\x02email\n"}, DRY, 2, "binary"),
    Case("unknown extension", {"in.txt": OK3}, ["push", "in.txt", "-c", "{cfg}"], 2, "cannot tell the format"),
    Case("no id column", {"in.csv": csv("mail,name", "a@example.com,A")}, DRY, 2, "no id column 'email'"),
    Case("repeated header name", {"in.csv": csv("email,name,name", "a@example.com,A,B")}, DRY, 2, "repeated column"),
    Case("unknown --format", {"in.csv": OK3}, [*DRY, "--format", "xml"], 2, "unknown --format"),
    Case("two-character delimiter", {"in.csv": OK3}, [*DRY, "--delimiter", ";;"], 2, "one character"),
    Case("header only", {"in.csv": "email,name\n"}, DRY, 0, "", {"rows_read": 0}),
    Case(
        "blank lines between rows",
        {"in.csv": "email\n\na@example.com\n\n\nb@example.com\n"},
        DRY,
        0,
        "",
        {"rows_read": 2, "profiles_not_sent": 2},
    ),
    Case("BOM and CRLF", {"in.csv": "\ufeffemail,name\r\na@example.com,A\r\n"}, DRY, 0, "", {"rows_read": 1}),
    Case(
        "gzip by magic bytes, no .gz suffix",
        {"in.csv": gzip.compress(OK3.encode())},
        DRY,
        0,
        "",
        {"rows_read": 3, "profiles_not_sent": 3},
    ),
    # --- rows -------------------------------------------------------------------------
    Case(
        "invalid emails are rejected, the rest sent",
        {"in.csv": csv("email", "ok@example.com", "no-at-sign", "a@@b.com", "x@example.com")},
        PUSH,
        0,
        "line 3: email: is not a valid email address",
        {"rows_read": 4, "rows_rejected": 2, "profiles_delivered": 2},
    ),
    Case(
        "ragged row",
        {"in.csv": csv("email,name", "a@example.com,A", "b@example.com,B,extra", "c@example.com")},
        PUSH,
        0,
        "has 3 fields, the header has 2",
        {"rows_read": 3, "rows_rejected": 2, "profiles_delivered": 1},
    ),
    Case(
        "duplicates after normalization",
        {"in.csv": csv("email", "a@example.com", " A@EXAMPLE.COM ", "b@example.com")},
        PUSH,
        0,
        "duplicate identifier: line 2",
        {"rows_read": 3, "rows_duplicate": 1, "profiles_delivered": 2},
    ),
    Case(
        "bad status value",
        {"in.csv": csv("email,status", "a@example.com,NEW", "b@example.com,DELETED", "c@example.com,")},
        PUSH,
        0,
        "status: must be NEW, MODIFIED or REMOVED",
        {"rows_read": 3, "rows_rejected": 2, "profiles_delivered": 1},
    ),
    Case("--status that is not a status", {"in.csv": OK3}, [*DRY, "--status", "GONE"], 2, "--status must be NEW"),
    Case(
        "--status and a status column together",
        {"in.csv": csv("email,status", "a@example.com,NEW")},
        [*DRY, "--status", "REMOVED"],
        2,
        "which one applies cannot be guessed",
    ),
    Case(
        "JSONL: invalid JSON, not an object, nested value",
        {
            "in.jsonl": '{"email": "a@example.com"}\n{"email": \n[1, 2]\n'
            '{"email": "b@example.com", "tags": {"x": 1}}\n{"email": "c@example.com"}\n'
        },
        PUSH,
        0,
        "not valid JSON",
        {"rows_read": 5, "rows_rejected": 3, "profiles_delivered": 2},
    ),
    Case(
        "JSONL: id missing or not text",
        {"in.jsonl": '{"name": "x"}\n{"email": 42}\n{"email": null}\n{"email": "a@example.com"}\n'},
        PUSH,
        0,
        "no 'email' value",
        {"rows_read": 4, "rows_rejected": 3, "profiles_delivered": 1},
    ),
    Case(
        "typed params that do not convert",
        {
            "in.csv": csv(
                "email,age,born,vip",
                "a@example.com,x,2020-01-01,yes",
                "b@example.com,3,01/02/2020,no",
                "c@example.com,4,2020-02-02,maybe",
                "d@example.com,5,2020-03-03,1",
            )
        },  # fmt: skip
        PUSH,
        0,
        "age: is not a number",
        {"rows_read": 4, "rows_rejected": 3, "profiles_delivered": 1},
        {
            "segment": {
                "params": [
                    {"name": "age", "type": "number"},
                    {"name": "born", "type": "date"},
                    {"name": "vip", "type": "boolean"},
                ]
            }
        },  # fmt: skip
    ),
    Case(
        "customer id too long",
        {"in.csv": csv("cid", "C-1", "x" * 101)},
        PUSH,
        0,
        "is longer than 100 characters",
        {"rows_read": 2, "rows_rejected": 1, "profiles_delivered": 1},
        {"connector": {"identifier": "customer_id"}, "segment": {"id_column": "cid"}},
    ),
    Case(
        "a string param over max_length",
        {"in.csv": csv("email,name", "a@example.com," + "n" * 300, "b@example.com,B")},
        PUSH,
        0,
        "name: is longer than 256 characters",
        {"rows_read": 2, "rows_rejected": 1, "profiles_delivered": 1},
    ),
    # --- damaged files and values that must not be guessed (issue 9) --------------------------
    Case(
        "a quote that never closes",
        {"in.csv": csv("email,note", 'a@example.com,"oops', *[f"u{i}@example.com,n" for i in range(40)])},
        PUSH,
        2,
        "a quoted field opens here and is never closed",
        {"rows_read": 41, "rows_rejected": 41, "profiles_delivered": 0},
    ),
    Case(
        "a truncated .gz",
        {"in.csv.gz": gzip.compress(("email\n" + "".join(f"u{i}@example.com\n" for i in range(3000))).encode())[:-40]},
        PUSH,
        2,
        "in.csv.gz",
    ),
    Case("UTF-16 input", {"in.csv": "email\na@example.com\n".encode("utf-16")}, DRY, 2, "UTF-16"),
    Case(
        "a headerless file names no address",
        {"in.csv": csv("a@example.com,Ann", "b@example.com,Bob")},
        DRY,
        2,
        "the file may have no header line",
    ),
    Case(
        "numbers out of range, Unicode digits, week dates",
        {
            "in.csv": csv(
                "email,n,d",
                "a@example.com,1e400,2024-01-01",
                "b@example.com,\u0663,2024-01-01",
                "c@example.com,3,2024-W01-1",
                "d@example.com,9007199254740993,2024-01-01",
                "e@example.com,4,2024-02-02",
            )
        },  # fmt: skip
        PUSH,
        0,
        "n: is out of range",
        {"rows_read": 5, "rows_rejected": 4, "profiles_delivered": 1},
        {"segment": {"params": [{"name": "n", "type": "number"}, {"name": "d", "type": "date"}]}},
    ),
    Case(
        "JSONL integer past 2^53",
        {"in.jsonl": '{"email": "a@example.com", "n": 123456789012345678901234}\n{"email": "b@example.com", "n": 5}\n'},
        PUSH,
        0,
        "out of range",
        {"rows_read": 2, "rows_rejected": 1, "profiles_delivered": 1},
    ),
    Case(
        "a YAML alias bomb",
        {
            "in.csv": OK3,
            "bomb.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
        },
        ["push", "{in}", "-c", "bomb.yaml"],
        2,
        "bomb.yaml",
    ),  # fmt: skip
    Case(
        "a token in the endpoint's fragment, any case",
        {"in.csv": OK3},
        DRY,
        2,
        "token",
        {},
        {"connector": {"endpoint": "https://h.example/x#Token=abc"}},
    ),  # fmt: skip
    Case(
        "a bearer token that is not ASCII",
        {"in.csv": OK3},
        DRY,
        2,
        "ASCII",
        {},
        {"connector": {"auth": "bearer", "token": "tök-1234567"}},
    ),  # fmt: skip
    Case(
        "an unknown --segment lists the segments",
        {"in.csv": OK3},
        [*DRY, "--segment", "Welcome"],
        2,
        "the segments are: WelcomeFlow",
    ),  # fmt: skip
    Case(
        "a sync of a damaged snapshot sends nothing",
        {"in.csv": csv("email,note", "a@example.com,x", 'b@example.com,"open')},
        ["sync", "{in}", "-c", "{cfg}"],
        2,
        "never closed",
    ),
    # --- options and output paths ----------------------------------------------------------
    Case("--out without --dry-run", {"in.csv": OK3}, [*PUSH, "--out", "bodies"], 2, "add --dry-run"),
    Case("--out is a file", {"in.csv": OK3, "f": "x"}, [*DRY, "--out", "f"], 2, "is a file, not a folder"),
    Case(
        "--report-json in a missing folder",
        {"in.csv": OK3},
        ["push", "{in}", "-c", "{cfg}", "--report-json", "no/such/r.json"],
        2,
        "its folder no/such does not exist",
    ),  # fmt: skip
    Case("--rejects is a folder", {"in.csv": OK3, "d/x": "x"}, [*PUSH, "--rejects", "d"], 2, "is a folder"),
    Case("--concurrency 0", {"in.csv": OK3}, [*DRY, "--concurrency", "0"], 2, "Invalid value for '--concurrency'"),
    Case("retry without a run", {}, ["retry", "-c", "{cfg}"], 2, "name a run"),
    Case("retry of an unknown run", {}, ["retry", "2020-nope", "-c", "{cfg}"], 2, "no run '2020-nope'"),
    Case("runs prune with a bad age", {}, ["runs", "prune", "--older-than", "soon"], 2, "--older-than takes"),
    Case(
        "sync with a status column",
        {"in.csv": csv("email,status", "a@example.com,NEW")},
        ["sync", "{in}", "-c", "{cfg}"],
        2,
        "sync derives NEW/MODIFIED/REMOVED itself",
    ),  # fmt: skip
    Case(
        "sync --max-remove out of range",
        {"in.csv": OK3},
        ["sync", "{in}", "-c", "{cfg}", "--max-remove", "150"],
        2,
        "--max-remove takes a percentage",
    ),  # fmt: skip
    Case(
        "state import of a file that is no export",
        {"x.jsonl": '{"a": 1}\n'},
        ["state", "import", "x.jsonl", "-c", "{cfg}"],
        2,
        "not a canopycli state export",
    ),  # fmt: skip
    # --- the config ---------------------------------------------------------------------
    Case("config file missing", {"in.csv": OK3}, ["push", "{in}", "-c", "none.yaml"], 2, "file not found"),
    Case(
        "config is not YAML",
        {"in.csv": OK3, "bad.yaml": "connectors: [\n"},
        ["push", "{in}", "-c", "bad.yaml"],
        2,
        "invalid YAML",
    ),  # fmt: skip
    Case("config has an unknown key", {"in.csv": OK3}, DRY, 2, "unknown key", {}, {"connector": {"tokn": "x"}}),
    Case(
        "endpoint carries the token",
        {"in.csv": OK3},
        DRY,
        2,
        "carries a token= query parameter",
        {},
        {"connector": {"endpoint": "https://h.example/x?token=abc"}},
    ),  # fmt: skip
    Case(
        "plain http to a remote host",
        {"in.csv": OK3},
        DRY,
        2,
        "must use https",
        {},
        {"connector": {"endpoint": "http://h.example/x"}},
    ),  # fmt: skip
    Case(
        "token variable not set",
        {"in.csv": OK3},
        DRY,
        2,
        "environment variable NOPE_TOKEN is not set",
        {},
        {"connector": {"token": "${NOPE_TOKEN}"}},
    ),  # fmt: skip
    Case(
        "batch_size over the connector's ceiling",
        {"in.csv": OK3},
        DRY,
        2,
        "less than or equal to 600",
        {},
        {"connector": {"batch_size": 601}},
    ),  # fmt: skip
]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Sandbox]:
    sb = Sandbox(TOKEN, port=0).start()
    yield sb
    sb.stop()


def _write(root: Path, files: Files) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _config(path: Path, endpoint: str, overrides: dict[str, Any]) -> None:
    conn = {"endpoint": endpoint, "token": "${CANOPY_TOKEN}", "identifier": "hashed_email", "backoff": 0.01}
    conn.update(overrides.get("connector", {}))
    seg = {"connector": "main", "id_column": "email"}
    seg.update(overrides.get("segment", {}))
    path.write_text(yaml.safe_dump({"connectors": {"main": conn}, "segments": {"WelcomeFlow": seg}}))


def _fill(args: list[str], files: Files) -> list[str]:
    inputs = [n for n in files if n.startswith("in.")]
    values = {"{cfg}": "c.yaml", "{report}": "r.json", "{in}": inputs[0] if inputs else "in.csv"}
    return [values.get(a, a) for a in args]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_input(case: Case, webhook: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    _write(tmp_path, case.files)
    _config(tmp_path / "c.yaml", webhook.endpoint, case.config)
    result = runner.invoke(app, _fill(case.args, case.files))
    out, err = result.stdout, result.stderr
    assert result.exit_code == case.exit, (out, err)
    assert case.message in err, err
    assert "This is a bug" not in err and "Traceback" not in out + err
    assert TOKEN not in out + err
    if case.exit == 2 and "Usage:" not in err:  # a user's mistake: one error line (click's usage errors aside)
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, err
    report = tmp_path / "r.json"
    if case.counts:
        data = json.loads(report.read_text())
        assert {k: data[k] for k in case.counts} == case.counts
        assert sum(data[k] for k in COUNTS) + data.get("profiles_unchanged", 0) == data["rows_read"]
        assert TOKEN not in report.read_text()


def test_there_are_enough_distinct_cases() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 40 and len(ids) == len(set(ids))
