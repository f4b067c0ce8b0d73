"""Push and retry: read -> normalize -> de-duplicate -> batch -> journal -> send -> report.

A push is a *run* in the journal. Each batch is written to the journal (pending, with its body)
before it is sent, and its outcome is committed as soon as it is known, so a run killed at any
moment can be finished by ``retry``: unacknowledged batches are resent from the journal (same
body, same uuid), and if the run died before it had read all of its input, the input is read
again (after checking its SHA-256) and the batches it had not reached are added.

``sync`` (see ``sync.py``) runs through the same machinery: only the stage that turns the input
into batches differs (a diff against the baseline instead of the rows themselves).

A dry run touches neither the journal nor the network, and never moves a sync baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from ..config import Resolved, Segment, redact_url
from ..deployteq.deliver import Sender, deliver
from ..deployteq.quota import DailyQuota, requests_needed, retry_when
from ..errors import CanopyError, InputError, StateError
from ..model import (
    DONE,
    DRY_RUN,
    SENT,
    STOP_DAILY_LIMIT,
    STOP_DAMAGED_INPUT,
    STOP_INTERRUPTED,
    STOP_TERMINATED,
    Batch,
    Profile,
    Reject,
    Result,
    State,
)
from ..outputs import write_failed
from ..store.journal import Journal, RunRow
from ..store.locks import SegmentLock, state_dir
from .batch import Encoder, batches
from .dedupe import Seen
from .diff import SyncPipeline, baseline_changes, scope_of
from .normalize import Normalizer
from .read import Source, Unreadable, fingerprint, open_source
from .report import RejectsWriter, Report


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


@dataclass
class SyncOptions:
    full: bool = False  # send the whole snapshot as NEW and rebuild the baseline
    max_remove: float = 0.5  # refuse (exit 6) a snapshot that removes more than this share
    force: bool = False  # ... unless forced


class Cancel:
    """Set from a signal handler: stop taking new batches, let in-flight ones finish."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.sender: Sender | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.sender is not None:
            self.sender.halt(reason)


ProgressHook = Callable[[Report], None]


@dataclass
class Transport:
    """How requests go out: injectable for tests (``httpx.MockTransport``) and fake sleeps."""

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep


# --- the stages ---------------------------------------------------------------------------


def profiles_from(
    source: Source,
    normalizer: Normalizer,
    report: Report,
    on_reject: Callable[[int, str, object, bool], None],
    kept: Kept | None = None,
) -> Iterator[Profile]:
    """Valid, first-seen profiles; every other row goes to ``on_reject`` with its reason.

    ``kept``: remembers the rows of the batch being built, for a profile the batch rejects."""
    seen = Seen(expected=source.estimated_rows or 0, hex_ids=normalizer.hex_ids)
    try:
        yield from _first_seen(source, normalizer, report, on_reject, seen, kept)
    finally:
        seen.close()


