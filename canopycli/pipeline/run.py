"""Push and sync: read -> (stage) -> journal -> send -> report; and their dry runs.

A push is a *run* in the journal. Each batch is written to the journal (pending) before it is
sent, and its outcome is committed as soon as it is known, so a run killed at any moment can be
finished by ``retry`` (``retry.py``). ``sync`` runs through the same machinery (``drive.py``):
only the stage that turns the input into batches differs (``stages.ChangeStage`` for a push,
``diff.DiffStage`` for a sync), and this module never asks which one it has.

A dry run touches neither the journal nor the network, and never moves a sync baseline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Resolved
from ..deployteq.far import far_side
from ..deployteq.quota import DailyQuota
from ..errors import InputError
from ..model import DRY_RUN, Result
from ..outputs import write_failed
from ..store import Store as Journal
from ..store.locks import SegmentLock, state_dir
from .diff import DiffStage, SyncOptions
from .drive import Cancel, ProgressHook, Run, Wiring, drive, finish
from .payloads import PAYLOAD_FORMATS, adapt_payloads, payload_settings, reading_format
from .read import RecordsSource, Source, open_source
from .report import RejectsWriter, Report
from .retry import run_retry
from .stages import ChangeStage, Stage, batch_shape
from .suppress import Held, load_held

__all__ = [
    "Cancel",
    "ProgressHook",
    "PushOptions",
    "SyncOptions",
    "Wiring",
    "batch_settings",
    "run_push",
    "run_retry",
]


@dataclass
class PushOptions:
    input: str
    format: str | None = None
    delimiter: str | None = None
    status: str | None = None  # --status; None: NEW for rows without a status column
    dry_run: bool = False
    out_dir: Path | None = None
    rejects: Path | None = None
    concurrency: int | None = None
    allow_partial: bool = False
    wait: bool = False
    state_dir: Path | None = None
    records: Iterable[Any] | None = None  # the API's records instead of a file (then ``input`` is "-")
    suppress: bool = True  # False: --no-suppress (the segment's suppress: is ignored for this run)


# Builds a run's stage over its opened source, report and rejects writer.
StageFactory = Callable[[Source, Report, RejectsWriter | None], Stage]


def batch_settings(resolved: Resolved, opts: PushOptions) -> dict[str, Any]:
    """Everything that shapes the batches of a run, so ``retry`` can rebuild them exactly."""
    settings: dict[str, Any] = {
        **batch_shape(resolved),
        "status": opts.status or "NEW",
        "status_given": opts.status is not None,
        "format": opts.format,
        "delimiter": opts.delimiter,
        "suppressing": opts.suppress,  # a resumed run holds back what the run held back (not --no-suppress)
    }
    payloads = payload_settings(opts.format, resolved.segment_key, resolved.segments, opts.status)
    if payloads is not None:  # --status is the payloads' default status, not a status for every row
        settings["status_given"] = False
        settings["payloads"] = payloads
    return settings


def run_push(
    resolved: Resolved,
    opts: PushOptions,
    *,
    sync: SyncOptions | None = None,
    transport: Wiring | None = None,
    progress: ProgressHook | None = None,
    cancel: Cancel | None = None,
) -> Report:
    """``push`` a change file, or (with ``sync``) ``sync`` a full snapshot."""
    if opts.out_dir is not None and not opts.dry_run:
        raise InputError("--out writes request bodies of a dry run; add --dry-run")
    if sync is not None and opts.format in PAYLOAD_FORMATS:
        raise InputError(
            f"sync takes the full membership as CSV or JSONL; --format {opts.format} reads events",
            hint="Use `canopycli push --format ...` for files of payloads.",
        )
    settings = batch_settings(resolved, opts)
    endpoint = resolved.connector.endpoint

    held: list[Held | None] = [None]  # loaded once the state folder is known

    def change(source: Source, report: Report, rejects: RejectsWriter | None) -> Stage:
        return ChangeStage(settings, endpoint, source, report, rejects, dry_run=opts.dry_run, held=held[0])

    if opts.dry_run and sync is None:  # no journal, no lock: nothing is recorded
        held[0] = load_held(state_dir(opts.state_dir), resolved, opts.suppress, opts.rejects is not None)
        return _dry_run(resolved, opts, settings, ChangeStage.command, change, progress)
    root = state_dir(opts.state_dir)
    command = ChangeStage.command if sync is None else DiffStage.command
    with (
        SegmentLock(root, resolved.connector_name, resolved.segment_key).acquire(opts.wait, note=command),
        Journal(root) as journal,
    ):
        held[0] = load_held(journal, resolved, opts.suppress, opts.rejects is not None)
        build = change if sync is None else _diff(resolved, settings, journal, sync, held[0])
        if opts.dry_run:  # a sync's dry run diffs against the journal's baseline, and moves nothing
            return _dry_run(resolved, opts, settings, command, build, progress)
        with _intake(resolved, opts, settings, command, build) as (source, report, stage):
            wiring = transport or Wiring()
            run = _start(journal, resolved, opts, settings, stage, source, report, wiring)
            run.transport, run.progress, run.cancel = wiring, progress, cancel or Cancel()
            try:
                drive(run)
            finally:
                if run.far is not None:
                    run.far.close()
            stage.finish()
        return finish(journal, run.run_id, report)


def _diff(
    resolved: Resolved, settings: dict[str, Any], journal: Journal, sync: SyncOptions, held: Held | None
) -> StageFactory:
    def build(source: Source, report: Report, rejects: RejectsWriter | None) -> Stage:
        where = (resolved.connector_name, resolved.segment_key)
        return DiffStage(settings, resolved.connector.endpoint, source, report, rejects, journal, *where, sync, held)

    return build


@contextlib.contextmanager
def _intake(
    resolved: Resolved, opts: PushOptions, settings: dict[str, Any], command: str, build: StageFactory
) -> Iterator[tuple[Source, Report, Stage]]:
    """The one place a run (real or dry) opens its input, report, rejects writer and stage; they
    are closed in the reverse order however the run ends."""
    with contextlib.ExitStack() as opened:
        source: Source = (
            RecordsSource.of(opts.records)
            if opts.records is not None
            else open_source(opts.input, reading_format(opts.format), opts.delimiter)
        )
        opened.callback(source.close)
        adapt_payloads(source, settings, resolved.segment)
        report = Report(command, resolved.segment_name, resolved.connector_name, source.name, dry_run=opts.dry_run)
        hashed = resolved.segment.id_column if resolved.connector.identifier == "email" else None
        rejects = RejectsWriter(opts.rejects, source.columns, hashed) if opts.rejects else None
        if rejects is not None and opts.dry_run:
            opened.callback(rejects.close)
        elif rejects is not None:  # a failed write is then an error of the run, which retry can finish
            opened.callback(_close_rejects, rejects, report)
        stage = build(source, report, rejects)
        opened.callback(stage.close)
        yield source, report, stage


def _close_rejects(rejects: RejectsWriter, report: Report) -> None:
    try:
        rejects.close()
    except OSError as e:  # the last buffered lines met a full disk
        raise write_failed(e, "the rejects file").during_run(report.run_id, report.requests > 0) from e


def _start(
    journal: Journal,
    resolved: Resolved,
    opts: PushOptions,
    settings: dict[str, Any],
    stage: Stage,
    source: Source,
    report: Report,
    wiring: Wiring,
) -> Run:
    """Everything that may refuse the run before anything is sent (the stage's preparation, the
    far side: SOAP resolves the segment's campaign; the quota), then the run in the journal and
    the stage's effects of starting it."""
    conn = resolved.connector
    stage.prepare()
    far = far_side(resolved, journal.path, wiring.transport, opts.concurrency or conn.concurrency)
    quota = DailyQuota(journal.requests, conn.endpoint, conn.daily_limit)
    try:
        quota.check(stage.requests_needed(), opts.allow_partial)
    except BaseException:
        far.close()
        raise
    origin = source.origin()
    run_id = journal.runs.start(
        command=stage.command,
        config_path=resolved.config_path,
        connector=resolved.connector_name,
        segment=resolved.segment_key,
        segment_name=resolved.segment_name,
        endpoint=conn.endpoint,
        input=origin["input"],
        input_sha256=origin["input_sha256"],  # known once read to the end (``Journal.spooled``)
        settings=settings,
    )
    report.run_id = run_id
    stage.begin(run_id)
    writes = "the rejects file" if opts.rejects else "a file"
    return Run(journal, run_id, stage, report, quota, conn, source, opts.concurrency, writes=writes, far=far)


def _dry_run(
    resolved: Resolved,
    opts: PushOptions,
    settings: dict[str, Any],
    command: str,
    build: StageFactory,
    progress: ProgressHook | None,
) -> Report:
    with _intake(resolved, opts, settings, command, build) as (_, report, stage):
        stage.prepare()
        if opts.out_dir is not None:
            opts.out_dir.mkdir(parents=True, exist_ok=True)
        for b in stage.batches():
            if opts.out_dir is not None:
                (opts.out_dir / f"{b.index + 1:05d}-{b.uuid}.json").write_bytes(b.body)
            report.add_result(Result(b, DRY_RUN))
            if progress is not None:
                progress(report)
    report.finish()
    return report
