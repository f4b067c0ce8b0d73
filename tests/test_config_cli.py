"""Config mistakes through the CLI: exit 2, one clear message, and never the token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.emulators.webhook import Sandbox

from .conftest import TOKEN, emails, grep_token, report, run_cli, write_config, write_csv

runner = CliRunner()
WEBHOOK = "https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-x"


def invoke(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize(
    "endpoint",
    [
        f"{WEBHOOK}?Token=abc123xyz",
        f"{WEBHOOK}?TOKEN=abc123xyz",
        f"{WEBHOOK}#token=abc123xyz",
        f"{WEBHOOK};token=abc123xyz",
    ],
)
def test_validate_config_refuses_a_token_in_the_endpoint(tmp_path: Path, endpoint: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", endpoint)
    code, out, err = invoke("validate-config", str(cfg))
    assert code == 2 and out == ""
    assert f"{cfg}:3: connectors.main.endpoint: endpoint carries a token=" in err
    assert "abc123xyz" not in err and not grep_token(out, err)


def test_validate_config_redacts_credentials_in_the_endpoint(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", f"{WEBHOOK}?sig=s3cr3tsig&lang=nl")
    code, out, err = invoke("validate-config", str(cfg))
    assert code == 0, err
    assert f"{WEBHOOK}?sig=***&lang=nl" in out
    assert "s3cr3tsig" not in out + err and not grep_token(out, err)


@pytest.mark.parametrize(
    ("token", "auth", "message"),
    [
        (TOKEN + "\n", "query", "token contains whitespace or a control character"),
        (TOKEN + "\r", "bearer", "token contains whitespace or a control character"),
        (TOKEN + "é", "bearer", "token has a non-ASCII character"),
    ],
)
def test_validate_config_refuses_a_bad_token_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str, auth: str, message: str
) -> None:
    monkeypatch.setenv("CANOPY_TOKEN", token)
    cfg = write_config(tmp_path / "c.yaml", WEBHOOK, connector={"auth": auth})
    code, out, err = invoke("validate-config", str(cfg))
    assert code == 2 and out == ""
    assert f"{cfg}:4: connectors.main.token: {message}" in err
    assert not grep_token(out, err)


def test_validate_config_reports_a_repeated_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"connectors:\n  main:\n    endpoint: {WEBHOOK}\n    token: ${{CANOPY_TOKEN}}\n    identifier: hashed_email\n"
        "    token: hard-coded-by-mistake\nsegments:\n  S:\n    connector: main\n    id_column: email\n"
    )
    code, out, err = invoke("validate-config", str(cfg))
    assert code == 2 and out == ""
    assert f"{cfg}:6: connectors.main.token: key 'token' appears twice in this mapping (lines 4 and 6)" in err
    assert "hard-coded-by-mistake" not in err


def two_segments(tmp_path: Path) -> Path:
    cfg = write_config(tmp_path / "c.yaml", WEBHOOK)
    data = yaml.safe_load(cfg.read_text())
    data["segments"]["Reactivation"] = {"connector": "main", "id_column": "email"}
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg


@pytest.mark.parametrize(
    "command",
    [
        ["push", "s.csv", "--dry-run"],
        ["sync", "s.csv", "--dry-run"],
        ["state", "export", "b.jsonl"],
        ["state", "reset"],
    ],
)
def test_a_missing_segment_is_a_usage_error_listing_them(tmp_path: Path, command: list[str]) -> None:
    cfg = two_segments(tmp_path)
    write_csv(tmp_path / "s.csv", emails(1))
    code, out, err = invoke(*command, "-c", str(cfg))
    assert code == 2 and out == ""
    assert err == "Error: the config has 2 segments; choose one with --segment: Reactivation, WelcomeFlow\n"
    assert not (tmp_path / "b.jsonl").exists()


def test_an_unknown_segment_is_a_usage_error_with_a_suggestion(tmp_path: Path) -> None:
    cfg = two_segments(tmp_path)
    write_csv(tmp_path / "s.csv", emails(1))
    code, out, err = invoke("push", "s.csv", "-c", str(cfg), "--segment", "welcomeflow", "--dry-run")
    assert code == 2 and out == ""
    assert err == (
        f"Error: no segment 'welcomeflow' in {cfg}; the segments are: Reactivation, WelcomeFlow\n"
        "Did you mean --segment WelcomeFlow?\n"
    )
    code, _, err = invoke("push", "s.csv", "-c", str(cfg), "--segment", "Other", "--dry-run")
    assert code == 2 and err == f"Error: no segment 'Other' in {cfg}; the segments are: Reactivation, WelcomeFlow\n"


def test_retry_names_both_endpoints_redacted(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = sandbox()
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    write_csv(tmp_path / "s.csv", emails(3))
    code, _, err = invoke("push", "s.csv", "-c", str(cfg), "-q", "--report-json", "r.json")
    assert code == 0, err
    run_id = report(tmp_path / "r.json")["run_id"]
    moved = write_config(tmp_path / "moved.yaml", f"{sb.endpoint}?sig=s3cr3tsig")
    code, out, err = invoke("retry", run_id, "-c", str(moved))
    assert code == 2
    assert f"was sent to {sb.endpoint}, but connector 'main' now points at {sb.endpoint}?sig=***" in err
    assert "s3cr3tsig" not in out + err


def test_a_non_ascii_token_with_bearer_auth_is_refused_before_anything_is_sent(
    sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    token = "tök€n-SECRET-1234"
    sb = sandbox(token=token)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint, connector={"auth": "bearer"})
    write_csv(tmp_path / "s.csv", emails(3))
    p = run_cli("push", "s.csv", "-c", str(cfg), env={"CANOPY_TOKEN": token})
    assert p.returncode == 2, p.stderr
    assert "connectors.main.token: token has a non-ASCII character" in p.stderr
    assert "This is a bug" not in p.stderr and token not in p.stdout + p.stderr
    assert sb.snapshot()["requests"] == 0


def test_a_non_ascii_token_with_query_auth_is_sent_percent_encoded(
    sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    token = "tök€n-SECRET-1234"
    sb = sandbox(token=token)
    cfg = write_config(tmp_path / "c.yaml", sb.endpoint)
    write_csv(tmp_path / "s.csv", emails(3))
    p = run_cli("push", "s.csv", "-c", str(cfg), "--report-json", "r.json", env={"CANOPY_TOKEN": token})
    assert p.returncode == 0, p.stderr
    assert report(tmp_path / "r.json")["profiles_delivered"] == 3
    assert token not in p.stdout + p.stderr
    assert sb.snapshot()["accepted"] == 1


def test_validate_config_shows_the_engagements_block_without_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "client-SECRET-5f4e3d2c1b0a"
    monkeypatch.setenv("DT_CLIENT_SECRET", secret)
    cfg = write_config(tmp_path / "c.yaml", WEBHOOK, segment={"suppress": ["bounce"]})
    data = yaml.safe_load(cfg.read_text())
    data["engagements"] = {"client_id": "my-client", "client_secret": "${DT_CLIENT_SECRET}"}
    cfg.write_text(yaml.safe_dump(data))
    code, out, err = invoke("validate-config", str(cfg))
    assert code == 0, err
    assert "my-client" in out and "https://api.canopydeploy.net/analytics-events" in out
    assert "suppress" in out and "bounce" in out
    assert secret not in out + err
    data["engagements"]["api_url"] = "http://api.example.com/analytics-events"  # not loopback: https only
    cfg.write_text(yaml.safe_dump(data))
    code, out, err = invoke("validate-config", str(cfg))
    assert code == 2 and "engagements.api_url" in err and secret not in err
