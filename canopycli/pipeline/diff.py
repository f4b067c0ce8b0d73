"""Sync: a full segment snapshot -> diff against the last acknowledged state -> changes only.

A new id is sent as NEW with its params, an id whose params changed as MODIFIED, an id that is
gone as REMOVED (from the baseline, with no params), and an unchanged one not at all.

The diff runs in a scratch SQLite database (a private temporary file) with the journal attached,
so memory stays flat whatever the size of the snapshot or the baseline. The baseline stores one
row per profile: the id and a 16-byte BLAKE2b digest of its params as sent. It moves only when
the webhook acknowledges a batch (``DiffStage.on_ack``, in the transaction that records the ack),
so a failed or unsent batch is simply found again by the next diff.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import orjson

from ..config import Segment
from ..deployteq.far import encoder_for
from ..errors import InputError, MassRemovalError, StateError
from ..model import Batch, Profile, Reject
from ..store import Store as Journal
from ..store.baseline import DIGEST_BYTES, Snapshot, Staged, moves
from ..store.portable import describe
from ..store.runs import RunRow
from .batch import batches
from .normalize import Normalizer
from .read import Source, Unreadable
from .report import RejectsWriter, Report
from .stages import Effects, Resend
from .suppress import Held

_SCRATCH_CACHE_KIB = 32768  # the diff's page cache: 32 MiB, whatever the size of the data


def scope_of(connector: str, segment: str) -> str:
    """The key of a baseline: one per connector + segment."""
    return f"{connector}/{segment}"


def params_digest(params_json: bytes) -> bytes:
    return hashlib.blake2b(params_json, digest_size=DIGEST_BYTES).digest()


def baseline_changes(batch: Batch) -> list[tuple[str, bytes | None]]:
    """What an acknowledged sync batch does to the baseline: (id, params digest), None for a removal.

    A batch built in this process carries its digests; one loaded from the journal (retry) is
    read back from its body."""
    if batch.digests is not None:
        return list(zip(batch.customer_ids, batch.digests, strict=True))
    out: list[tuple[str, bytes | None]] = []
    for campaign in orjson.loads(batch.body)["campaigns"]:
        for c in campaign["customers"]:
            removed = c["r42Status"] == "REMOVED"
            out.append((c["customerId"], None if removed else params_digest(orjson.dumps(c["params"]))))
    return out


def baseline_moves(scope: str, batch: Batch) -> Effects:
    """What acknowledging a sync batch does to the baseline, to run in the ack's transaction."""
    return moves(scope, baseline_changes(batch))


def resend(journal: Journal, run: RunRow, report: Report) -> Resend:
    """Retry of a sync: its unacknowledged batches from the journal (the diff is not run again);
    each one acknowledged moves the baseline as it would have in the run."""
    scope = scope_of(run.connector, run.segment)

    def after() -> None:
        if not run.spool_complete or journal.runs.bodiless(run.id):
            report.retry_hint = "this sync was stopped mid-way: the next `canopycli sync` finds and sends the rest"
        journal.baselines.fold(scope)

    return Resend(
        journal, run.id, stops_reading_on_cancel=False, on_ack=lambda b: baseline_moves(scope, b), after=after
    )


@dataclass
class SyncOptions:
    full: bool = False  # send the whole snapshot as NEW and rebuild the baseline
    max_remove: float = 0.5  # refuse (exit 6) a snapshot that removes more than this share
    force: bool = False  # ... unless forced


