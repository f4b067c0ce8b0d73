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

import contextlib
import gzip
import hashlib
import io
import marshal
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from ..config import Resolved, Segment
from ..errors import DiskFullError, InputError, MassRemovalError, OutputError, StateError
from ..model import Batch, Profile, Reject
from ..outputs import check_file, reason
from ..store.journal import Journal, RunRow, now, sqlite_trouble
from .batch import Encoder, batches
from .normalize import Normalizer
from .read import Source, Unreadable, checked_lines
from .report import RejectsWriter, Report
from .stages import Effects, Resend

DIGEST_BYTES = 16
_SCRATCH_CACHE_KIB = 32768  # the diff's page cache: 32 MiB, whatever the size of the data
_CHUNK = 10_000


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


# The one statement of the baseline's store that an acknowledgement runs (``Journal._move_baseline``
# until store/baseline.py has it): the move is appended, and folded into the baseline later.
_MOVE = "INSERT INTO baseline_moves (scope, customer_id, digest) VALUES (?,?,?)"


def baseline_moves(scope: str, batch: Batch) -> Effects:
    """What acknowledging a sync batch does to the baseline, to run in the ack's transaction."""
    moves = [(scope, cid, digest) for cid, digest in baseline_changes(batch)]

    def move(conn: sqlite3.Connection) -> None:
        conn.executemany(_MOVE, moves)

    return move


