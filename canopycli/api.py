"""The public Python API, for orchestrators (Airflow, Dagster, Prefect tasks) that should not shell out.

    import canopycli

    report = canopycli.push("exports/segment.csv", config="canopycli.yaml", segment="WelcomeFlow")
    if report.exit_code:            # the CLI's exit code, as an int enum
        ...                         # e.g. canopycli.retry(report.run_id, config="canopycli.yaml")
    report.to_json()                # the same dict as --report-json

The same journal, locks and quota as the CLI; every error comes from the one error tree
(``canopycli.CanopyError`` and its subclasses, each with an ``exit_code``), never ``SystemExit``;
nothing is printed. A delivery outcome (failed batches, a 429, rejected credentials) is not an
exception: it is in the report, as for the CLI.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import Config, Resolved, config_path, load_config, resolve, resolve_run
from .engagements.pull import pull
from .engagements.report import report
from .errors import UsageError
from .pipeline.report import Report
from .pipeline.run import PushOptions, SyncOptions, run_push, run_retry
from .store import Store
from .store.locks import state_dir as state_dir_of

PathLike = str | os.PathLike[str]
_OPTIONS = {"format", "delimiter", "status", "out_dir", "rejects", "concurrency", "allow_partial", "wait", "suppress"}


def _config(config: PathLike | Config) -> tuple[Config, str]:
    if isinstance(config, Config):
        return config, "(config object)"
    path = config_path(config)
    return load_config(path), str(path)


def _options(
    source: PathLike | Iterable[dict[str, Any]], dry_run: bool, state_dir: PathLike | None, options: dict[str, Any]
) -> PushOptions:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise UsageError(f"unknown option(s): {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}")
    records: Iterable[dict[str, Any]] | None = None
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
    elif isinstance(source, (bytes, dict)) or not isinstance(source, Iterable):
        raise UsageError("source must be a file path, '-' (stdin) or an iterable of dicts")
    else:
        name, records = "-", source
    for key in ("out_dir", "rejects"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    return PushOptions(
        input=name,
        records=records,
        dry_run=dry_run,
        state_dir=Path(state_dir) if state_dir is not None else None,
        **options,
    )


def push(
    source: PathLike | Iterable[dict[str, Any]],
    *,
    config: PathLike | Config,
    segment: str | None = None,
    dry_run: bool = False,
    state_dir: PathLike | None = None,
    **options: Any,
) -> Report:
    """``canopycli push``: validate, hash, batch and send a change file; the report of the run.

    ``options``: ``format``, ``delimiter``, ``status``, ``out_dir``, ``rejects``, ``concurrency``,
    ``allow_partial``, ``wait`` (as the CLI's options of the same names), ``suppress=False`` (as
    ``--no-suppress``)."""
    cfg, shown = _config(config)
    resolved = resolve(cfg, segment, shown)
    return run_push(resolved, _options(source, dry_run, state_dir, options))


def sync(
    source: PathLike | Iterable[dict[str, Any]],
    *,
    config: PathLike | Config,
    segment: str | None = None,
    full: bool = False,
    max_remove: float = 0.5,
    force: bool = False,
    dry_run: bool = False,
    state_dir: PathLike | None = None,
    **options: Any,
) -> Report:
    """``canopycli sync``: diff a full snapshot against the last acknowledged one and send the changes."""
    if not 0 <= max_remove <= 1:
        raise UsageError(f"max_remove is a share from 0 to 1 (0.5 for 50%), got {max_remove!r}")
    cfg, shown = _config(config)
    resolved = resolve(cfg, segment, shown)
    sync_opts = SyncOptions(full=full, max_remove=max_remove, force=force)
    return run_push(resolved, _options(source, dry_run, state_dir, options), sync=sync_opts)


def retry(
    run_id: str | None = None,
    *,
    config: PathLike | Config,
    state_dir: PathLike | None = None,
    concurrency: int | None = None,
    allow_partial: bool = False,
    wait: bool = False,
) -> Report:
    """``canopycli retry``: resend a run's unacknowledged batches (``run_id`` None: the latest run)."""
    cfg, shown = _config(config)

    def resolved_for(run: Any) -> Resolved:
        return resolve_run(cfg, run.connector, run.segment, run.settings["segment"], shown, run.id)

    root = Path(state_dir) if state_dir is not None else None
    opts = PushOptions("-", concurrency=concurrency, allow_partial=allow_partial, wait=wait, state_dir=root)
    return run_retry(root, run_id, resolved_for, opts)


def pull_engagements(
    *,
    config: PathLike | Config,
    since: dt.date | None = None,
    until: dt.date | None = None,
    metrics: list[str] | None = None,
    state_dir: PathLike | None = None,
) -> dict[str, Any]:
    """``canopycli engagements pull``: fetch engagement events into the state folder; the figures
    (``{"received", "new", "metrics": [...]}``, as ``--json`` prints them)."""
    cfg, shown = _config(config)
    if cfg.engagements is None:
        raise UsageError(f"{shown} has no engagements: block", hint="See the README's Engagements section.")
    with Store(state_dir_of(Path(state_dir) if state_dir is not None else None)) as store:
        return pull(cfg.engagements, store, since=since, until=until, metrics=metrics).as_dict()


def engagements_report(
    *,
    since: dt.date | None = None,
    until: dt.date | None = None,
    campaign: str | None = None,
    by: str = "type",
    state_dir: PathLike | None = None,
) -> dict[str, Any]:
    """``canopycli engagements report --json``: the same dict (``until`` default today, ``since``
    30 days before it, UTC)."""
    last = until or dt.datetime.now(dt.UTC).date()
    first = since or last - dt.timedelta(days=29)
    with Store(state_dir_of(Path(state_dir) if state_dir is not None else None)) as store:
        return report(store, since=first, until=last, campaign=campaign, by=by)
