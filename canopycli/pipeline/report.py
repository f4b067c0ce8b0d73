"""Report: every input row accounted for, and how each batch ended.

``rows_read = rows_rejected + rows_duplicate + rows_suppressed + profiles_delivered +
profiles_failed + profiles_not_sent (+ profiles_unchanged for sync)``: ``Report.check`` asserts it.
Output: ``to_json`` for machines and a rejects CSV (the table for people is drawn by ``cli.render``).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ..errors import ExitCode
from ..model import (
    DELIVERED,
    DRY_RUN,
    FAILED,
    MEANINGS,
    NOT_SENT,
    STOP_CREDENTIALS,
    STOP_DAILY_LIMIT,
    STOP_DAMAGED_INPUT,
    STOP_INTERRUPTED,
    STOP_TERMINATED,
    SUPERSEDED,
    Result,
    State,
    error_class,
    outcome_key,
)
from ..store.db import now
from ..store.runs import BatchRow as JournalBatch
from ..store.runs import RunRow

COUNT_KEYS = (
    "rows_rejected",
    "rows_duplicate",
    "rows_suppressed",
    "profiles_delivered",
    "profiles_failed",
    "profiles_not_sent",
)


@dataclass
class BatchRow:
    index: int
    uuid: str
    profiles: int
    outcome: str
    status_code: int | None
    attempts: int
    error: str | None
    detail: str | None
    key: str

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "profiles": self.profiles,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "attempts": self.attempts,
            "error": self.error,
            "detail": self.detail,
        }


@dataclass
class Report:
    command: str
    segment: str
    connector: str
    input: str
    dry_run: bool = False
    run_id: str | None = None
    started: str = field(default_factory=now)  # UTC, ISO 8601, milliseconds: the journal's format
    finished: str | None = None
    rows_read: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    rows_suppressed: int = 0  # held back by engagements (a segment's suppress:)
    profiles_delivered: int = 0
    profiles_failed: int = 0
    profiles_not_sent: int = 0
    profiles_unchanged: int | None = None  # sync only
    # sync only: REMOVED profiles derived from the baseline (not input rows, so not in rows_read)
    removals_delivered: int = 0
    removals_failed: int = 0
    removals_not_sent: int = 0
    superseded: int = 0  # of profiles_not_sent + removals_not_sent: handled by a later sync
    requests: int = 0
    stop_reason: str | None = None
    retry_hint: str | None = None
    # Reading stopped at damaged input (``Source.damage``): ``file:line: what happened; what to do``.
    damage: str | None = None
    batches: list[BatchRow] = field(default_factory=list)
    # SOAP only (None for the webhook): every SOAP call made, failed profiles by fault code, and
    # REMOVED profiles Deployteq had no customer for (success; informational, outside the sum)
    calls: int | None = None
    faults: dict[str, int] | None = None
    profiles_not_found: int | None = None
    reject_samples: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def from_journal(cls, run: RunRow, batches: list[JournalBatch], command: str) -> Report:
        """The whole run as the journal knows it: every batch, whichever process sent it."""
        r = cls(
            command,
            run.segment_name,
            run.connector,
            run.input or "-",
            run_id=run.id,
            started=run.started,
            finished=run.finished,
        )
        r.rows_read, r.rows_rejected, r.rows_duplicate = run.rows_read, run.rows_rejected, run.rows_duplicate
        r.rows_suppressed = run.rows_suppressed
        r.profiles_unchanged = run.profiles_unchanged
        for b in batches:
            outcome = State(b.state).outcome
            r._count(outcome, b.profiles, b.removals)
            r.requests += b.attempts
            key = outcome_key(outcome, b.status_code, b.last_error)
            r.batches.append(
                BatchRow(b.idx, b.uuid, b.profiles, outcome, b.status_code, b.attempts, b.last_error, b.detail, key)
            )
        return r

    def _count(self, outcome: str, profiles: int, removals: int) -> None:
        rows = profiles - removals
        if outcome == DELIVERED:
            self.profiles_delivered += rows
            self.removals_delivered += removals
        elif outcome == FAILED:
            self.profiles_failed += rows
            self.removals_failed += removals
        else:
            self.profiles_not_sent += rows
            self.removals_not_sent += removals
            if outcome == SUPERSEDED:
                self.superseded += profiles

    def add_result(self, r: Result) -> None:
        n = r.batch.profiles
        self._count(r.outcome, n, r.batch.removals)
        self.requests += r.attempts
        self.batches.append(
            BatchRow(
                r.batch.index, r.batch.uuid, n, r.outcome, r.status_code, r.attempts, r.error, r.detail, r.outcome_key
            )
        )

    def add_reject(self, line: int, reason: str, duplicate: bool = False) -> None:
        if duplicate:
            self.rows_duplicate += 1
        else:
            self.rows_rejected += 1
        if len(self.reject_samples) < 5:
            self.reject_samples.append((line, reason))

    def finish(self) -> None:
        self.finished = now()
        self.batches.sort(key=lambda b: b.index)
        self.check()

    def accounted(self) -> int:
        return sum(getattr(self, k) for k in COUNT_KEYS) + (self.profiles_unchanged or 0)

    def check(self) -> None:
        if self.accounted() != self.rows_read:  # a bug, never a user error
            raise AssertionError(f"row accounting is off: {self.accounted()} accounted for, {self.rows_read} read")

    @property
    def exit_code(self) -> ExitCode:
        if self.stop_reason == STOP_CREDENTIALS:
            return ExitCode.CREDENTIALS
        if self.stop_reason == STOP_DAILY_LIMIT:
            return ExitCode.DAILY_LIMIT
        if self.stop_reason == STOP_INTERRUPTED:
            return ExitCode.INTERRUPTED
        if self.stop_reason == STOP_TERMINATED:
            return ExitCode.TERMINATED
        if self.damage is not None or self.stop_reason == STOP_DAMAGED_INPUT:
            return ExitCode.USAGE  # rows before the damage were processed; what follows was not read
        waiting = self.profiles_not_sent + self.removals_not_sent - self.superseded
        if self.profiles_failed or self.removals_failed or (waiting and not self.dry_run):
            return ExitCode.FAILED
        return ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "command": self.command,
            "run_id": self.run_id,
            "segment": self.segment,
            "connector": self.connector,
            "input": self.input,
            "dry_run": self.dry_run,
            "started": self.started,
            "finished": self.finished,
            "exit_code": int(self.exit_code),
            "stop_reason": self.stop_reason or (STOP_DAMAGED_INPUT if self.damage is not None else None),
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "rows_duplicate": self.rows_duplicate,
            "rows_suppressed": self.rows_suppressed,
            "profiles_delivered": self.profiles_delivered,
            "profiles_failed": self.profiles_failed,
            "profiles_not_sent": self.profiles_not_sent,
            "requests": self.requests,
            "outcomes": self.outcomes(),
            "batches": [b.to_json() for b in self.batches],
        }
        if self.calls is not None:
            data["calls"] = self.calls
            data["faults"] = dict(sorted((self.faults or {}).items()))
            data["profiles_not_found"] = self.profiles_not_found or 0
        if self.profiles_unchanged is not None:
            data["profiles_unchanged"] = self.profiles_unchanged
            data["removals_delivered"] = self.removals_delivered
            data["removals_failed"] = self.removals_failed
            data["removals_not_sent"] = self.removals_not_sent
        return data

    def per_profile(self, not_found_detail: str) -> None:
        """A SOAP run: failed profiles by fault code, and removals with no customer, from the batches."""
        self.faults, self.profiles_not_found = {}, 0
        for b in self.batches:
            if b.outcome == FAILED and b.error and b.error.startswith("fault "):
                code = b.error.removeprefix("fault ")
                self.faults[code] = self.faults.get(code, 0) + b.profiles
            elif b.outcome == DELIVERED and b.detail == not_found_detail:
                self.profiles_not_found += b.profiles

    def outcomes(self) -> list[dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {}
        for b in self.batches:
            g = groups.setdefault(
                b.key,
                {"outcome": b.key, "error_class": _class(b), "meaning": meaning(b), "batches": 0, "profiles": 0},
            )
            g["batches"] += 1
            g["profiles"] += b.profiles
        return sorted(groups.values(), key=lambda g: g["outcome"])

    def write_json(self, path: str | Path) -> None:
        Path(path).write_bytes(orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2) + b"\n")


def _class(b: BatchRow) -> str:
    if b.outcome == SUPERSEDED:
        return "Not sent"
    if b.status_code is not None:
        return error_class(b.status_code, b.error)
    if b.outcome == DRY_RUN:
        return "Dry run"
    if b.outcome == NOT_SENT:
        return "Not sent"
    return error_class(b.status_code, b.error)


def meaning(b: BatchRow) -> str:
    if b.outcome == SUPERSEDED:
        return "Not sent: a later sync diffed these profiles again"
    if b.outcome == NOT_SENT and b.status_code is None:
        return MEANINGS["Not sent"]
    if b.outcome == DRY_RUN:
        return MEANINGS["Dry run"]
    code = b.status_code
    if code is None:
        return MEANINGS.get(b.error or "", MEANINGS["Other error"])
    if 200 <= code < 300:
        return MEANINGS["2xx"]
    return MEANINGS.get(str(code)) or (MEANINGS["5xx"] if code >= 500 else MEANINGS["Other error"])


class RejectsWriter:
    """CSV of rejected and duplicate rows: ``line``, ``reason``, then the row as it was read.

    CSV input: the header's columns; a row with fewer fields is padded, one with more has the extra
    fields after the header's columns, and a line that could not be split into fields (after an
    unclosed quote) has empty columns and its text in one cell after them. JSONL input: ``record``,
    the object as JSON, or the line's text when it is not a JSON object.
    """

    def __init__(self, path: str | Path, columns: list[str] | None, hash_column: str | None = None) -> None:
        # surrogateescape: bytes that were not UTF-8 in the input are written back as they were
        # owner-only: it holds the rows as given, raw email addresses included
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._fh: IO[str] = open(fd, "w", newline="", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        self.columns = columns
        # identifier: email: the id column is written as its SHA-256, and a line that could not be
        # read into fields is withheld (it may hold an address)
        self.hash_column = hash_column
        self._w = csv.writer(self._fh)
        self._w.writerow(["line", "reason", *(columns if columns is not None else ["record"])])

    def write(self, line: int, reason: str, record: Any) -> None:
        """``record``: a list of fields, a dict (JSONL), the text of a line, or None (nothing was read)."""
        if self.hash_column is not None:
            record = self._hashed(record)
        if self.columns is not None:
            width = len(self.columns)
            if isinstance(record, list):
                values = record if len(record) >= width else [*record, *[""] * (width - len(record))]
            elif isinstance(record, dict):
                values = [record.get(c, "") for c in self.columns]
            elif isinstance(record, str):
                values = [*[""] * width, record]
            else:
                values = [""] * width
        elif isinstance(record, dict):
            values = [_json_text(record)]
        else:
            values = [record if isinstance(record, str) else ""]
        self._w.writerow([line, reason, *values])

    def _hashed(self, record: Any) -> Any:
        col = self.hash_column
        if isinstance(record, dict) and col in record:
            return {**record, col: _sha(record[col])}
        if isinstance(record, list) and self.columns is not None and col in self.columns:
            i = self.columns.index(col)  # type: ignore[arg-type]
            return [_sha(v) if n == i else v for n, v in enumerate(record)]
        if isinstance(record, str):
            return "(withheld: the line may hold an address, and identifier: email keeps none)"
        return record

    def close(self) -> None:
        self._fh.close()


def _sha(value: Any) -> str:
    import hashlib

    text = value.strip().lower() if isinstance(value, str) else str(value)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _json_text(record: dict[str, Any]) -> str:
    try:
        return orjson.dumps(record).decode()
    except orjson.JSONEncodeError:  # what orjson does not write (an integer past 64 bits): the stdlib does
        return json.dumps(record, ensure_ascii=False)