class Kept:
    """The rows of the last ``size`` profiles by line: a batch that rejects a profile (too large
    for a request) writes the row as read to --rejects. ``batches`` takes ``size`` profiles before
    it encodes them, so the rows of the batch being encoded are always here, and no more."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows: dict[int, object] = {}

    def add(self, line: int, record: object) -> None:
        if len(self.rows) >= self.size:
            self.rows.clear()
        self.rows[line] = record


def _first_seen(
    source: Source,
    normalizer: Normalizer,
    report: Report,
    on_reject: Callable[[int, str, object, bool], None],
    seen: Seen,
    kept: Kept | None = None,
) -> Iterator[Profile]:
    for line, record in source.records:
        report.rows_read += 1
        if isinstance(record, Unreadable):
            on_reject(line, record.reason, record.raw, False)
            continue
        got = normalizer(line, record)
        if isinstance(got, Reject):
            on_reject(line, got.reason, record, False)
            continue
        first = seen.first_line(got.customer_id, line)
        if first is not None:
            on_reject(line, f"duplicate identifier: line {first} has the same one and is the one sent", record, True)
            continue
        if kept is not None:
            kept.add(line, record)
        yield got
    if source.damage is not None:  # reading stopped there: the run ends with exit 2
        report.damage = f"{source.damage}. {source.damage_fix}"


def batch_settings(resolved: Resolved, opts: PushOptions) -> dict[str, Any]:
    """Everything that shapes the batches of a run, so ``retry`` can rebuild them exactly."""
    conn = resolved.connector
    return {
        "segment": resolved.segment.model_dump(mode="json"),
        "segment_name": resolved.segment_name,
        "identifier": conn.identifier,
        "customer_type": conn.customer_type,
        "batch_size": conn.batch_size,
        "max_body_bytes": conn.max_body_bytes,
        "status": opts.status or "NEW",
        "status_given": opts.status is not None,
        "format": opts.format,
        "delimiter": opts.delimiter,
    }


class Stage(Protocol):
    """Turns an input into batches (push: its rows; sync: the diff), counting into a report."""

    def batches(self) -> Iterator[Batch]: ...

    def counts(self, complete: bool) -> dict[str, int | None]: ...


class Pipeline:
    """Read -> normalize -> de-duplicate -> batch for one change file, counting into ``report``."""

    def __init__(
        self, settings: dict[str, Any], endpoint: str, source: Source, report: Report, rejects: RejectsWriter | None
    ) -> None:
        segment = Segment.model_validate(settings["segment"])
        self.normalizer = Normalizer(
            segment,
            settings["identifier"],
            source.columns,
            settings["status"],
            source_name=source.name,
            encoded=True,
            status_given=settings.get("status_given", False),  # absent in runs journaled by 1.0
        )
        self.encoder = Encoder(
            endpoint, settings["segment_name"], settings["customer_type"], settings["max_body_bytes"]
        )
        self.source, self.report, self.rejects = source, report, rejects
        self.batch_size = settings["batch_size"]
        self.in_batches = 0  # profiles handed out in batches so far

    def on_reject(self, line: int, reason: str, record: object, duplicate: bool) -> None:
        self.report.add_reject(line, reason, duplicate)
        if self.rejects is not None:
            self.rejects.write(line, reason, record)

    def batches(self) -> Iterator[Batch]:
        kept = Kept(self.batch_size) if self.rejects is not None else None
        profiles = profiles_from(self.source, self.normalizer, self.report, self.on_reject, kept)
        for b in batches(
            profiles,
            self.encoder,
            self.batch_size,
            lambda r: self.on_reject(r.line, r.reason, kept.rows.get(r.line) if kept else None, False),
        ):
            self.in_batches += b.profiles
            yield b

    def counts(self, complete: bool) -> dict[str, int | None]:
        r = self.report
        # Interrupted mid-file, rows read but not yet in a batch are not counted: retry reads them again.
        read = r.rows_read if complete else r.rows_rejected + r.rows_duplicate + self.in_batches
        return {"rows_read": read, "rows_rejected": r.rows_rejected, "rows_duplicate": r.rows_duplicate}


# --- public entry points ---------------------------------------------------------------------


def run_push(
    resolved: Resolved,
    opts: PushOptions,
    *,
    sync: SyncOptions | None = None,
    transport: Transport | None = None,
    progress: ProgressHook | None = None,
    cancel: Cancel | None = None,
) -> Report:
    """``push`` a change file, or (with ``sync``) ``sync`` a full snapshot."""
    command = "sync" if sync is not None else "push"
    if opts.out_dir is not None and not opts.dry_run:
        raise InputError("--out writes request bodies of a dry run; add --dry-run")
    conn = resolved.connector
    settings = batch_settings(resolved, opts)
    if opts.dry_run and sync is None:

        def change_file(source: Source, report: Report, rejects: RejectsWriter | None) -> Stage:
            return Pipeline(settings, conn.endpoint, source, report, rejects)

        return _dry_run(change_file, resolved, opts, progress, command)
    root = state_dir(opts.state_dir)
    lock = SegmentLock(root, resolved.connector_name, resolved.segment_key)
    with lock.acquire(opts.wait, note=command), Journal(root) as journal:
        scope = scope_of(resolved.connector_name, resolved.segment_key) if sync is not None else None
        if opts.dry_run and sync is not None:

            def build(source: Source, report: Report, rejects: RejectsWriter | None) -> Stage:
                journal.fold_baseline(scope)  # logically a no-op: only applies acknowledged moves
                return SyncPipeline(
                    settings, conn.endpoint, source, report, rejects, journal.path, scope or "", **vars(sync)
                )

            return _dry_run(build, resolved, opts, progress, command)
        source = open_source(opts.input, opts.format, opts.delimiter)
        try:
            report = Report(command, resolved.segment_name, resolved.connector_name, source.name)
            rejects = RejectsWriter(opts.rejects, source.columns) if opts.rejects else None
            try:
                stage: Stage
                digest = None
                if sync is None:
                    stage = Pipeline(settings, conn.endpoint, source, report, rejects)
                    digest, lines = fingerprint(opts.input) if opts.input != "-" else (None, None)
                    rows = None if lines is None else lines - (1 if source.format == "csv" else 0)
                    needed = requests_needed(rows, conn.batch_size)
                else:
                    journal.fold_baseline(scope)  # the diff reads the baseline table directly
                    stage = SyncPipeline(
                        settings, conn.endpoint, source, report, rejects, journal.path, scope or "", **vars(sync)
                    )
                    needed = stage.needed_requests()
                try:
                    quota = DailyQuota(journal, conn.endpoint, conn.daily_limit)
                    quota.check(needed, opts.allow_partial)
                    run_id = journal.start_run(
                        command=command,
                        config_path=resolved.config_path,
                        connector=resolved.connector_name,
                        segment=resolved.segment_key,
                        segment_name=resolved.segment_name,
                        endpoint=conn.endpoint,
                        input=str(Path(opts.input).resolve()) if opts.input != "-" else "-",
                        input_sha256=digest,
                        settings=settings,
                    )
                    report.run_id = run_id
                    if scope is not None and sync is not None:
                        journal.supersede(resolved.connector_name, resolved.segment_key)
                        if sync.full:
                            journal.replace_baseline(scope, iter(()))
                        journal.touch_scope(
                            scope, resolved.connector_name, resolved.segment_key, conn.identifier, run_id
                        )
                    batches_ = spool(journal, run_id, stage.batches())
                    try:
                        _drive(
                            journal,
                            run_id,
                            resolved,
                            opts,
                            quota,
                            batches_,
                            report,
                            transport,
                            progress,
                            cancel,
                            stage,
                            scope,
                        )
                    except OSError as e:  # the rejects file or the disk, mid-run
                        raise write_failed(e, "the rejects file" if opts.rejects else "a file").during_run(
                            run_id, report.requests > 0
                        ) from e
                    except CanopyError as e:
                        raise e.during_run(run_id, report.requests > 0) from None
                finally:
                    if isinstance(stage, SyncPipeline):
                        stage.close()
            finally:
                if rejects is not None:
                    _close_rejects(rejects, report)
        finally:
            source.close()
        return finish(journal, run_id, report)


def _close_rejects(rejects: RejectsWriter, report: Report) -> None:
    try:
        rejects.close()
    except OSError as e:  # the last buffered lines met a full disk
        raise write_failed(e, "the rejects file").during_run(report.run_id, report.requests > 0) from e


def run_retry(
    journal_root: Path | None,
    run_id: str | None,
    resolved_for: Callable[[RunRow], Resolved],
    opts: PushOptions,
    *,
    transport: Transport | None = None,
    progress: ProgressHook | None = None,
    cancel: Cancel | None = None,
) -> Report:
    """Resend a run's unacknowledged batches (and finish reading its input if it died early)."""
    root = state_dir(journal_root)
    with Journal(root) as journal:
        run = journal.run(run_id) if run_id else journal.last_run()
    resolved = resolved_for(run)
    conn = resolved.connector
    if conn.endpoint != run.endpoint:
        raise StateError(
            f"run {run.id} was sent to {redact_url(run.endpoint)}, "
            f"but connector {run.connector!r} now points at {redact_url(conn.endpoint)}",
            hint="Retry with the config the run used (--config), so the batches reach the same webhook.",
        )
    with SegmentLock(root, run.connector, run.segment).acquire(opts.wait, note="retry"), Journal(root) as journal:
        run = journal.run(run.id)
        journal.claim(run.id)
        report = Report("retry", run.segment_name, run.connector, run.input or "-", run_id=run.id)
        quota = DailyQuota(journal, conn.endpoint, conn.daily_limit)
        stream: Iterable[Batch] = journal.unacked(run.id)
        needed: int | None = journal.count_unacked(run.id)
        source = None
        pipeline = None
        scope = scope_of(run.connector, run.segment) if run.command == "sync" else None
        if scope is None and (not run.spool_complete or journal.bodiless(run.id)):
            # killed before it had read everything, or with batches in flight: rebuild from the input
            source, pipeline = _reopen(run, report)
            stream = respool(journal, run.id, pipeline.batches())
            needed = None
        try:
            quota.check(needed, opts.allow_partial)
            try:
                _drive(
                    journal, run.id, resolved, opts, quota, stream, report, transport, progress, cancel, pipeline, scope
                )
            except OSError as e:
                raise write_failed(e, "a file").during_run(run.id, True) from e
            except CanopyError as e:
                raise e.during_run(run.id, True) from None
        finally:
            if source is not None:
                source.close()
        if scope is not None and (not run.spool_complete or journal.bodiless(run.id)):
            report.retry_hint = "this sync was stopped mid-way: the next `canopycli sync` finds and sends the rest"
        return finish(journal, run.id, report)


