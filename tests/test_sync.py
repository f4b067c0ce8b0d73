"""Snapshot sync: units of the diff, and the real CLI against the sandbox on loopback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.emulators.webhook import Sandbox
from canopycli.pipeline.diff import baseline_changes, params_digest
from canopycli.store import Store

from .conftest import emails, run_cli, tree_has_token, write_config, write_csv

runner = CliRunner()


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def test_baseline_changes_from_an_acknowledged_body() -> None:
    body = orjson.dumps(
        {
            "uuid": "x",
            "customerType": "HASHED_EMAIL",
            "campaigns": [
                {
                    "segmentName": "S",
                    "customers": [
                        {
                            "customerId": "a",
                            "r42Status": "NEW",
                            "params": [{"name": "n", "type": "string", "value": "1"}],
                        },
                        {"customerId": "b", "r42Status": "REMOVED", "params": []},
                    ],
                }
            ],
        }
    )
    from canopycli.model import Batch

    changes = baseline_changes(Batch(0, "x", body, ["a", "b"], [1, 0]))  # as loaded from the journal
    assert changes == [("a", params_digest(b'[{"name":"n","type":"string","value":"1"}]')), ("b", None)]


def received(rec: Path) -> list[dict[str, Any]]:
    out = []
    for line in rec.read_text().splitlines() if rec.exists() else []:
        for c in json.loads(line)["campaigns"]:
            out.extend(c["customers"])
    return out


def sync(*args: str) -> tuple[int, dict[str, Any], str]:
    r = runner.invoke(app, ["sync", *args, "--report-json", "r.json", "-q"])
    data = json.loads(Path("r.json").read_text()) if Path("r.json").exists() else {}
    Path("r.json").unlink(missing_ok=True)
    return r.exit_code, data, r.stderr


def accounted(r: dict[str, Any]) -> int:
    keys = (
        "rows_rejected",
        "rows_duplicate",
        "profiles_delivered",
        "profiles_failed",
        "profiles_not_sent",
        "profiles_unchanged",
    )
    return sum(r[k] for k in keys)


def test_sync_lifecycle(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(record=rec)
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint))
    rows = emails(1000)
    snap = write_csv(tmp_path / "snap.csv", rows)

    code, r, err = sync(str(snap), "-c", cfg)  # first sync: everything is NEW
    assert code == 0, err
    assert (r["profiles_delivered"], r["profiles_unchanged"], r["removals_delivered"]) == (1000, 0, 0)
    assert {c["r42Status"] for c in received(rec)} == {"NEW"} and len(received(rec)) == 1000
    assert accounted(r) == r["rows_read"] == 1000

    code, r, _ = sync(str(snap), "-c", cfg)  # the same file again: nothing to send
    assert code == 0 and sb.snapshot()["requests"] == 2
    assert (r["profiles_unchanged"], r["profiles_delivered"], r["batches"]) == (1000, 0, [])

    # 10 changed params, 7 gone, 5 new -> exactly 22 profiles, with the right statuses
    changed = [dict(row) for row in rows]
    for i in range(10):
        changed[i]["firstName"] = f"Renamed{i}"
    gone = {changed[i]["email"] for i in range(100, 107)}
    changed = [row for row in changed if row["email"] not in gone] + emails(5, start=5000)
    snap2 = write_csv(tmp_path / "snap2.csv", changed)
    rec.unlink()
    code, r, _ = sync(str(snap2), "-c", cfg)
    assert code == 0
    got = received(rec)
    assert len(got) == 22
    by_status: dict[str, set[str]] = {}
    for c in got:
        by_status.setdefault(c["r42Status"], set()).add(c["customerId"])
    assert by_status["MODIFIED"] == {sha(f"user{i}@example.com") for i in range(10)}
    assert by_status["REMOVED"] == {sha(e) for e in gone}
    assert by_status["NEW"] == {sha(f"user{i}@example.com") for i in range(5000, 5005)}
    assert [c["params"] for c in got if c["r42Status"] == "REMOVED"] == [[]] * 7
    assert (r["profiles_delivered"], r["removals_delivered"], r["profiles_unchanged"]) == (15, 7, 983)
    assert accounted(r) == r["rows_read"] == 998

    # export -> import into an empty state dir -> the next sync sends nothing
    assert runner.invoke(app, ["state", "export", str(tmp_path / "base.jsonl.gz"), "-c", cfg]).exit_code == 0
    other = tmp_path / "other-state"
    r2 = runner.invoke(app, ["state", "import", str(tmp_path / "base.jsonl.gz"), "-c", cfg, "--state-dir", str(other)])
    assert r2.exit_code == 0 and "imported 998 profiles" in r2.stdout
    before = sb.snapshot()["requests"]
    code, r, _ = sync(str(snap2), "-c", cfg, "--state-dir", str(other))
    assert code == 0 and r["profiles_unchanged"] == 998 and sb.snapshot()["requests"] == before
    show = runner.invoke(app, ["state", "show", "--state-dir", str(other)])
    assert "998" in show.stdout and "WelcomeFlow" in show.stdout

    # a snapshot that would remove 90% -> exit 6, nothing sent
    code, r, err = sync(str(write_csv(tmp_path / "tiny.csv", changed[:100])), "-c", cfg)
    assert code == 6 and "would remove 898 of 998 profiles (90%)" in err and sb.snapshot()["requests"] == before
    empty = tmp_path / "empty.csv"
    empty.write_text("email,firstName\n")
    code, _, err = sync(str(empty), "-c", cfg)
    assert code == 6 and "--force" in err and sb.snapshot()["requests"] == before

    # --full: everything as NEW again, and the baseline rebuilt
    rec.unlink()
    code, r, _ = sync(str(snap2), "-c", cfg, "--full")
    assert code == 0 and r["profiles_delivered"] == 998 and {c["r42Status"] for c in received(rec)} == {"NEW"}
    assert tree_has_token(tmp_path) == []


def test_a_failed_batch_is_sent_by_the_next_sync(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(record=rec, fail_requests={2})
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint, connector={"retries": 0, "concurrency": 1}))
    snap = write_csv(tmp_path / "snap.csv", emails(1200))
    p = run_cli("sync", str(snap), "-c", cfg, "--report-json", str(tmp_path / "r1.json"))
    assert p.returncode == 1
    r1 = json.loads((tmp_path / "r1.json").read_text())
    assert (r1["profiles_delivered"], r1["profiles_failed"]) == (700, 500)
    rec.unlink()
    p = run_cli("sync", str(snap), "-c", cfg, "--report-json", str(tmp_path / "r2.json"))
    assert p.returncode == 0, p.stderr
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert (r2["profiles_delivered"], r2["profiles_unchanged"]) == (500, 700)
    assert {c["customerId"] for c in received(rec)} == {sha(f"user{i}@example.com") for i in range(500, 1000)}
    # the failed batch of the first sync is superseded: retrying that run sends nothing stale
    p = run_cli("retry", r1["run_id"], "-c", cfg, "--report-json", str(tmp_path / "r3.json"))
    assert p.returncode == 0 and sb.snapshot()["requests"] == 4
    r3 = json.loads((tmp_path / "r3.json").read_text())
    assert [b["outcome"] for b in r3["batches"]] == ["delivered", "superseded", "delivered"]


def test_duplicates_are_all_rejected_and_status_column_refused(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint))
    rows = emails(6)
    rows[4]["email"] = rows[1]["email"].upper()
    snap = write_csv(tmp_path / "snap.csv", rows)
    r = runner.invoke(app, ["sync", str(snap), "-c", cfg, "--rejects", "rej.csv", "--report-json", "r.json"])
    assert r.exit_code == 0, r.stderr
    lines = (tmp_path / "rej.csv").read_text().splitlines()
    assert lines[1].startswith("3,duplicate identifier in a snapshot (also on line 6)")
    assert lines[2].startswith("6,duplicate identifier in a snapshot (also on line 3)")
    data = json.loads((tmp_path / "r.json").read_text())
    assert (data["rows_duplicate"], data["profiles_delivered"]) == (2, 4)

    with_status = write_csv(tmp_path / "st.csv", [{"email": "a@example.com", "status": "NEW"}])
    r = runner.invoke(app, ["sync", str(with_status), "-c", cfg])
    assert r.exit_code == 2 and "sync derives NEW/MODIFIED/REMOVED itself" in r.stderr


def test_dry_run_never_moves_the_baseline(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint))
    snap = write_csv(tmp_path / "snap.csv", emails(10))
    code, r, _ = sync(str(snap), "-c", cfg, "--dry-run", "--out", "bodies")
    assert code == 0 and r["profiles_not_sent"] == 10 and sb.snapshot()["requests"] == 0
    assert len(list((tmp_path / "bodies").glob("*.json"))) == 1
    code, r, _ = sync(str(snap), "-c", cfg)
    assert code == 0 and r["profiles_delivered"] == 10  # still all NEW: the dry run moved nothing
    r = runner.invoke(app, ["state", "reset", "-c", cfg])
    assert r.exit_code == 0 and "forgot 10 profiles" in r.stdout
    code, r, _ = sync(str(snap), "-c", cfg)
    assert r["profiles_delivered"] == 10


def test_import_refuses_a_damaged_file_and_changes_nothing(tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path / "c.yaml", "https://h.example/x"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"format": "canopycli-state", "version": 1, "identifier": "hashed_email", "profiles": 3}\n'
        '["a", "00000000000000000000000000000000"]\n'
    )
    r = runner.invoke(app, ["state", "import", str(bad), "-c", cfg])
    assert r.exit_code == 2 and "truncated" in r.stderr
    r = runner.invoke(app, ["state", "import", str(tmp_path / "c.yaml"), "-c", cfg])
    assert r.exit_code == 2 and "not a canopycli state export" in r.stderr


def test_a_member_whose_row_is_rejected_is_held_not_removed(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    """A snapshot row with a valid id but a bad cell is rejected; the profile is still a member,
    so a sync must neither send it nor remove it (issue 9: nothing silently changed)."""
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(record=rec)
    params = {"params": [{"name": "firstName"}, {"name": "age", "type": "number"}]}
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint, segment=params))
    rows = [{**row, "age": "30"} for row in emails(20)]
    code, r, err = sync(str(write_csv(tmp_path / "snap.csv", rows)), "-c", cfg)
    assert code == 0 and r["profiles_delivered"] == 20, err
    rows[3]["age"] = "thirty"  # a bad cell: the row is rejected ...
    rows[19]["age"] = "1e400"  # ... here too, on the last row (after the last full chunk)
    rec.unlink()
    code, r, err = sync(str(write_csv(tmp_path / "snap2.csv", rows)), "-c", cfg)
    assert code == 0, err
    assert (r["rows_rejected"], r["removals_delivered"], r["profiles_unchanged"]) == (2, 0, 18)
    assert received(rec) == []  # ... and neither sent nor removed
    assert accounted(r) == r["rows_read"] == 20
    rows = rows[:3] + rows[4:19]  # really gone now: removed
    code, r, _ = sync(str(write_csv(tmp_path / "snap3.csv", rows)), "-c", cfg)
    assert code == 0 and r["removals_delivered"] == 2


# --- state export / import: a baseline belongs to one connector, segment, endpoint and identifier -----


def synced(sb: Sandbox, tmp_path: Path, n: int = 30, **config: Any) -> str:
    """A config whose segment has a baseline of ``n`` profiles; returns the config's path."""
    cfg = str(write_config(tmp_path / "c.yaml", sb.endpoint, **config))
    code, _, err = sync(str(write_csv(tmp_path / "snap.csv", emails(n))), "-c", cfg)
    assert code == 0, err
    return cfg