def resend(journal: Journal, run: RunRow, report: Report) -> Resend:
    """Retry of a sync: its unacknowledged batches from the journal (the diff is not run again);
    each one acknowledged moves the baseline as it would have in the run."""
    scope = scope_of(run.connector, run.segment)

    def after() -> None:
        if not run.spool_complete or journal.bodiless(run.id):
            report.retry_hint = "this sync was stopped mid-way: the next `canopycli sync` finds and sends the rest"
        journal.fold_baseline(scope)

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
    ) -> None:
        segment = Segment.model_validate(settings["segment"])
        self.normalizer = Normalizer(
            segment, settings["identifier"], source.columns, "NEW", status_allowed=False, source_name=source.name
        )
        self.encoder = Encoder(
            endpoint, settings["segment_name"], settings["customer_type"], settings["max_body_bytes"]
        )
        self.batch_size = settings["batch_size"]
        self.source, self.report, self.rejects = source, report, rejects
        self.segment_name = settings["segment_name"]
        self.settings, self.endpoint, self.journal, self.options = settings, endpoint, journal, options
        self.connector, self.segment_key = connector, segment_key
        self.scope = scope_of(connector, segment_key)
        self._db: sqlite3.Connection | None = None
        report.profiles_unchanged = 0

    @property
    def db(self) -> sqlite3.Connection:
        """The diff's scratch database (opened by ``prepare``)."""
        assert self._db is not None, "prepare() first"
        return self._db

    def prepare(self) -> None:
        """Stage the snapshot and diff it against the acknowledged baseline (nothing is sent yet)."""
        self.journal.fold_baseline(self.scope)  # the diff reads the baseline table directly
        # A private temporary file in SQLite's temporary folder ($SQLITE_TMPDIR, $TMPDIR, /var/tmp or
        # /tmp), created 0600 and unlinked at once by SQLite: nothing of it is left when closed.
        self._db = sqlite3.connect("", isolation_level=None)
        opts = self.options
        try:
            self.db.execute(f"PRAGMA cache_size=-{_SCRATCH_CACHE_KIB}")
            self.db.execute("ATTACH DATABASE ? AS j", (str(self.journal.path),))
            if not opts.full:
                self._check_origin(self.endpoint, self.settings)
            self._stage()
            self._diff(opts.full)
            self._check_removals(opts.max_remove, opts.force)
        except sqlite3.Error as e:
            self.db.close()
            err = _scratch_error(e)
            if err is None:
                raise
            raise err from e
        except BaseException:
            self.db.close()
            raise

    def _check_origin(self, endpoint: str, settings: dict[str, Any]) -> None:
        """A baseline is what one webhook acknowledged, for one segmentName, in one kind of id: a
        diff against it after any of these changed in the config would send the wrong changes."""
        row = self.db.execute(
            "SELECT endpoint, segment_name, identifier FROM j.scopes WHERE scope = ?", (self.scope,)
        ).fetchone()
        if row is None or not self.db.execute("SELECT 1 FROM j.baseline WHERE scope = ?", (self.scope,)).fetchone():
            return
        was = dict(zip(("endpoint", "segment_name", "identifier"), row, strict=True))
        now_ = {"endpoint": endpoint, "segment_name": settings["segment_name"], "identifier": settings["identifier"]}
        differ = [f for f in now_ if was[f] and was[f] != now_[f]]  # NULL: recorded before 1.1
        if differ:
            raise StateError(
                f"the baseline of {self.segment_name} was built with {_describe(was, differ)}, but the config now "
                f"says {_describe(now_, differ)}; nothing was sent",
                hint="Send the whole snapshot with --full (it rebuilds the baseline and sends no REMOVED), "
                "or forget the baseline with: canopycli state reset",
            )

    def begin(self, run_id: str) -> None:
        """The run is journaled: earlier syncs' unsent batches are superseded (this diff replaces
        them), --full empties the baseline, and the baseline records this run."""
        j = self.journal
        j.supersede(self.connector, self.segment_key)
        if self.options.full:
            j.replace_baseline(self.scope, iter(()))
        j.touch_scope(self.scope, self.connector, self.segment_key, self.settings["identifier"], run_id)

    def on_ack(self, batch: Batch) -> Effects:
        return baseline_moves(self.scope, batch)

    def finish(self) -> None:
        self.journal.fold_baseline(self.scope)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    # -- staging and diff -------------------------------------------------------------------

    def on_reject(self, line: int, reason: str, record: object, duplicate: bool) -> None:
        self.report.add_reject(line, reason, duplicate)
        if self.rejects is not None:
            self.rejects.write(line, reason, record)

    def _rows(self) -> Iterator[tuple[int, str, bytes, bytes, bytes]]:
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
        db = self.db
        db.execute(
            "CREATE TABLE snap (line INTEGER NOT NULL, id TEXT NOT NULL, digest BLOB NOT NULL, params BLOB NOT NULL,"
            " record BLOB NOT NULL)"
        )
        # ids of rows rejected for something other than their id: in the snapshot, so never removed
        db.execute("CREATE TABLE held (id TEXT NOT NULL)")
        self._held: list[tuple[str]] = []
        rows = self._rows()
        db.execute("BEGIN")
        while chunk := list(islice(rows, _CHUNK)):
            db.executemany("INSERT INTO snap VALUES (?,?,?,?,?)", chunk)
            db.executemany("INSERT INTO held VALUES (?)", self._held)
            self._held.clear()
        db.executemany("INSERT INTO held VALUES (?)", self._held)  # rejected rows after the last chunk
        db.execute("COMMIT")
        db.execute("CREATE INDEX held_id ON held(id)")
        db.execute("CREATE INDEX snap_id ON snap(id)")
        db.execute("CREATE TABLE dup AS SELECT id FROM snap GROUP BY id HAVING COUNT(*) > 1")
        db.execute("CREATE UNIQUE INDEX dup_id ON dup(id)")
        # every occurrence of a repeated id is rejected: which one is right cannot be known
        lines: dict[str, list[tuple[int, bytes]]] = {}
        query = "SELECT s.line, s.id, s.record FROM snap s JOIN dup d ON d.id = s.id ORDER BY s.line"
        for line, cid, record in db.execute(query):
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
        db = self.db
        scope = "" if full else self.scope  # --full: diff against nothing, everything is NEW
        # only row ids: the params stay in snap (a copy of them would double the disk traffic)
        db.execute(
            "CREATE TABLE changes AS SELECT s.rowid AS rid, (b.digest IS NULL) AS is_new"
            " FROM snap s LEFT JOIN j.baseline b ON b.scope = ? AND b.customer_id = s.id"
            " WHERE (b.digest IS NULL OR b.digest != s.digest) AND s.id NOT IN (SELECT id FROM dup)"
            " ORDER BY s.rowid",
            (scope,),
        )
        db.execute(
            "CREATE TABLE gone AS SELECT b.customer_id AS id FROM j.baseline b"
            " WHERE b.scope = ? AND NOT EXISTS (SELECT 1 FROM snap s WHERE s.id = b.customer_id)"
            " AND NOT EXISTS (SELECT 1 FROM held h WHERE h.id = b.customer_id) ORDER BY b.customer_id",
            (scope,),
        )
        (staged,) = db.execute("SELECT COUNT(*) FROM snap WHERE id NOT IN (SELECT id FROM dup)").fetchone()
        (self.changed,) = db.execute("SELECT COUNT(*) FROM changes").fetchone()
        (self.removed,) = db.execute("SELECT COUNT(*) FROM gone").fetchone()
        (self.baseline,) = db.execute("SELECT COUNT(*) FROM j.baseline WHERE scope = ?", (scope,)).fetchone()
        self.report.profiles_unchanged = staged - self.changed

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
        rows = self.db.execute(
            "SELECT s.line, s.id, s.params, s.digest, c.is_new FROM changes c JOIN snap s ON s.rowid = c.rid"
            " ORDER BY c.rowid"
        )
        for line, cid, params, digest, is_new in rows:
            status = "NEW" if is_new else "MODIFIED"
            yield Profile(line, cid, {"customerId": cid, "r42Status": status, "params": fragment(params)}, digest)
        for (cid,) in self.db.execute("SELECT id FROM gone ORDER BY rowid"):
            yield Profile(0, cid, {"customerId": cid, "r42Status": "REMOVED", "params": []})

    def batches(self) -> Iterator[Batch]:
        yield from batches(
            self._profiles(),
            self.encoder,
            self.batch_size,
            lambda r: self.on_reject(r.line, r.reason, self._record(r.line) if self.rejects else None, False),
        )

    def _record(self, line: int) -> object:
        """The row as read on ``line`` (for a profile too large for a request: rare, so indexed only then)."""
        self.db.execute("CREATE INDEX IF NOT EXISTS snap_line ON snap(line)")
        got = self.db.execute("SELECT record FROM snap WHERE line = ?", (line,)).fetchone()
        return marshal.loads(got[0]) if got is not None and got[0] else None

    def counts(self, complete: bool) -> dict[str, int | None]:
        r = self.report
        return {
            "rows_read": r.rows_read,
            "rows_rejected": r.rows_rejected,
            "rows_duplicate": r.rows_duplicate,
            "profiles_unchanged": r.profiles_unchanged,
        }