# --- the machinery shared by push and retry -------------------------------------------------


def spool(journal: Journal, run_id: str, stream: Iterator[Batch]) -> Iterator[Batch]:
    """Write each batch to the journal (pending) before it may be sent."""
    for b in stream:
        journal.add_batch(run_id, b)
        yield b


def respool(journal: Journal, run_id: str, stream: Iterator[Batch]) -> Iterator[Batch]:
    """Batches rebuilt from a run's input: those it journaled are checked to come out identical
    and resent unless acknowledged; those it never reached are journaled and sent."""
    known = journal.states(run_id)
    for b in stream:
        if b.index not in known:
            journal.add_batch(run_id, b)
            yield b
            continue
        uuid, state = known[b.index]
        if uuid != b.uuid:
            raise StateError(
                f"run {run_id}: batch {b.index + 1} came out different when the input was read again",
                hint="The input or its mapping changed since the run; push the file as a new run instead.",
            )
        if state not in DONE:
            yield b


def _reopen(run: RunRow, report: Report) -> tuple[Source, Pipeline]:
    """The input of a run that was killed mid-way, checked to be the same bytes.

    Needed when the run had not read all of it, or was killed with batches in flight (a push
    stores a batch's body only once it ends unacknowledged)."""
    what = f"run {run.id} was stopped before it had read or recorded all of its batches"
    if not run.input or run.input == "-" or not run.input_sha256:
        raise StateError(
            f"{what}, and it read stdin: the rest cannot be rebuilt",
            hint="Push the data again as a new run (batches already delivered keep their uuids).",
        )
    if not Path(run.input).exists():
        raise StateError(
            f"{what}; they are rebuilt from {run.input}, which is gone", hint="Restore the file to finish the run."
        )
    digest, _ = fingerprint(run.input)
    if digest != run.input_sha256:
        raise StateError(
            f"{what}; they are rebuilt from {run.input}, but the file has changed since",
            hint="Restore the original file to finish the run, or push the new file as a new run.",
        )
    s = run.settings
    source = open_source(run.input, s["format"], s["delimiter"])
    return source, Pipeline(s, run.endpoint, source, report, None)


