"""engagements: what came back from Deployteq (clicks, opens, receives, bounces, complaints).

``pull`` fetches them from the Analytics Events API, ``report`` and ``export`` show them,
``suppressed`` says what a segment's ``suppress:`` holds back, ``prune`` forgets old ones.
"""

from __future__ import annotations

import typer

from .core import app

engagements_app = typer.Typer(
    help="Engagements back: pull, report, export, suppressed, prune.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(engagements_app, name="engagements")
