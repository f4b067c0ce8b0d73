"""state: sync baselines (show, export, import, reset)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..pipeline.diff import scope_of
from ..store import Store
from ..store.locks import SegmentLock, state_dir
from ..store.portable import ExportFile, Origin, export_baseline, import_baseline
from .core import app, handle_errors, say
from .options import ListingFormatOpt, SegmentOptions, StateDirOpt, segment_options
from .render import show_listing

state_app = typer.Typer(help="Sync baselines: the last acknowledged state of each segment.", no_args_is_help=True)
app.add_typer(state_app, name="state")


@state_app.command("show")
@handle_errors
def state_show(state_dir_: StateDirOpt = None, fmt: ListingFormatOpt = "table") -> None:
    """Every sync baseline: connector, segment, profiles, last sync run."""
    with Store(state_dir(state_dir_)) as journal:
        scopes = journal.baselines.scopes()
        title = f"sync baselines in {journal.path}"
    columns = [
        ("connector", "connector"),
        ("segment", "segment"),
        ("identifier", "identifier"),
        ("profiles", "profiles"),
        ("updated", "updated (UTC)"),
        ("last_run", "last run"),
    ]
    show_listing(title, columns, [{k: sc[k] for k, _ in columns} for sc in scopes], fmt, "no sync baselines yet")


@state_app.command("export")
@handle_errors
@segment_options
def state_export(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="Where to write it (JSON Lines; .gz compresses; - is stdout).")
    ],
    *,
    options: SegmentOptions,
) -> None:
    """Write a segment's baseline to a portable file (e.g. a CI artifact)."""
    name = str(file)
    out = ExportFile(name, sys.stdout.buffer)  # checked before anything else is done
    try:
        r = options.resolved()
        here = Origin.of(r)
        with Store(state_dir(options.state_dir)) as journal:
            header = export_baseline(journal.baselines, scope_of(r.connector_name, r.segment_key), here, out)
        out.commit()
    finally:
        out.discard()
    for f, label in (("endpoint", "endpoint"), ("identifier", "identifier"), ("segment_name", "segmentName")):
        if header[f] != getattr(here, f):
            say(
                f"Warning: this baseline was built with {label} {header[f]}, but the config now says "
                f"{getattr(here, f)}; the export records what the baseline was built with."
            )
    where = "stdout" if name == "-" else name
    done = f"exported {header['profiles']:,} profiles of {r.segment_name} to {where}"
    typer.echo(done, err=out.stream)  # not into the data, when that goes to stdout or a device


@state_app.command("import")
@handle_errors
@segment_options
def state_import(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A file made by `canopycli state export`; - reads stdin.")
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Load a baseline exported for another connector, segment or endpoint (never other ids)."
        ),
    ] = False,
    *,
    options: SegmentOptions,
) -> None:
    """Replace a segment's baseline with an exported one (refused if it was exported for another segment)."""
    r = options.resolved()
    root = state_dir(options.state_dir)
    scope = scope_of(r.connector_name, r.segment_key)
    here = Origin.of(r)
    source = sys.stdin.buffer if str(file) == "-" else file
    with SegmentLock(root, r.connector_name, r.segment_key).acquire(note="state import"), Store(root) as journal:
        n, _, unchecked = import_baseline(journal.baselines, scope, here, source, force=force)
        journal.baselines.touch(
            scope,
            r.connector_name,
            r.segment_key,
            r.connector.identifier,
            None,
            endpoint=here.endpoint,
            segment_name=here.segment_name,
        )
    if unchecked:
        say(
            f"Warning: {file} was made by an older canopycli and does not record its {' or '.join(unchecked)}, "
            "so that could not be checked."
        )
    typer.echo(f"imported {n:,} profiles into the baseline of {r.segment_name}")


@state_app.command("reset")
@handle_errors
@segment_options
def state_reset(*, options: SegmentOptions) -> None:
    """Forget a segment's baseline: the next sync sends the whole snapshot as NEW."""
    r = options.resolved()
    root = state_dir(options.state_dir)
    scope = scope_of(r.connector_name, r.segment_key)
    with SegmentLock(root, r.connector_name, r.segment_key).acquire(note="state reset"), Store(root) as journal:
        n = journal.baselines.size(scope)
        journal.baselines.replace(scope, iter(()))
    typer.echo(f"forgot {n:,} profiles of {r.segment_name}; the next sync sends the whole snapshot as NEW")
