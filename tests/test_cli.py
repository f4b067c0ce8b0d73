"""CLI layer: exact exit codes and key lines, through Typer's CliRunner."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.cli.options import SHARED, RunOptions, run_options
from canopycli.emulators.webhook import Sandbox
from canopycli.errors import ExitCode
from canopycli.pipeline.run import PushOptions

from .conftest import TOKEN, cli_commands, emails, write_config, write_csv

runner = CliRunner()
COMMANDS = cli_commands()


def invoke(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_exit_code_contract() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 130, 143]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    code, out, _ = invoke(*command.split(), "--help")
    assert code == 0 and "Usage:" in out and len(out.splitlines()) > 3


def test_version() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and re.fullmatch(r"canopycli \d+\.\d+\.\d+\n", out)


def test_validate_config_ok_redacts_token(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.yaml", "https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-x"
    )
    code, out, err = invoke("validate-config", str(cfg))
    assert code == 0, err
    assert "valid" in out and "*** (set)" in out and "WelcomeFlow" in out
    assert TOKEN not in out + err


def test_validate_config_default_path_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = invoke("validate-config")
    assert code == 2 and "canopycli.yaml" in err and "file not found" in err
    write_config(tmp_path / "elsewhere.yaml", "https://h.example/x")
    monkeypatch.setenv("CANOPYCLI_CONFIG", str(tmp_path / "elsewhere.yaml"))
    assert invoke("validate-config")[0] == 0


def test_validate_config_lists_every_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANOPY_TOKEN")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "connectors:\n  main:\n    endpoint: http://webhook.myclang.com/x?token=abc\n    token: ${CANOPY_TOKEN}\n"
        "    identifier: email\nsegments:\n  S:\n    connector: other\n    id_column: email\n"
    )
    code, out, err = invoke("validate-config", str(cfg))
    assert code == 2 and out == ""
    assert "Traceback" not in err
    assert f"{cfg}:4: connectors.main.token: environment variable CANOPY_TOKEN is not set" in err
    assert f"{cfg}:5: connectors.main.identifier:" in err
    assert f"{cfg}:3: connectors.main.endpoint: endpoint carries a token= query parameter" in err
    assert f"{cfg}:8: segments.S.connector: unknown connector 'other' (known: main)" in err
    assert "4 config problems" in err and "abc" not in err


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"mail,x\na@x.com,1\n", "s.csv", "no id column 'email' (columns: mail, x)"),
        (b"\x00\x01\x02binary", "s.csv", "looks like a binary file"),
        (b"", "s.csv", "is empty"),
        (b"email\na@x.com\n", "s.xlsx", "cannot tell the format"),
    ],
)
def test_unusable_input_is_exit_2_one_line(tmp_path: Path, content: bytes, name: str, message: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    (tmp_path / name).write_bytes(content)
    code, out, err = invoke("push", str(tmp_path / name), "-c", str(cfg))
    assert code == 2 and message in err and out == ""
    assert err.startswith("Error: ") and "Traceback" not in err


def test_out_without_dry_run_is_a_usage_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    code, _, err = invoke("push", str(write_csv(tmp_path / "s.csv", emails(1))), "-c", str(cfg), "--out", "d")
    assert code == 2 and "--dry-run" in err


def test_bad_status_option(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    code, _, err = invoke(
        "push", str(write_csv(tmp_path / "s.csv", emails(1))), "-c", str(cfg), "--status", "gone", "--dry-run"
    )
    assert code == 2 and "--status must be NEW, MODIFIED or REMOVED" in err


def test_dry_run_table_and_counts(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    code, out, err = invoke("push", str(write_csv(tmp_path / "s.csv", emails(600))), "-c", str(cfg), "--dry-run", "-q")
    assert code == 0, err
    assert "(dry run)" in out and "Dry run" in out
    assert re.search(r"rows read\s+600", out) and re.search(r"profiles not sent\s+600", out)
    assert err == ""


def test_unexpected_errors_are_one_line_unless_debug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import canopycli.cli.push as cli

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError(f"kaboom {TOKEN}")

    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x")
    from canopycli.config import load_config

    load_config(cfg)  # registers the token as a secret
    monkeypatch.setattr(cli, "run_push", boom)
    code, _, err = invoke("push", "x.csv", "-c", str(cfg))
    assert code == 1 and "unexpected RuntimeError: kaboom ***" in err and TOKEN not in err


@pytest.mark.parametrize("command", ["push", "sync"])
@pytest.mark.parametrize("identifier", ["hashed_email", "customer_id"])
def test_bytes_that_are_not_utf8_reject_only_their_row(tmp_path: Path, command: str, identifier: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", "https://h.example/x", connector={"identifier": identifier})
    data = tmp_path / "s.csv"
    data.write_bytes(b"email,city\na@x.com,Li\xe8ge\nb@x.com,Gent\nc\xff@x.com,Gent\n")
    r = runner.invoke(
        app, [command, str(data), "-c", str(cfg), "--dry-run", "--rejects", "rej.csv", "--report-json", "r.json"]
    )
    assert r.exit_code == 0, r.stderr
    rejected = (tmp_path / "rej.csv").read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    assert sorted(line.split(",")[0] for line in rejected) == ["2", "4"]
    assert all("UTF-8" in line or "valid email" in line for line in rejected)


# --- the layout of cli/: shared options once, every table in render, Resolved built by config ---


def test_push_and_sync_take_every_shared_option_in_the_order_they_always_showed() -> None:
    import typer.main

    group = typer.main.get_command(app)
    shared = [p.name for p in SHARED]
    for command, own in (("push", ["status"]), ("sync", ["full", "max_remove", "force"])):
        names = [p.name for p in group.commands[command].params if p.name != "help"]  # type: ignore[attr-defined]
        assert names == ["file", *shared[:2], *own, *shared[2:]]


def test_run_options_build_push_options_by_name() -> None:
    passed_on = {
        "format": "jsonl",
        "delimiter": ";",
        "dry_run": True,
        "rejects": Path("rej.csv"),
        "concurrency": 3,
        "state_dir": Path("state"),
        "allow_partial": True,
        "wait": True,
    }
    given = RunOptions(
        config=Path("c.yaml"), segment="S", out=Path("out"), report_json=Path("r.json"), quiet=True, **passed_on
    )
    expected = PushOptions(input="s.csv", status="REMOVED", out_dir=Path("out"), **passed_on)
    assert given.push_options("s.csv", "REMOVED") == expected


def test_state_commands_share_config_segment_and_state_dir() -> None:
    import typer.main

    state = typer.main.get_command(app).commands["state"]  # type: ignore[attr-defined]
    shared = ["config", "segment", "state_dir"]
    for command, params in (("export", ["file", *shared]), ("import", ["file", *shared, "force"]), ("reset", shared)):
        assert [p.name for p in state.commands[command].params if p.name != "help"] == params


def test_run_options_refuses_a_command_that_declares_a_shared_option() -> None:
    def command(file: str, quiet: bool = False, *, options: RunOptions) -> None: ...

    with pytest.raises(TypeError, match="declares a shared option"):
        run_options(command)


def test_retry_names_the_run_whose_connector_the_config_lacks(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox(fail_first=10)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"retries": 0})
    write_csv(tmp_path / "s.csv", emails(3))
    r = runner.invoke(app, ["push", "s.csv", "-c", str(cfg), "-q", "--report-json", "r.json"])
    assert r.exit_code == 1, r.stderr
    run_id = re.search(r'"run_id": "([^"]+)"', (tmp_path / "r.json").read_text())
    assert run_id is not None
    other = tmp_path / "other.yaml"
    other.write_text(cfg.read_text().replace("  main:", "  other:").replace("connector: main", "connector: other"))
    code, _, err = invoke("retry", run_id.group(1), "-c", str(other))
    assert code == 2
    assert f"Error: run {run_id.group(1)} used connector 'main', which {other} does not define" in err


def test_the_demo_config_resolves_to_the_segment_the_demo_always_pushed() -> None:
    from canopycli.cli.sandbox import DEMO_PARAMS, demo_config
    from canopycli.config import resolve

    r = resolve(demo_config("http://127.0.0.1:1/hook", "tok"), "WelcomeFlow", "(demo)")
    assert (r.config_path, r.connector_name, r.segment_key, r.segment_name) == (
        "(demo)",
        "sandbox",
        "WelcomeFlow",
        "WelcomeFlow",
    )
    assert r.connector.endpoint == "http://127.0.0.1:1/hook" and r.connector.identifier == "hashed_email"
    assert r.segment.id_column == "email" and r.segment.params == DEMO_PARAMS


def test_only_cli_imports_typer_or_rich() -> None:
    root = Path(__file__).resolve().parent.parent / "canopycli"
    found = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "cli" not in p.relative_to(root).parts[:1]
        and re.search(r"^\s*(from|import) (typer|rich)\b", p.read_text(), re.M)
    ]
    assert found == []


def test_every_cli_module_imports_alone() -> None:
    import subprocess
    import sys

    modules = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "canopycli" / "cli").glob("*.py"))
    names = ["canopycli.cli" if module == "__init__" else f"canopycli.cli.{module}" for module in modules]
    started = [  # one fresh interpreter each, all at once
        (
            name,
            subprocess.Popen([sys.executable, "-c", f"import {name}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        )
        for name in names
    ]
    for name, proc in started:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, err.decode())