def _drive(
    journal: Journal,
    run_id: str,
    resolved: Resolved,
    opts: PushOptions,
    quota: DailyQuota,
    stream: Iterable[Batch],
    report: Report,
    transport: Transport | None,
    progress: ProgressHook | None,
    cancel: Cancel | None,
    stage: Stage | None,
    scope: str | None = None,
) -> None:
    """Send ``stream`` and record every outcome; ``scope``: the sync baseline that acks move."""
    t = transport or Transport()
    cancel = cancel or Cancel()

    def until_cancelled(it: Iterable[Batch]) -> Iterator[Batch]:
        # A push stops reading at once (the file may be huge; retry reads the rest). A sync's
        # diff is done already: its remaining batches are journaled as not sent, for retry.
        for b in it:
            if cancel.reason is not None and scope is None:
                return
            yield b

    def on_result(r: Result) -> None:
        state = State.of(r.outcome)
        baseline = (scope, baseline_changes(r.batch)) if scope is not None and state == SENT else None
        journal.record(
            run_id, r.batch.index, state, r.status_code, r.attempts, r.error, r.detail, baseline, r.batch.body
        )
        quota.save()
        report.add_result(r)
        if progress is not None:
            progress(report)

    sender = Sender(
        resolved.connector,
        transport=t.transport,
        sleep=t.sleep,
        concurrency=opts.concurrency,
        before_request=quota.take,
        on_count=quota.observe,
    )
    cancel.sender = sender
    completed = False
    try:
        with sender:
            deliver(until_cancelled(stream), sender, on_result)
        completed = cancel.reason is None or scope is not None
    finally:
        quota.save()
        report.stop_reason = cancel.reason or sender.stop_reason
        if report.stop_reason == STOP_DAILY_LIMIT:
            report.retry_hint = (sender.retry_hint + "; " if sender.retry_hint else "") + f"retry {retry_when()}"
        if stage is not None:
            journal.spooled(run_id, stage.counts(completed), completed)
        cancel.sender = None


