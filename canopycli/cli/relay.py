"""relay: the long-running HTTP service that queues profile events and flushes them per segment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..config import config_path, load_config
from .core import app, emit, handle_errors, say
from .options import ConfigOpt, StateDirOpt


@app.command()
@handle_errors
def relay(
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    listen: Annotated[
        str | None, typer.Option("--listen", help="HOST:PORT to listen on. Default: relay.listen, else 127.0.0.1:8787.")
    ] = None,
    drain: Annotated[
        bool, typer.Option("--drain", help="On SIGTERM/SIGINT, send everything queued before exiting.")
    ] = False,
    insecure_listen: Annotated[
        bool,
        typer.Option("--insecure-listen", help="Allow a non-loopback --listen without TLS (tokens in clear text)."),
    ] = False,
) -> None:
    """Run the relay: take profile events over HTTP, queue them durably, flush every 20 minutes or at 500."""
    from ..relay.service import RelayOptions, serve  # uvicorn, starlette: only for the command that serves

    p = config_path(config)
    cfg = load_config(p)
    opts = RelayOptions(listen=listen, drain=drain, insecure_listen=insecure_listen, state_dir=state_dir)
    final = serve(cfg, str(p), opts, say)
    emit(lambda console: console.print_json(json.dumps(final)))


# --- demo --relay ------------------------------------------------------------------------------

DEMO_EVENTS = 7  # profiles the demo's posts queue: 3 + 3 (engine) + 1 (Copernica)


def demo_relay(workdir: Path, quiet: bool) -> None:
    """The sandbox and a relay in this process; sample events in all three shapes; what arrived."""
    from ..relay.demo import run_demo

    lines = run_demo(workdir, (lambda _: None) if quiet else say)
    emit(lambda console: console.print("\n".join(lines), markup=False, highlight=False))