def baseline_size(state: Path, segment: str = "WelcomeFlow") -> int | None:
    """The baseline's size, None if the segment has none in ``state``."""
    if not state.exists():
        return None
    with Store(state) as j:
        return None if j.baselines.scope(f"main/{segment}") is None else j.baselines.size(f"main/{segment}")


def test_import_refuses_another_segments_baseline_unless_forced_and_other_ids_always(
    sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = sandbox()
    cfg = synced(sb, tmp_path)
    assert runner.invoke(app, ["state", "export", "b.jsonl.gz", "-c", cfg]).exit_code == 0
    other_endpoint = sb.endpoint.replace("32-sandbox", "77-other")
    other = str(write_config(tmp_path / "o.yaml", other_endpoint, segment_name="Other"))
    r = runner.invoke(app, ["state", "import", "b.jsonl.gz", "-c", other])
    assert r.exit_code == 2, r.stderr
    assert (
        "b.jsonl.gz: exported from segment 'WelcomeFlow', segmentName 'WelcomeFlow', "
        f"endpoint {sb.endpoint}; this is segment 'Other', segmentName 'Other', endpoint {other_endpoint}"
    ) in r.stderr
    assert "--force" in r.stderr and baseline_size(tmp_path / "state", "Other") is None  # nothing imported
    renamed = str(write_config(tmp_path / "r.yaml", sb.endpoint, segment={"name": "Renamed"}))
    r = runner.invoke(app, ["state", "import", "b.jsonl.gz", "-c", renamed])
    assert r.exit_code == 2 and "segmentName 'WelcomeFlow'; this is segmentName 'Renamed'" in r.stderr
    r = runner.invoke(app, ["state", "import", "b.jsonl.gz", "-c", other, "--force"])
    assert r.exit_code == 0 and "imported 30 profiles into the baseline of Other" in r.stdout
    assert baseline_size(tmp_path / "state", "Other") == 30
    ids = str(write_config(tmp_path / "i.yaml", sb.endpoint, connector={"identifier": "customer_id"}))
    r = runner.invoke(app, ["state", "import", "b.jsonl.gz", "-c", ids, "--force", "--state-dir", "fresh"])
    assert r.exit_code == 2 and "holds hashed_email ids, but connector 'main' uses customer_id" in r.stderr
    assert "--force cannot mix them" in r.stderr and baseline_size(tmp_path / "fresh") is None


def test_an_export_from_1_0_is_checked_where_it_can_be_with_a_warning(tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path / "c.yaml", "https://h.example/x"))
    old = tmp_path / "old.jsonl"  # as 1.0 wrote it: no segment_name, no endpoint
    header = {"format": "canopycli-state", "version": 1, "connector": "main", "segment": "WelcomeFlow"}
    line = json.dumps(["a" * 64, "00" * 16])
    old.write_text(json.dumps({**header, "identifier": "hashed_email", "profiles": 1}) + "\n" + line + "\n")
    r = runner.invoke(app, ["state", "import", str(old), "-c", cfg])
    assert r.exit_code == 0, r.stderr
    assert "Warning:" in r.stderr and "does not record its segmentName or endpoint" in r.stderr
    moved = tmp_path / "moved.jsonl"
    moved.write_text(
        json.dumps({**header, "connector": "prod", "identifier": "hashed_email", "profiles": 1}) + "\n" + line + "\n"
    )
    r = runner.invoke(app, ["state", "import", str(moved), "-c", cfg])
    assert r.exit_code == 2 and "exported from connector 'prod'; this is connector 'main'" in r.stderr