def finish(journal: Journal, run_id: str, live: Report) -> Report:
    """Close the run in the journal and report it from there (so retry reports the whole run)."""
    if live.command in ("sync", "retry"):
        journal.fold_baseline()
    run = journal.run(run_id)
    report = Report.from_journal(run, journal.batches(run_id), live.command)
    report.stop_reason, report.retry_hint, report.reject_samples = (
        live.stop_reason,
        live.retry_hint,
        live.reject_samples,
    )
    report.damage = live.damage
    if report.damage is None and run.stop_reason == STOP_DAMAGED_INPUT:  # a retry of a run that read damaged input
        report.damage = (
            f"{run.input}: run {run.id} stopped reading its input where it was damaged; the lines from there on "
            "were rejected, not sent (see the message and --rejects of the push). Fix the input and push them again"
        )
    report.finish()
    status = live.stop_reason if live.stop_reason in (STOP_INTERRUPTED, STOP_TERMINATED) else "finished"
    stop = live.stop_reason or (STOP_DAMAGED_INPUT if report.damage is not None else None)
    journal.finish_run(run_id, status, int(report.exit_code), stop, report.finished)
    return report


def _dry_run(
    build: Callable[[Source, Report, RejectsWriter | None], Stage],
    resolved: Resolved,
    opts: PushOptions,
    progress: ProgressHook | None,
    command: str,
) -> Report:
    source = open_source(opts.input, opts.format, opts.delimiter)
    try:
        report = Report(command, resolved.segment_name, resolved.connector_name, source.name, dry_run=True)
        rejects = RejectsWriter(opts.rejects, source.columns) if opts.rejects else None
        try:
            stage = build(source, report, rejects)
            if opts.out_dir is not None:
                opts.out_dir.mkdir(parents=True, exist_ok=True)
            for b in stage.batches():
                if opts.out_dir is not None:
                    (opts.out_dir / f"{b.index + 1:05d}-{b.uuid}.json").write_bytes(b.body)
                report.add_result(Result(b, DRY_RUN))
                if progress is not None:
                    progress(report)
            if isinstance(stage, SyncPipeline):
                stage.close()
        finally:
            if rejects is not None:
                rejects.close()
    finally:
        source.close()
    report.finish()
    return report
