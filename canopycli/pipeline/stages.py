"""Stages: what turns an input into batches. The machinery that journals, sends and reports them
(``drive.py``) talks to the ``Stage`` protocol only and never asks which stage it has.

- ``ChangeStage`` (push): read -> normalize -> de-duplicate (first wins) -> batch, streaming.
- ``DiffStage`` (sync, ``diff.py``): stage the snapshot, diff it against the baseline, batch the
  changes; an acknowledged batch moves the baseline.
- ``Resend`` (retry): a run's unacknowledged batches, from the journal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..config import Resolved, Segment
from ..deployteq.far import encoder_for
from ..deployteq.quota import requests_needed
from ..model import Batch, Profile, Reject
from ..store import Store as Journal
from .batch import batches
from .dedupe import Seen
from .normalize import Normalizer
from .read import Source, Unreadable
from .report import RejectsWriter, Report
from .suppress import Held

# What an acknowledgement does besides marking the batch sent, run in the same transaction on the
# journal's connection (sync: the baseline moves).
Effects = Callable[[sqlite3.Connection], None]


def batch_shape(resolved: Resolved) -> dict[str, Any]:
    """What shapes a run's batches whatever its input (journaled with the run: a rebuilt batch
    comes out identical): the segment, its name, the connector's identifier and limits, its API."""
    conn = resolved.connector
    return {
        "segment": resolved.segment.model_dump(mode="json"),
        "segment_name": resolved.segment_name,
        "identifier": conn.identifier,
        "customer_type": conn.customer_type,
        "batch_size": conn.batch_size,
        "max_body_bytes": conn.max_body_bytes,
        "api": conn.api,
    }


class Stage(Protocol):
    """Turns an input into batches, counting into a report.

    The order of calls: ``prepare`` (everything that may refuse the run before anything is sent),
    ``requests_needed`` (for the quota check), ``begin`` (once the run is in the journal; not in a
    dry run), ``batches`` (each journaled, then sent; ``on_ack`` for each acknowledged one),
    ``counts``, ``finish`` (after delivery), and ``close`` always."""

    command: str  # the run's command in the journal: push, sync, retry
    # Cancelled (a signal), stop taking batches at once (push: the file may be huge; retry reads
    # the rest), or journal the remaining ones as not sent (sync: the diff is done already).
    stops_reading_on_cancel: bool

    def prepare(self) -> None: ...

    def requests_needed(self) -> int | None:
        """How many requests the run needs, for the quota check (None: no telling)."""
        ...

    def begin(self, run_id: str) -> None: ...

    def batches(self) -> Iterator[Batch]: ...

    def on_ack(self, batch: Batch) -> Effects | None: ...

    def on_failure(self, batch: Batch, error: str | None, detail: str | None) -> None:
        """A batch that failed for good (SOAP: one profile and its fault, for --rejects)."""
        ...

    def counts(self, complete: bool) -> dict[str, int | None] | None:
        """The row counts the run records (None: leave them as they are)."""
        ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


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


class ChangeStage:
    """Push: read -> normalize -> de-duplicate -> batch one change file, counting into ``report``.

    ``dry_run``: nothing will be sent, so a .gz is not read through first; ``resumed``: a retry
    reading a run's input again (part of it was sent: no request estimate)."""

    command = "push"
    stops_reading_on_cancel = True

    def __init__(
        self,
        settings: dict[str, Any],
        endpoint: str,
        source: Source,
        report: Report,
        rejects: RejectsWriter | None,
        *,
        dry_run: bool = False,
        resumed: bool = False,
        held: Held | None = None,
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
        self.encoder = encoder_for(settings, endpoint)
        self.source, self.report, self.rejects = source, report, rejects
        self.batch_size = settings["batch_size"]
        self.per_profile = settings.get("api") == "soap"
        self.dry_run, self.resumed = dry_run, resumed
        self.held = held
        self.in_batches = 0  # profiles handed out in batches so far

    def prepare(self) -> None:
        if not self.dry_run:
            self.source.verify()  # a cut .gz is refused before anything is sent

    def requests_needed(self) -> int | None:
        return None if self.resumed else requests_needed(self.source.estimated_rows, self.batch_size)

    def begin(self, run_id: str) -> None:
        pass

    def on_reject(self, line: int, reason: str, record: object, duplicate: bool) -> None:
        self.report.add_reject(line, reason, duplicate)
        if self.rejects is not None:
            self.rejects.write(line, reason, record)

    def batches(self) -> Iterator[Batch]:
        kept = Kept(self.batch_size) if self.rejects is not None else None
        profiles = profiles_from(self.source, self.normalizer, self.report, self.on_reject, kept)
        if self.held is not None:
            held = self.held

            def hold(p: Profile) -> None:
                self.report.rows_suppressed += 1
                if self.rejects is not None:
                    self.rejects.write(p.line, held.why(p.customer_id), kept.rows.get(p.line) if kept else None)

            profiles = held.filter(profiles, hold)
        for b in batches(
            profiles,
            self.encoder,
            self.batch_size,
            lambda r: self.on_reject(r.line, r.reason, kept.rows.get(r.line) if kept else None, False),
        ):
            self.in_batches += b.profiles
            yield b

    def on_ack(self, batch: Batch) -> Effects | None:
        return None

    def on_failure(self, batch: Batch, error: str | None, detail: str | None) -> None:
        if self.per_profile and self.rejects is not None:  # SOAP: the profile's fault, by its line
            for line in batch.lines:
                self.rejects.write(line, f"{error}: {detail}" if detail else str(error), None)

    def counts(self, complete: bool) -> dict[str, int | None]:
        r = self.report
        # Interrupted mid-file, rows read but not yet in a batch are not counted: retry reads them again.
        read = r.rows_read if complete else r.rows_rejected + r.rows_duplicate + r.rows_suppressed + self.in_batches
        return {
            "rows_read": read,
            "rows_rejected": r.rows_rejected,
            "rows_duplicate": r.rows_duplicate,
            "rows_suppressed": r.rows_suppressed,
        }

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


class Resend:
    """Retry: a run's unacknowledged batches with their stored bodies, from the journal; nothing
    is read. ``on_ack`` and ``after`` come from the stage that built the run (sync: the baseline
    moves, and a hint when the sync was stopped mid-way)."""

    command = "retry"
    stops_reading_on_cancel = True

    def __init__(
        self,
        journal: Journal,
        run_id: str,
        *,
        stops_reading_on_cancel: bool = True,
        on_ack: Callable[[Batch], Effects | None] | None = None,
        after: Callable[[], None] | None = None,
    ) -> None:
        self.journal, self.run_id = journal, run_id
        self.stops_reading_on_cancel = stops_reading_on_cancel
        self._on_ack, self._after = on_ack, after

    def prepare(self) -> None:
        pass

    def requests_needed(self) -> int | None:
        return self.journal.runs.count_unacked(self.run_id)

    def begin(self, run_id: str) -> None:
        pass

    def batches(self) -> Iterator[Batch]:
        return self.journal.runs.unacked(self.run_id)

    def on_ack(self, batch: Batch) -> Effects | None:
        return self._on_ack(batch) if self._on_ack is not None else None

    def on_failure(self, batch: Batch, error: str | None, detail: str | None) -> None:
        pass

    def counts(self, complete: bool) -> None:
        return None  # nothing was read: the run's counts stand

    def finish(self) -> None:
        if self._after is not None:
            self._after()

    def close(self) -> None:
        pass
