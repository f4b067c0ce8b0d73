"""validate-config: check a config without sending anything, and show what it says."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import config_path, load_config
from .core import app, handle_errors, stdout_console
from .options import ConfigOpt
from .render import render_config


@app.command("validate-config")
@handle_errors
def validate_config(
    path: Annotated[
        Path | None,
        typer.Argument(metavar="PATH", help="Config YAML. Default: --config, $CANOPYCLI_CONFIG or ./canopycli.yaml."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Check a config (schema, env vars, endpoints, references) without sending anything."""
    p = config_path(path or config)
    cfg = load_config(p)
    render_config(cfg, str(p), stdout_console())
