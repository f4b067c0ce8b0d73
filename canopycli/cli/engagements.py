"""engagements: what came back from Deployteq (clicks, opens, receives, bounces, complaints).

``pull`` fetches them from the Analytics Events API, ``report`` and ``export`` show them,
``suppressed`` says what a segment's ``suppress:`` holds back, ``prune`` forgets old ones.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..config import config_path, load_config, resolve
from ..pipeline.suppress import id_column
from ..store import Store
from ..store.locks import state_dir
from .core import app, handle_errors
from .options import ConfigOpt, ListingFormatOpt, OlderThanOpt, StateDirOpt, cutoff
from .render import show_listing

engagements_app = typer.Typer(
    help="Engagements back: pull, report, export, suppressed, prune.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(engagements_app, name="engagements")


# --- suppressed, prune ---------------------------------------------------------------------

SUPPRESSED_COLUMNS = [
    ("segment", "segment"),
    ("suppress", "suppress"),
    ("held_back", "profiles held back"),
    ("since", "since (UTC day)"),
]


@engagements_app.command("suppressed")
@handle_errors
def suppressed(
    segment: Annotated[
        str | None, typer.Argument(metavar="[SEGMENT]", help="One segment (default: every segment with suppress:).")
    ] = None,
    config: ConfigOpt = None,
    state_dir_: StateDirOpt = None,
    fmt: ListingFormatOpt = "table",
) -> None:
    """How many profiles each segment's suppress: holds back, and since when.

    From the engagements stored in the state folder: run `canopycli engagements pull` first."""
    p = config_path(config)
    cfg = load_config(p)
    chosen = [resolve(cfg, segment, str(p))] if segment is not None else [resolve(cfg, k, str(p)) for k in cfg.segments]
    records = []
    with Store(state_dir(state_dir_)) as store:
        for r in chosen:
            if not r.segment.suppress and segment is None:
                continue
            n, since = (
                store.engagements.held_back(id_column(r.connector.identifier), r.segment.suppress)
                if r.segment.suppress
                else (0, None)
            )
            records.append(
                {
                    "segment": r.segment_key,
                    "suppress": ", ".join(r.segment.suppress) or "(none)",
                    "held_back": n,
                    "since": since or "",
                }
            )
    show_listing(
        "held back by suppress:",
        SUPPRESSED_COLUMNS,
        records,
        fmt,
        empty=f"no segment of {p} has suppress: (add `suppress: [bounce, complaint]` to a segment)",
    )


@engagements_app.command("prune")
@handle_errors
def prune(older_than: OlderThanOpt = "180d", state_dir_: StateDirOpt = None) -> None:
    """Forget engagement events from days before --older-than (they no longer suppress)."""
    before = cutoff(older_than).date().isoformat()
    with Store(state_dir(state_dir_)) as store:
        removed = store.engagements.prune(before)
    typer.echo(f"pruned {removed:,} engagement event(s) from before {before}")