class DiffStage:
    """Sync's stage: stages the snapshot, diffs it, checks the removal share, then yields the
    change batches; an acknowledged batch moves the baseline (``on_ack``)."""

    command = "sync"
    stops_reading_on_cancel = False  # the diff is done: the rest is journaled as not sent, for retry

    def __init__(
        self,
        settings: dict[str, Any],
        endpoint: str,
        source: Source,
        report: Report,
        rejects: RejectsWriter | None,
        journal: Journal,
        connector: str,
        segment_key: str,
        options: SyncOptions,
        held: Held | None = None,
    ) -> None:
        segment = Segment.model_validate(settings["segment"])
        self.normalizer = Normalizer(
            segment, settings["identifier"], source.columns, "NEW", status_allowed=False, source_name=source.name
        )
        self.encoder = encoder_for(settings, endpoint)
        self.batch_size = settings["batch_size"]
        self.source, self.report, self.rejects = source, report, rejects
        self.segment_name = settings["segment_name"]
        self.settings, self.endpoint, self.journal, self.options = settings, endpoint, journal, options
        self.connector, self.segment_key = connector, segment_key
        self.scope = scope_of(connector, segment_key)
        self._snapshot: Snapshot | None = None
        self.holding = held
        report.profiles_unchanged = 0

    @property
    def snapshot(self) -> Snapshot:
        """The diff's scratch database (opened by ``prepare``)."""
        assert self._snapshot is not None, "prepare() first"
        return self._snapshot

    def prepare(self) -> None:
        """Stage the snapshot and diff it against the acknowledged baseline (nothing is sent yet)."""
        self.journal.baselines.fold(self.scope)  # the diff reads the baseline table directly
        self._snapshot = Snapshot(self.journal.path, _SCRATCH_CACHE_KIB)
        opts = self.options
        try:
            if not opts.full:
                self._check_origin(self.endpoint, self.settings)
            self._stage()
            self._diff(opts.full)
            self._check_removals(opts.max_remove, opts.force)
        except BaseException:
            self.snapshot.close()
            raise

    def _check_origin(self, endpoint: str, settings: dict[str, Any]) -> None:
        """A baseline is what one webhook acknowledged, for one segmentName, in one kind of id: a
        diff against it after any of these changed in the config would send the wrong changes."""
        was = self.snapshot.origin(self.scope)
        if was is None:
            return
        now_ = {"endpoint": endpoint, "segment_name": settings["segment_name"], "identifier": settings["identifier"]}
        differ = [f for f in now_ if was[f] and was[f] != now_[f]]  # NULL: recorded before 1.1
        if differ:
            raise StateError(
                f"the baseline of {self.segment_name} was built with {describe(was, differ)}, but the config now "
                f"says {describe(now_, differ)}; nothing was sent",
                hint="Send the whole snapshot with --full (it rebuilds the baseline and sends no REMOVED), "
                "or forget the baseline with: canopycli state reset",
            )

    def begin(self, run_id: str) -> None:
        """The run is journaled: earlier syncs' unsent batches are superseded (this diff replaces
        them), --full empties the baseline, and the baseline records this run."""
        j = self.journal
        j.runs.supersede(self.connector, self.segment_key)
        if self.options.full:
            j.baselines.replace(self.scope, iter(()))
        j.baselines.touch(self.scope, self.connector, self.segment_key, self.settings["identifier"], run_id)

    def on_ack(self, batch: Batch) -> Effects:
        return baseline_moves(self.scope, batch)

    def finish(self) -> None:
        self.journal.baselines.fold(self.scope)

    def close(self) -> None:
        if self._snapshot is not None:
            self._snapshot.close()

    # -- staging and diff -------------------------------------------------------------------

    def on_reject(self, line: int, reason: str, record: object, duplicate: bool) -> None:
        self.report.add_reject(line, reason, duplicate)
        if self.rejects is not None:
            self.rejects.write(line, reason, record)

    def _rows(self) -> Iterator[Staged]:
        dumps = orjson.dumps
        # the row as read, for --rejects if it turns out to be a duplicate (only when there is a --rejects)
        keep = marshal.dumps if self.rejects is not None else _nothing
        for line, record in self.source.records:
            self.report.rows_read += 1
            if isinstance(record, Unreadable):
                self.on_reject(line, record.reason, record.raw, False)
                continue
            got = self.normalizer(line, record)
            if isinstance(got, Reject):
                self.on_reject(line, got.reason, record, False)
                if got.customer_id is not None:  # a member with a bad cell: hold it, do not remove it
                    self._held.append((got.customer_id,))
                continue
            if self.holding is not None and got.customer_id in self.holding.ids:  # neither sent nor removed
                self.report.rows_suppressed += 1
                if self.rejects is not None:
                    self.rejects.write(line, self.holding.why(got.customer_id), record)
                self._held.append((got.customer_id,))
                continue
            try:
                params = dumps(cast("dict[str, Any]", got.customer)["params"])  # not encoded: a dict
            except orjson.JSONEncodeError:
                self.on_reject(line, "is not valid UTF-8 (re-export the file as UTF-8)", record, False)
                self._held.append((got.customer_id,))
                continue
            yield line, got.customer_id, params_digest(params), params, keep(record)
        if self.source.damage is not None:  # a part of the snapshot is missing: its ids must not be removed
            raise InputError(
                f"{self.source.damage}; a sync needs the whole snapshot, so nothing was sent",
                hint="Fix the file (or export it again) and run the sync again.",
            )

    def _stage(self) -> None:
        # ids of rows rejected for something other than their id, appended by _rows as it goes
        self._held: list[tuple[str]] = []
        self.snapshot.stage(self._rows(), self._held)
        # every occurrence of a repeated id is rejected: which one is right cannot be known
        lines: dict[str, list[tuple[int, bytes]]] = {}
        for line, cid, record in self.snapshot.duplicates():
            lines.setdefault(cid, []).append((line, record))
        for cid_lines in lines.values():
            for line, record in cid_lines:
                others = ", ".join(str(n) for n, _ in cid_lines if n != line)
                self.on_reject(
                    line,
                    f"duplicate identifier in a snapshot (also on line {others}); none of them is sent",
                    marshal.loads(record) if record else None,
                    True,
                )

    def _diff(self, full: bool) -> None:
        counts = self.snapshot.diff("" if full else self.scope)  # --full: diff against nothing, everything is NEW
        self.changed, self.removed, self.baseline = counts.changed, counts.removed, counts.baseline
        self.report.profiles_unchanged = counts.staged - self.changed

    def _check_removals(self, max_remove: float, force: bool) -> None:
        if force or not self.baseline or self.removed <= max_remove * self.baseline:
            return
        share = self.removed / self.baseline
        raise MassRemovalError(
            f"this snapshot would remove {self.removed:,} of {self.baseline:,} profiles ({share:.0%}) from "
            f"{self.segment_name}, more than --max-remove {max_remove:.0%}; nothing was sent",
            hint="If the export is empty or truncated, fix it. If the removals are right, pass --force.",
        )

    # -- the changes, as batches ----------------------------------------------------------

    def requests_needed(self) -> int:
        return -(-(self.changed + self.removed) // self.batch_size)

    def _profiles(self) -> Iterator[Profile]:
        fragment = orjson.Fragment  # the params are JSON already: embedded as they are, not parsed again
        for line, cid, params, digest, is_new in self.snapshot.changes():
            status = "NEW" if is_new else "MODIFIED"
            yield Profile(line, cid, {"customerId": cid, "r42Status": status, "params": fragment(params)}, digest)
        for (cid,) in self.snapshot.gone():
            yield Profile(0, cid, {"customerId": cid, "r42Status": "REMOVED", "params": []})

    def batches(self) -> Iterator[Batch]:
        yield from batches(
            self._profiles(),
            self.encoder,
            self.batch_size,
            lambda r: self.on_reject(r.line, r.reason, self._record(r.line) if self.rejects else None, False),
        )

    def _record(self, line: int) -> object:
        """The row as read on ``line`` (for a profile too large for a request)."""
        got = self.snapshot.record(line)
        return marshal.loads(got) if got else None

    def on_failure(self, batch: Batch, error: str | None, detail: str | None) -> None:
        pass

    def counts(self, complete: bool) -> dict[str, int | None]:
        r = self.report
        return {
            "rows_read": r.rows_read,
            "rows_rejected": r.rows_rejected,
            "rows_duplicate": r.rows_duplicate,
            "rows_suppressed": r.rows_suppressed,
            "profiles_unchanged": r.profiles_unchanged,
        }


def _nothing(record: object) -> bytes:
    return b""