def _nothing(record: object) -> bytes:
    return b""


def _scratch_error(e: sqlite3.Error) -> StateError | None:
    """The diff's scratch database failed (before anything was sent); None: a bug."""
    kind = sqlite_trouble(e)
    if kind == "full":
        return DiskFullError(
            "the temporary folder ran out of space for the sync's scratch database; nothing was sent",
            hint="Free some space there, or point $SQLITE_TMPDIR (or $TMPDIR) at a folder with room.",
        )
    if kind is not None:
        return StateError(
            f"the sync's scratch database in the temporary folder failed ({e}); nothing was sent",
            hint="Check $SQLITE_TMPDIR (or $TMPDIR, else /var/tmp or /tmp): it must be a writable folder.",
        )
    return None


# --- portable baselines (state export / import) ------------------------------------------------

STATE_FORMAT = "canopycli-state"
# The header names what the baseline belongs to. Since 1.1 it also has ``segment_name`` and
# ``endpoint``; the version stays 1 (the lines are unchanged, and 1.0 ignores header keys it does
# not know), and an import of a 1.0 export checks the fields it has and warns about the others.
STATE_VERSION = 1
_REEXPORT = "Nothing was imported. Export the baseline again (canopycli state export), or use an earlier copy."
_LABELS = {"connector": "connector", "segment": "segment", "segment_name": "segmentName", "endpoint": "endpoint"}


@dataclass(frozen=True)
class Origin:
    """What a baseline belongs to: the webhook that acknowledged it, as which segment, with which ids."""

    connector: str
    segment: str  # the segment's key in the config
    segment_name: str  # the segmentName sent
    endpoint: str
    identifier: str

    @classmethod
    def of(cls, r: Resolved) -> Origin:
        return cls(r.connector_name, r.segment_key, r.segment_name, r.connector.endpoint, r.connector.identifier)

    def describe(self, fields: list[str]) -> str:
        return _describe(vars(self), fields)


