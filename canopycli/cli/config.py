"""validate-config: check a config without sending anything, and show what it says (``--online``:
and ask Deployteq whether the SOAP tokens work and the segments' campaigns exist)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import config_path, load_config
from ..deployteq.campaigns import check_online
from .core import app, emit, handle_errors, stdout_console
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
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Also ask Deployteq: one campaign list per SOAP connector (no cache), and every SOAP segment's "
            "campaign looked up in it. Exit 2 for an unknown campaign, 4 for a rejected token.",
        ),
    ] = False,
) -> None:
    """Check a config (schema, env vars, endpoints, references) without sending anything."""
    p = config_path(path or config)
    cfg = load_config(p)
    render_config(cfg, str(p), stdout_console())
    if online:
        check = check_online(cfg)
        emit(lambda out: out.file.write("".join(f"online: {line}\n" for line in check.lines)))
        error = check.error()
        if error is not None:
            raise error
