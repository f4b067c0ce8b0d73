"""The public Python API: canopycli.push / sync / retry return a Report; errors come from the tree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import canopycli
from canopycli.config import EngagementSettings
from canopycli.emulators.webhook import Sandbox
from canopycli.errors import ExitCode, InputError, UsageError

from .conftest import TOKEN, emails, write_config, write_csv


def test_push_returns_the_report_and_prints_nothing(
    sandbox: Callable[..., Sandbox], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    rows = emails(1200)
    rows[5]["email"] = "broken"
    data = write_csv(tmp_path / "s.csv", rows)
    report = canopycli.push(data, config=cfg)
    assert isinstance(report, canopycli.Report)
    assert (report.rows_read, report.rows_rejected, report.profiles_delivered) == (1200, 1, 1199)
    assert report.exit_code == ExitCode.OK and report.run_id
    as_json = report.to_json()
    assert as_json["profiles_delivered"] == report.profiles_delivered and as_json["run_id"] == report.run_id
    assert sb.snapshot()["profiles"] == 1199
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert TOKEN not in str(as_json)


def test_dry_run_with_a_loaded_config_and_options(tmp_path: Path) -> None:
    cfg = canopycli.load_config(write_config(tmp_path / "c.yaml", "https://h.example/x"))
    data = write_csv(tmp_path / "s.csv", emails(3))
    report = canopycli.push(data, config=cfg, dry_run=True, status="REMOVED", out_dir=tmp_path / "bodies")
    assert (report.dry_run, report.profiles_not_sent, report.exit_code) == (True, 3, ExitCode.OK)
    assert b'"r42Status":"REMOVED"' in next((tmp_path / "bodies").iterdir()).read_bytes()


def test_errors_are_raised_from_the_tree_never_system_exit(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    with pytest.raises(InputError) as e:
        canopycli.push(tmp_path / "missing.csv", config=cfg)
    assert e.value.exit_code == ExitCode.USAGE and "no such file" in str(e.value)
    with pytest.raises(UsageError, match="unknown option"):
        canopycli.push(tmp_path / "s.csv", config=cfg, colour="blue")
    with pytest.raises(canopycli.CanopyError):
        canopycli.push(tmp_path / "s.csv", config=tmp_path / "nope.yaml")


def test_retry_finishes_a_failed_run(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(fail_first=8)  # the first batch fails all 4 attempts, the second 4, then all is well
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"concurrency": 1, "retries": 3})
    data = write_csv(tmp_path / "s.csv", emails(1500))
    first = canopycli.push(data, config=cfg)
    assert first.exit_code == ExitCode.FAILED and first.profiles_failed == 1000
    again = canopycli.retry(first.run_id, config=cfg)
    assert (again.run_id, again.profiles_delivered, again.exit_code) == (first.run_id, 1500, ExitCode.OK)
    assert sb.snapshot()["profiles"] == 1500


def test_sync_through_the_api(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    first = canopycli.sync(write_csv(tmp_path / "a.csv", emails(10)), config=cfg)
    assert (first.profiles_delivered, first.profiles_unchanged) == (10, 0)
    second = canopycli.sync(write_csv(tmp_path / "b.csv", emails(8)), config=cfg)
    assert (second.profiles_unchanged, second.removals_delivered) == (8, 2)
    with pytest.raises(UsageError, match="max_remove"):
        canopycli.sync(tmp_path / "b.csv", config=cfg, max_remove=50)


def test_the_readme_example_runs(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"## Embedding in Python.*?```python\n(.*?)```", readme, re.S)
    assert block is not None
    sb = sandbox(fail_first=4)  # the first batch fails: the example's retry path runs
    write_config(tmp_path / "canopycli.yaml", sb.endpoint, connector={"concurrency": 1})
    write_csv(tmp_path / "segment.csv", emails(600))
    exec(compile(block.group(1), "README.md", "exec"), {})  # cwd is tmp_path (conftest)
    assert sb.snapshot()["profiles"] == 600


def test_records_from_python(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)

    def rows():  # a generator: streamed, never held whole
        yield from ({"email": f"u{i}@example.com", "city": "Utrecht", "vip": i % 2 == 0} for i in range(700))
        yield {"email": "not-an-address"}
        yield ["not", "a", "dict"]

    report = canopycli.push(rows(), config=cfg, rejects=tmp_path / "rej.csv")
    assert (report.rows_read, report.rows_rejected, report.profiles_delivered) == (702, 2, 700)
    assert report.input == "-" and sb.snapshot()["profiles"] == 700  # journaled like stdin: not readable again
    rejected = (tmp_path / "rej.csv").read_text()
    assert "not a dict (got list)" in rejected and "is not a valid email address" in rejected
    with pytest.raises(UsageError, match="iterable of dicts"):
        canopycli.push(42, config=cfg)  # type: ignore[arg-type]


def test_the_engagement_loop_through_the_api(
    sandbox: Callable[..., Sandbox], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    sb = sandbox()
    cfg = canopycli.load_config(
        write_config(tmp_path / "c.yaml", sb.endpoint, segment={"suppress": ["bounce", "complaint"]})
    )
    assert canopycli.push(write_csv(tmp_path / "s.csv", emails(300)), config=cfg).profiles_delivered == 300
    with pytest.raises(UsageError, match="no engagements: block"):
        canopycli.pull_engagements(config=cfg)
    settings = {"client_id": sb.analytics.client_id, "client_secret": sb.analytics.client_secret,
                "token_url": sb.analytics.token_url, "api_url": sb.analytics.api_url}  # fmt: skip
    cfg = cfg.model_copy(update={"engagements": EngagementSettings(**settings)})
    pulled = canopycli.pull_engagements(config=cfg)
    assert pulled["new"] == len(sb.analytics.events())
    figures = canopycli.engagements_report(by="campaign")
    assert figures["totals"]["sends"] == 300 and figures["by"] == "campaign"
    held = figures["totals"]["complaints"] + sum(
        r["count"] for r in figures["bounces_by_category"] if r["type"] == "hard"
    )
    again = canopycli.push(tmp_path / "s.csv", config=cfg)
    assert 0 < again.rows_suppressed <= held
    assert canopycli.push(tmp_path / "s.csv", config=cfg, suppress=False).rows_suppressed == 0
    out, err = capfd.readouterr()
    assert out == "" and err == ""
