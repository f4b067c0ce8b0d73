"""The Stage seam (the machinery drives any stage the same way) and reading the input once."""

from __future__ import annotations

import builtins
import gzip
import hashlib
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from canopycli.config import Resolved, load_config, resolve
from canopycli.deployteq.quota import DailyQuota
from canopycli.deployteq.webhook import Encoder
from canopycli.errors import StateError
from canopycli.model import Batch, Profile
from canopycli.pipeline.diff import DiffStage
from canopycli.pipeline.drive import Cancel, Run, drive, finish
from canopycli.pipeline.drive import Wiring as Transport
from canopycli.pipeline.rawinput import estimate_rows
from canopycli.pipeline.read import open_source
from canopycli.pipeline.report import Report
from canopycli.pipeline.run import PushOptions, run_push, run_retry
from canopycli.pipeline.stages import ChangeStage, Effects, Resend, Stage
from canopycli.store import Store as Journal
from canopycli.store.locks import state_dir

from .conftest import emails, write_config, write_csv

ENDPOINT = "https://hook.example/x"


def resolved(tmp_path: Path, **connector: Any) -> Resolved:
    cfg = write_config(tmp_path / "c.yaml", ENDPOINT, connector=connector)
    return resolve(load_config(cfg), None, str(cfg))


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={})


# --- the protocol ------------------------------------------------------------------------------


def protocol_members(proto: type) -> set[str]:
    names = set(getattr(proto, "__annotations__", {}))
    names |= {n for n, v in vars(proto).items() if callable(v) and not n.startswith("_")}
    return names


@pytest.mark.parametrize("stage", [ChangeStage, DiffStage, Resend])
def test_every_stage_has_what_the_protocol_asks(stage: type) -> None:
    members = protocol_members(Stage)
    assert {"command", "stops_reading_on_cancel", "prepare", "requests_needed", "begin", "batches"} <= members
    assert {"on_ack", "counts", "finish", "close"} <= members
    assert {m for m in members if not hasattr(stage, m)} == set()


class FakeStage:
    """A stage that is neither push nor sync: three batches, an ack effect, its own counts."""

    command = "fake"
    stops_reading_on_cancel = True

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failures: list[int] = []
        self.encoder = Encoder(ENDPOINT, "WelcomeFlow", "HASHED_EMAIL", 6_000_000)

    def prepare(self) -> None:
        self.calls.append("prepare")

    def requests_needed(self) -> int | None:
        return 3

    def begin(self, run_id: str) -> None:
        self.calls.append("begin")

    def batches(self) -> Iterator[Batch]:
        for i in range(3):
            cid = f"{i:064x}"
            [b], _ = self.encoder.encode(
                [Profile(i + 2, cid, {"customerId": cid, "r42Status": "NEW", "params": []})], i
            )
            yield b

    def on_failure(self, batch: Batch, error: str | None, detail: str | None) -> None:
        self.failures.append(batch.index)

    def on_ack(self, batch: Batch) -> Effects | None:
        def effect(conn: sqlite3.Connection) -> None:  # runs in the ack's transaction
            conn.execute("INSERT INTO requests (endpoint, day, count) VALUES ('fake', ?, 1)", (f"b{batch.index}",))

        return effect

    def counts(self, complete: bool) -> dict[str, int | None]:
        self.calls.append(f"counts({complete})")
        return {"rows_read": 6, "rows_rejected": 1, "rows_duplicate": 2}

    def finish(self) -> None:
        self.calls.append("finish")

    def close(self) -> None:
        self.calls.append("close")


def test_a_fake_stage_is_driven_like_push_and_sync(tmp_path: Path) -> None:
    r = resolved(tmp_path)
    stage: Stage = FakeStage()

    def reply(request: httpx.Request) -> httpx.Response:  # the second batch fails: no ack effect for it
        return httpx.Response(400 if b'"customerId":"' + f"{1:064x}".encode() in request.content else 200, json={})

    with Journal(state_dir(tmp_path / "state")) as journal:
        report = Report(stage.command, r.segment_name, r.connector_name, "fake")
        stage.prepare()
        run_id = journal.runs.start(
            command=stage.command, config_path=None, connector=r.connector_name, segment=r.segment_key,
            segment_name=r.segment_name, endpoint=ENDPOINT, input="-", input_sha256=None, settings={},
        )  # fmt: skip
        stage.begin(run_id)
        quota = DailyQuota(journal.requests, ENDPOINT, None)
        drive(Run(journal, run_id, stage, report, quota, r.connector, transport=Transport(httpx.MockTransport(reply))))
        stage.finish()
        stage.close()
        done = finish(journal, run_id, report)
        effects = journal.db.execute("SELECT day FROM requests WHERE endpoint = 'fake' ORDER BY day").fetchall()
        row = journal.runs.get(run_id)
    assert [b.state for b in journal_batches(tmp_path, run_id)] == ["sent", "failed", "sent"]
    assert effects == [("b0",), ("b2",)]  # only acknowledged batches had their effects
    assert (row.rows_read, row.rows_rejected, row.rows_duplicate, row.spool_complete) == (6, 1, 2, True)
    assert stage.calls == ["prepare", "begin", "counts(True)", "finish", "close"]  # type: ignore[attr-defined]
    assert done.profiles_delivered == 2 and done.profiles_failed == 1


