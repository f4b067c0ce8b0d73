"""Config mistakes through the CLI: exit 2, one clear message, and never the token."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from canopycli.cli import app

runner = CliRunner()
WEBHOOK = "https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-x"


def invoke(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


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
