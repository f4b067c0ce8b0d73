"""campaigns: the executable campaigns of a SOAP connector (and a refresh of their cache)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from ..config import config_path, load_config, soap_connector
from ..deployteq.campaigns import campaign_list
from ..store.locks import state_dir
from .core import app, handle_errors
from .options import ConfigOpt, StateDirOpt
from .render import show_listing

ConnectorOpt = Annotated[
    str | None, typer.Option("--connector", help="The SOAP connector (needed if the config has several).")
]
COLUMNS = [("id", "id"), ("name", "name"), ("type", "type")]


@app.command("campaigns")
@handle_errors
def campaigns(
    config: ConfigOpt = None,
    connector: ConnectorOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help='A JSON array of {"id", "name", "type"}.')] = False,
    state_dir_: StateDirOpt = None,
) -> None:
    """The executable campaigns of a SOAP connector (id, name, type): what a segment's campaign: may name.

    Always asks Deployteq, and refreshes the list push keeps for 10 minutes."""
    p = config_path(config)
    name, conn = soap_connector(load_config(p), connector, str(p))
    records = [asdict(c) for c in campaign_list(conn, state_dir(state_dir_), fresh=True)]
    if not as_json:  # an id is copied into a config: no thousands separators
        records = [{**r, "id": str(r["id"])} for r in records]
    show_listing(
        f"campaigns of {name}",
        COLUMNS,
        records,
        "json" if as_json else "table",
        empty=f"connector {name}: no executable campaigns (none that this token may run)",
    )