def journal_batches(tmp_path: Path, run_id: str) -> list[Any]:
    with Journal(tmp_path / "state") as journal:
        return journal.runs.batches(run_id)


# --- reading the input once ------------------------------------------------------------------


def test_a_push_reads_its_input_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_csv(tmp_path / "s.csv", emails(20_000))
    read: list[int] = []
    real_open = builtins.open

    class Counted(io.FileIO):
        def readinto(self, b: Any) -> int | None:
            n = super().readinto(b)
            read.append(n or 0)
            return n

    def counting_open(file: Any, mode: str = "r", buffering: int = -1, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, Path)) and Path(file).resolve() == data.resolve():
            raw = Counted(str(file), "rb")
            return raw if buffering == 0 else io.BufferedReader(raw)
        return real_open(file, mode, buffering, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    report = run_push(resolved(tmp_path), PushOptions(str(data)), transport=Transport(httpx.MockTransport(ok)))
    monkeypatch.undo()
    assert report.profiles_delivered == 20_000
    assert sum(read) == data.stat().st_size  # every byte once: no fingerprint pass before the records
    with Journal(tmp_path / "state") as journal:
        run = journal.runs.get(report.run_id or "")
    assert run.input_sha256 == hashlib.sha256(data.read_bytes()).hexdigest()  # recorded once read to the end


def test_a_run_stopped_mid_file_journals_the_part_it_read_and_retry_checks_it(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "s.csv", emails(100_000))
    r = resolved(tmp_path, concurrency=1)
    cancel = Cancel()

    def stop_after_the_first(report: Report) -> None:
        cancel.set("interrupted")

    first = run_push(
        r, PushOptions(str(data)), transport=Transport(httpx.MockTransport(ok)), progress=stop_after_the_first,
        cancel=cancel,
    )  # fmt: skip
    assert first.stop_reason == "interrupted" and 0 < first.profiles_delivered < 100_000
    run_id = first.run_id or ""
    with Journal(tmp_path / "state") as journal:
        run = journal.runs.get(run_id)
        prefix = journal.runs.read_prefix(run_id)
    whole = data.read_bytes()
    assert run.input_sha256 is None and not run.spool_complete  # not read to the end
    assert prefix is not None
    length, digest, size = prefix
    assert 0 < length < len(whole) and size == len(whole)
    assert digest == hashlib.sha256(whole[:length]).hexdigest()

    def retry() -> Report:
        opts = PushOptions("-")
        return run_retry(None, run_id, lambda _: r, opts, transport=Transport(httpx.MockTransport(ok)))

    data.write_bytes(whole[:10] + whole[10:11].swapcase() + whole[11:])  # same size, a byte of the part read
    with pytest.raises(StateError, match="but the file has changed since"):
        retry()
    data.write_bytes(whole)
    done = retry()
    assert done.exit_code == 0 and done.profiles_delivered == 100_000
    with Journal(tmp_path / "state") as journal:
        assert journal.runs.get(run_id).input_sha256 == hashlib.sha256(whole).hexdigest()


# --- the estimate that replaces the line count ---------------------------------------------


def test_estimate_rows_from_the_size_and_the_first_lines() -> None:
    lines = b"email\n" + b"".join(b"u%04d@example.com\n" for i in range(1000))
    assert estimate_rows(lines, len(lines), 1) == 1000  # all of it in the sample: counted
    assert estimate_rows(lines[:8192], len(lines), 1) == pytest.approx(1000, abs=5)
    assert estimate_rows(b"a" * 100, 10_000, 1) is None  # no line ends in the sample
    assert estimate_rows(b"", None, 1) is None  # stdin


def test_a_gz_file_is_estimated_from_its_trailer_and_counted_when_verified(tmp_path: Path) -> None:
    p = tmp_path / "s.csv.gz"
    p.write_bytes(gzip.compress(b"email\n" + b"".join(b"u%05d@example.com\n" % i for i in range(30_000))))
    src = open_source(str(p))
    try:
        assert src.estimated_rows == pytest.approx(30_000, rel=0.02)
        src.verify()
        assert src.estimated_rows == 30_000
        assert src.origin()["input_sha256"] is None  # not read to the end yet
        assert sum(1 for _ in src.records) == 30_000
        assert src.origin()["input_sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    finally:
        src.close()