def _describe(values: dict[str, Any], fields: list[str]) -> str:
    return ", ".join(f"{_LABELS.get(f, f)} {_shown(f, values[f])}" for f in fields)


def _shown(field: str, value: object) -> str:
    return str(value) if field in ("endpoint", "identifier") else repr(value)


class ExportFile:
    """Where ``state export`` writes, checked and opened before anything else is done.

    A file is written beside its name (owner-only, like the journal: it holds the hashed ids) and
    renamed into place once complete, so a failed export leaves an earlier one as it was; a
    symlink, a device or a FIFO is written through as it is. ``-`` is stdout (never compressed);
    a name ending in ``.gz`` is gzip.
    """

    def __init__(self, name: str, stdout: BinaryIO) -> None:
        self.name = name
        self.stream = name == "-"  # stdout, a device, a FIFO: messages then go to stderr
        self._tmp: Path | None = None
        self._raw: BinaryIO
        if name == "-":
            self._raw = stdout
        else:
            path = Path(name)
            check_file(path, "state export")
            try:
                if path.is_symlink() or (path.exists() and not path.is_file()):  # /dev/stdout, a FIFO, a link
                    self.stream = True  # /dev/stdout may lead to the very file stdout is redirected to
                    self._raw = open(path, "wb")  # noqa: SIM115 - closed by commit/discard
                else:
                    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                    self._tmp = Path(tmp)
                    self._raw = os.fdopen(fd, "wb")
            except OSError as e:
                raise _cannot_write(name, e) from e
        self.fh: BinaryIO = self._raw
        if name != "-" and name.endswith(".gz"):
            self.fh = cast("BinaryIO", gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0))

    def write(self, data: bytes) -> None:
        try:
            self.fh.write(data)
        except OSError as e:
            raise _cannot_write(self.name, e) from e

    def commit(self) -> None:
        try:
            if self.fh is not self._raw:
                self.fh.close()
            self._raw.flush()
            if self._tmp is not None:
                os.fsync(self._raw.fileno())
                self._raw.close()
                os.replace(self._tmp, self.name)
                self._tmp = None
            elif self.name != "-":
                self._raw.close()
        except OSError as e:
            raise _cannot_write(self.name, e) from e

    def discard(self) -> None:
        """After a failure: the temporary file goes, ``name`` is left as it was (a no-op after ``commit``)."""
        if self.name == "-" or self._raw.closed:
            return
        with contextlib.suppress(OSError, ValueError):
            self.fh.close()  # gzip: its trailer, into the file about to go
        with contextlib.suppress(OSError):
            self._raw.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _cannot_write(name: str, e: OSError) -> OutputError:
    where = "stdout" if name == "-" else name
    return OutputError(
        f"cannot write {where}: {reason(e)}", hint="Nothing was exported; an earlier export there is unchanged."
    )


def export_baseline(journal: Journal, scope: str, here: Origin, out: ExportFile) -> dict[str, Any]:
    """Write the scope's baseline as JSON Lines: a header, then ``[id, digest]`` per profile.

    The header says what the baseline belongs to as the journal recorded it (``here`` for what a
    journal from before 1.1 did not record), so an export is never labelled with a connector
    setting changed since the baseline was built. A segment never synced (nor imported) there is
    an error: most likely the wrong state folder, and an empty export would pass for a baseline."""
    known = journal.scope(scope)
    if known is None:
        raise StateError(
            f"no sync baseline of {here.segment_name} (connector {here.connector!r}) in {journal.path}: "
            "it was never synced or imported there",
            hint="Check --state-dir (or $CANOPYCLI_STATE_DIR), or run `canopycli sync` first.",
        )
    origin = {f: known.get(f) or getattr(here, f) for f in ("connector", "segment", "segment_name", "endpoint")}
    origin["identifier"] = known.get("identifier") or here.identifier
    n = journal.baseline_size(scope)
    header = {"format": STATE_FORMAT, "version": STATE_VERSION, **origin, "profiles": n, "exported": now()}
    out.write(orjson.dumps(header) + b"\n")
    for cid, digest in journal.baseline_rows(scope):
        out.write(orjson.dumps([cid, digest.hex()]) + b"\n")
    return header


