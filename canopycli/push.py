"""Push: the pipeline read -> normalize -> de-duplicate -> batch -> send (or write) -> report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from .batch import Batch, Encoder, Seen, batches
from .config import Resolved
from .errors import InputError
from .normalize import Normalizer, Profile, Reject
from .read import Source, open_source
from .report import RejectsWriter, Report
from .send import DRY_RUN, Result, Sender, deliver


@dataclass
class PushOptions:
    input: str
    format: str | None = None
    delimiter: str | None = None
    status: str = "NEW"
    dry_run: bool = False
    out_dir: Path | None = None
    rejects: Path | None = None
    concurrency: int | None = None


ProgressHook = Callable[[Report], None]


def profiles_from(
    source: Source,
    normalizer: Normalizer,
    report: Report,
    on_reject: Callable[[int, str, object, bool], None],
) -> Iterator[Profile]:
    """Valid, first-seen profiles; every other row goes to ``on_reject`` with its reason."""
    seen = Seen()
    for line, record in source.records:
        report.rows_read += 1
        if isinstance(record, str):
            on_reject(line, record, None, False)
            continue
        got = normalizer(line, record)
        if isinstance(got, Reject):
            on_reject(line, got.reason, record, False)
            continue
        first = seen.first_line(got.customer_id, line)
        if first is not None:
            on_reject(line, f"duplicate identifier: line {first} has the same one and is the one sent", record, True)
            continue
        yield got


def run_push(
    resolved: Resolved,
    opts: PushOptions,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: ProgressHook | None = None,
    command: str = "push",
) -> Report:
    conn = resolved.connector
    if opts.out_dir is not None and not opts.dry_run:
        raise InputError("--out writes request bodies of a dry run; add --dry-run")
    source = open_source(opts.input, opts.format, opts.delimiter)
    try:
        normalizer = Normalizer(resolved.segment, conn.identifier, source.columns, opts.status, source_name=source.name)
        report = Report(command, resolved.segment_name, resolved.connector_name, source.name, dry_run=opts.dry_run)
        rejects = RejectsWriter(opts.rejects, source.columns) if opts.rejects else None
        try:

            def on_reject(line: int, reason: str, record: object, duplicate: bool) -> None:
                report.add_reject(line, reason, duplicate)
                if rejects is not None:
                    rejects.write(line, reason, record)

            def on_batch_reject(r: Reject) -> None:
                on_reject(r.line, r.reason, None, False)

            def on_result(r: Result) -> None:
                report.add_result(r)
                if progress is not None:
                    progress(report)

            encoder = Encoder(conn.endpoint, resolved.segment_name, conn.customer_type, conn.max_body_bytes)
            stream = batches(
                profiles_from(source, normalizer, report, on_reject), encoder, conn.batch_size, on_batch_reject
            )
            if opts.dry_run:
                write_dry_run(stream, opts.out_dir, on_result)
            else:
                with Sender(conn, transport=transport, sleep=sleep, concurrency=opts.concurrency) as sender:
                    deliver(stream, sender, on_result)
                    report.stop_reason = sender.stop_reason
                    report.retry_hint = sender.retry_hint
        finally:
            if rejects is not None:
                rejects.close()
    finally:
        source.close()
    report.finish()
    return report


def write_dry_run(stream: Iterator[Batch], out_dir: Path | None, on_result: Callable[[Result], None]) -> None:
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for b in stream:
        if out_dir is not None:
            (out_dir / f"{b.index + 1:05d}-{b.uuid}.json").write_bytes(b.body)
        on_result(Result(b, DRY_RUN))
