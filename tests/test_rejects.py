"""--rejects keeps what was read, so a rejected row can be fixed and sent again; and the report of
a run that read damaged input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.errors import ExitCode
from canopycli.model import STOP_CREDENTIALS, STOP_INTERRUPTED
from canopycli.pipeline.report import RejectsWriter, Report

from .conftest import write_config

runner = CliRunner()


def rows_of(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return list(csv.reader(fh))


def test_writer_pads_short_rows_keeps_extra_fields_and_raw_lines(tmp_path: Path) -> None:
    w = RejectsWriter(tmp_path / "r.csv", ["email", "city"])
    w.write(2, "short", ["a@x.com"])
    w.write(3, "long", ["b@x.com", "Gent", "BE", ""])
    w.write(4, "unclosed", 'c@x.com,"Li\udce8ge')
    w.write(5, "dict", {"city": "Gent", "email": "d@x.com"})
    w.close()
    assert rows_of(tmp_path / "r.csv") == [
        ["line", "reason", "email", "city"],
        ["2", "short", "a@x.com", ""],
        ["3", "long", "b@x.com", "Gent", "BE", ""],  # the extra fields after the header's columns
        ["4", "unclosed", "", "", 'c@x.com,"Li\udce8ge'],  # the line as it was, after the columns
        ["5", "dict", "d@x.com", "Gent"],
    ]
    assert b"Li\xe8ge" in (tmp_path / "r.csv").read_bytes()  # bytes that were not UTF-8, as they were


def test_writer_jsonl_keeps_the_line_or_the_object(tmp_path: Path) -> None:
    w = RejectsWriter(tmp_path / "r.csv", None)
    w.write(1, "not JSON", '{"email": "a@x.com",')
    w.write(2, "object", {"email": "b@x.com", "n": 2**70})  # orjson cannot write this integer
    w.close()
    got = rows_of(tmp_path / "r.csv")
    assert got[1] == ["1", "not JSON", '{"email": "a@x.com",']
    assert got[2] == ["2", "object", '{"email": "b@x.com", "n": 1180591620717411303424}']


def push_rejects(tmp_path: Path, name: str, content: bytes, *extra: str, command: str = "push") -> list[list[str]]:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x", connector={"max_body_bytes": 1_000})
    (tmp_path / name).write_bytes(content)
    r = runner.invoke(app, [command, name, "-c", str(cfg), "--dry-run", "--rejects", "rej.csv", "-q", *extra])
    assert r.exit_code == 0, r.stderr
    return rows_of(tmp_path / "rej.csv")


def test_ragged_rows_keep_their_fields(tmp_path: Path) -> None:
    got = push_rejects(tmp_path, "s.csv", b"email,city\na@x.com\nb@x.com,Gent,BE\nc@x.com,Gent\n")
    assert got[1:] == [
        ["2", "has 1 fields, the header has 2", "a@x.com", ""],
        ["3", "has 3 fields, the header has 2", "b@x.com", "Gent", "BE"],
    ]


def test_bad_jsonl_lines_keep_their_text(tmp_path: Path) -> None:
    got = push_rejects(tmp_path, "s.jsonl", b'{"email": "a@x.com"}\n[1, 2]\n{"email": oops}\n')
    assert got[1:] == [
        ["2", "not a JSON object (got list)", "[1, 2]"],
        ["3", "not valid JSON (unexpected character, expected a JSON value)", '{"email": oops}'],
    ]


@pytest.mark.parametrize("command", ["push", "sync"])
def test_a_profile_too_large_for_a_request_keeps_its_row(tmp_path: Path, command: str) -> None:
    big = ",".join(["x" * 250] * 5)
    content = f"email,a,b,c,d,e\na@x.com,{big}\nb@x.com,1,2,3,4,5\n".encode()
    got = push_rejects(tmp_path, "s.csv", content, command=command)
    assert got[1:] == [["2", "profile alone is larger than the 1,000-byte request limit", "a@x.com", *big.split(",")]]


def test_sync_duplicates_keep_their_rows(tmp_path: Path) -> None:
    got = push_rejects(tmp_path, "s.csv", b"email,city\na@x.com,Gent\nb@x.com,Gent\nA@x.com,Leiden\n", command="sync")
    assert sorted(got[1:]) == [
        ["2", "duplicate identifier in a snapshot (also on line 4); none of them is sent", "a@x.com", "Gent"],
        ["4", "duplicate identifier in a snapshot (also on line 2); none of them is sent", "A@x.com", "Leiden"],
    ]


# --- the report of a run that read damaged input ------------------------------------------------


def test_damage_is_exit_2_unless_a_stronger_stop_applies() -> None:
    r = Report("push", "S", "main", "s.csv")
    r.profiles_failed, r.rows_read = 3, 3
    assert r.exit_code == ExitCode.FAILED and r.to_json()["stop_reason"] is None
    r.damage = "s.csv:2: a quoted field opens here and is never closed"
    assert r.exit_code == ExitCode.USAGE and r.to_json()["stop_reason"] == "damaged_input"
    assert r.to_json()["exit_code"] == 2
    for stop, code in ((STOP_CREDENTIALS, ExitCode.CREDENTIALS), (STOP_INTERRUPTED, ExitCode.INTERRUPTED)):
        r.stop_reason = stop
        assert r.exit_code == code and r.to_json()["stop_reason"] == stop
