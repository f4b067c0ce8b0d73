"""Docs that cannot drift: the README is checked against the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from canopycli.config import parse_config
from canopycli.errors import ExitCode
from canopycli.pipeline.report import Report

from .conftest import cli_commands

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_command_is_in_the_readme() -> None:
    missing = [c for c in cli_commands() if f"canopycli {c}" not in README]
    assert missing == []


def test_readme_exit_codes_match_the_enum() -> None:
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.M))
    documented = {int(k) for k in table}
    assert documented == {int(c) for c in ExitCode}


def test_readme_config_example_is_valid() -> None:
    block = re.search(r"## Config reference\n\n```yaml\n(.*?)```", README, re.S)
    assert block is not None
    parse_config(block.group(1), "README.md")


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    parse_config(path.read_text(), str(path))


def test_documented_report_keys_exist() -> None:
    section = README.split("`--report-json PATH` writes the same data.")[1].split("`--rejects PATH`")[0]
    keys = set(re.findall(r"`([a-z_]+)`", section))
    data = Report("push", "S", "c", "in").to_json()
    batch_keys = {"index", "uuid", "profiles", "outcome", "status_code", "attempts", "error", "detail"}
    assert keys - set(data) - batch_keys - {"delivered", "failed", "not_sent", "dry_run"} == set()


def test_ci_runs_the_readme_test_command() -> None:
    quick = re.search(r"Install the test extras and run the tests:\n\n```bash\n(.+?)\n```", README)
    assert quick is not None
    assert quick.group(1) in (ROOT / ".ci" / "run").read_text()


def test_every_dependency_is_explained() -> None:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.split(r"[<>=\[]", d)[0] for d in deps]
    section = README.split("## Dependencies, and why")[1]
    assert [n for n in names if n not in section] == []


def test_the_command_list_comes_from_the_app_with_its_sub_commands() -> None:
    assert {"push", "sync", "retry", "runs show", "runs prune", "state export", "state import"} <= set(cli_commands())


def test_every_module_is_in_the_layout() -> None:
    """The README's Layout names every module, so the tree and its map cannot drift apart."""
    layout = README.split("## Layout")[1].split("\n## ")[0]
    modules = [p for p in (ROOT / "canopycli").rglob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in layout]
    folders = {p.parent.name for p in modules if p.parent.name != "canopycli"}
    assert missing == [] and [f for f in folders if f"{f}/" not in layout] == []