def import_baseline(
    journal: Journal, scope: str, here: Origin, source: Path | BinaryIO, *, force: bool = False
) -> tuple[int, dict[str, Any], list[str]]:
    """Replace the scope's baseline with the file's (all or nothing), if it belongs here.

    Refused unless it was exported for the same connector, segment, segmentName and endpoint
    (``force`` takes it anyway) and with the same identifier (never forced: hashed emails are
    no baseline for customer ids). Returns the count, the header, and the fields an older export
    does not record (so they could not be checked)."""
    name = "stdin" if not isinstance(source, Path) else str(source)
    with contextlib.ExitStack() as opened:
        lines = checked_lines(_open_export(source, name, opened), name)  # a cut .gz: InputError
        header = _header(lines, name)
        theirs = header.get("identifier")
        if not theirs:
            raise InputError(f"{name}: the header does not say which ids the file holds; it is damaged", hint=_REEXPORT)
        if theirs != here.identifier:
            raise InputError(
                f"{name}: holds {theirs} ids, but connector {here.connector!r} uses {here.identifier}"
                + ("" if not force else "; --force cannot mix them"),
                hint="Import it with the config (connector) it was exported from.",
            )
        missing = [f for f in _LABELS if not header.get(f)]
        differ = [f for f in _LABELS if f not in missing and header[f] != getattr(here, f)]
        if differ and not force:
            raise InputError(
                f"{name}: exported from {_describe(header, differ)}; this is {here.describe(differ)}",
                hint="Import it with the config and --segment it was exported from, "
                "or pass --force to load it into this segment anyway.",
            )

        def rows() -> Iterator[tuple[str, bytes]]:
            n = 0
            for n, raw in enumerate(lines, 1):  # noqa: B007
                try:
                    cid, digest = orjson.loads(raw)
                    value = bytes.fromhex(digest)
                except (ValueError, TypeError):
                    value = b""
                    cid = None
                if not isinstance(cid, str) or len(value) != DIGEST_BYTES:
                    raise InputError(f"{name}:{n + 1}: not an [id, digest] line; the file is damaged", hint=_REEXPORT)
                yield cid, value
            if header.get("profiles") not in (None, n):  # raised inside the transaction: nothing changes
                raise InputError(
                    f"{name}: the header says {header['profiles']} profiles, the file holds {n}; it is truncated",
                    hint=_REEXPORT,
                )

        try:
            count = journal.replace_baseline(scope, rows())
        except sqlite3.IntegrityError:
            raise InputError(f"{name}: an id appears twice; the file is damaged", hint=_REEXPORT) from None
    return count, header, [_LABELS[f] for f in missing]


def _open_export(source: Path | BinaryIO, name: str, opened: contextlib.ExitStack) -> BinaryIO:
    """The file (or stdin), gunzipped if it starts with gzip's magic bytes; ``opened`` closes it."""
    try:
        raw = opened.enter_context(open(source, "rb")) if isinstance(source, Path) else source  # noqa: SIM115
    except OSError as e:
        raise InputError(f"{name}: cannot open: {e.strerror}") from None
    buffered = raw if hasattr(raw, "peek") else io.BufferedReader(cast("io.RawIOBase", raw))
    try:
        gz = buffered.peek(2)[:2] == b"\x1f\x8b"  # type: ignore[attr-defined]
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e.strerror}") from None
    if gz:
        return cast("BinaryIO", opened.enter_context(gzip.GzipFile(fileobj=buffered, mode="rb")))
    return cast("BinaryIO", buffered)


def _header(lines: Iterator[bytes], name: str) -> dict[str, Any]:
    try:
        header = orjson.loads(next(lines, b""))
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != STATE_FORMAT:
        raise InputError(f"{name}: not a canopycli state export", hint="Make one with: canopycli state export FILE")
    if header.get("version") != STATE_VERSION:
        raise InputError(f"{name}: state format version {header.get('version')} is not supported here")
    return header