def test_an_export_says_what_the_baseline_was_built_with_not_what_the_config_says_now(
    sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = sandbox()
    synced(sb, tmp_path)
    moved_to = sb.endpoint.replace("32-sandbox", "77-new")
    cfg = str(write_config(tmp_path / "c.yaml", moved_to))  # the connector now points at another webhook
    r = runner.invoke(app, ["state", "export", "b.jsonl", "-c", cfg])
    assert r.exit_code == 0 and f"built with endpoint {sb.endpoint}, but the config now says {moved_to}" in r.stderr
    header = json.loads((tmp_path / "b.jsonl").read_text().splitlines()[0])
    assert header["endpoint"] == sb.endpoint and header["segment_name"] == "WelcomeFlow"
    r = runner.invoke(app, ["state", "import", "b.jsonl", "-c", cfg, "--state-dir", "fresh"])
    assert r.exit_code == 2 and f"endpoint {sb.endpoint}; this is endpoint {moved_to}" in r.stderr


class _FullDisk:
    """A file that takes the header and then reports a full disk."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.writes = fh, 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.writes > 1:
            raise OSError(28, "No space left on device")
        return int(self.fh.write(data))

    def close(self) -> None:
        self.fh.close()


def test_state_export_checks_its_path_first_writes_stdout_for_dash_and_never_half_a_file(
    sandbox: Callable[..., Sandbox], tmp_path: Path, monkeypatch: Any
) -> None:
    cfg = str(write_config(tmp_path / "c.yaml", "https://h.example/x"))
    (tmp_path / "file").write_text("x")
    for path, reason in (
        ("/nonexistent/b.jsonl", "its folder /nonexistent does not exist"),
        (str(tmp_path), "is a folder"),
        ("file/b.jsonl", "file is not a folder"),
    ):
        r = runner.invoke(app, ["state", "export", path, "-c", cfg])
        assert r.exit_code == 2 and f"state export {path}: {reason}" in r.stderr, r.stderr
        assert "This is a bug" not in r.stderr
    assert not (tmp_path / "state").exists()  # checked before anything else was done

    sb = sandbox()
    cfg = synced(sb, tmp_path, n=5)
    r = runner.invoke(app, ["state", "export", "-", "-c", cfg])
    assert r.exit_code == 0 and not (tmp_path / "-").exists()
    lines = r.stdout.splitlines()
    assert json.loads(lines[0])["profiles"] == 5 and len(lines) == 6
    assert "exported 5 profiles of WelcomeFlow to stdout" in r.stderr
    r2 = runner.invoke(app, ["state", "import", "-", "-c", cfg, "--state-dir", "fresh"], input=r.stdout)
    assert r2.exit_code == 0 and "imported 5 profiles" in r2.stdout

    assert runner.invoke(app, ["state", "export", "b.jsonl.gz", "-c", cfg]).exit_code == 0
    assert (tmp_path / "b.jsonl.gz").stat().st_mode & 0o077 == 0  # hashed ids: owner-only, like the journal
    before = (tmp_path / "b.jsonl.gz").read_bytes()
    from canopycli.store import portable as sync_module

    init = sync_module.ExportFile.__init__

    def full_after_the_header(self: Any, *args: Any) -> None:
        init(self, *args)
        self.fh = _FullDisk(self.fh)

    monkeypatch.setattr(sync_module.ExportFile, "__init__", full_after_the_header)
    r = runner.invoke(app, ["state", "export", "b.jsonl.gz", "-c", cfg])
    assert r.exit_code == 2 and "cannot write b.jsonl.gz: No space left on device" in r.stderr
    assert (tmp_path / "b.jsonl.gz").read_bytes() == before  # the earlier export is intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.jsonl.gz")] == []


def test_import_of_a_damaged_or_truncated_file_is_exit_2_and_changes_nothing(
    sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = sandbox()
    cfg = synced(sb, tmp_path, n=2000)
    assert runner.invoke(app, ["state", "export", "b.jsonl.gz", "-c", cfg]).exit_code == 0
    good = (tmp_path / "b.jsonl.gz").read_bytes()
    (tmp_path / "cut.jsonl.gz").write_bytes(good[: len(good) // 2])
    header = json.dumps({"format": "canopycli-state", "version": 1, "connector": "main", "segment": "WelcomeFlow",
                         "identifier": "hashed_email"})  # fmt: skip
    damaged = {
        "cut.jsonl.gz": "cut.jsonl.gz: cannot be read after line ",
        "twice.jsonl": (["a", "00" * 16], ["a", "00" * 16], "an id appears twice"),
        "short.jsonl": (["a", "00"], "not an [id, digest] line"),
        "number.jsonl": ([5, "00" * 16], "not an [id, digest] line"),
    }
    for name, spec in damaged.items():
        if isinstance(spec, tuple):
            *rows, expected = spec
            (tmp_path / name).write_text("\n".join([header, *(json.dumps(r) for r in rows)]) + "\n")
        else:
            expected = spec
        r = runner.invoke(app, ["state", "import", name, "-c", cfg])
        assert r.exit_code == 2 and expected in r.stderr, (name, r.stderr)
        assert "This is a bug" not in r.stderr
        assert baseline_size(tmp_path / "state") == 2000


def test_a_sync_refuses_a_baseline_built_for_another_endpoint_segment_name_or_identifier(
    sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = sandbox()
    synced(sb, tmp_path, n=10)
    snap = str(tmp_path / "snap.csv")
    moved_to = sb.endpoint.replace("32-sandbox", "77-new")
    moved = str(write_config(tmp_path / "moved.yaml", moved_to))
    code, _, err = sync(snap, "-c", moved)
    assert code == 2 and f"built with endpoint {sb.endpoint}, but the config now says endpoint {moved_to}" in err
    assert "nothing was sent" in err and "--full" in err and "state reset" in err
    other = str(
        write_config(
            tmp_path / "other.yaml", sb.endpoint, connector={"identifier": "customer_id"}, segment={"name": "Renamed"}
        )
    )
    code, _, err = sync(snap, "-c", other, "--dry-run")  # a dry run would show a wrong diff as well
    assert (
        code == 2
        and (
            "built with segmentName 'WelcomeFlow', identifier hashed_email, "
            "but the config now says segmentName 'Renamed', identifier customer_id"
        )
        in err
    )
    assert sb.snapshot()["requests"] == 1  # the first sync's only
    code, r, err = sync(snap, "-c", moved, "--full")  # the whole snapshot to the new webhook: a new baseline
    assert code == 0 and r["profiles_delivered"] == 10, err
    code, r, err = sync(snap, "-c", moved)
    assert code == 0 and r["profiles_unchanged"] == 10, err


def test_export_of_a_segment_never_synced_there_is_exit_2(tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path / "c.yaml", "https://h.example/x"))
    r = runner.invoke(app, ["state", "export", "b.jsonl", "-c", cfg])
    assert r.exit_code == 2 and "no sync baseline of WelcomeFlow (connector 'main')" in r.stderr
    assert "--state-dir" in r.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "state"]


def test_state_export_writes_through_a_symlink_or_a_device_and_never_replaces_it(
    sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    cfg = synced(sandbox(), tmp_path, n=4)
    target = tmp_path / "artifacts" / "b.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    (tmp_path / "link.jsonl").symlink_to(target)
    r = runner.invoke(app, ["state", "export", "link.jsonl", "-c", cfg])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "link.jsonl").is_symlink() and len(target.read_text().splitlines()) == 5
    p = run_cli("state", "export", "/dev/stdout", "-c", cfg)  # stdout is a pipe here
    assert p.returncode == 0, p.stderr
    assert [json.loads(line) for line in p.stdout.splitlines()][0]["profiles"] == 4 and len(p.stdout.splitlines()) == 5
    assert "exported 4 profiles" in p.stderr and Path("/dev/stdout").is_symlink()
