"""Normalize on every core: records -> (profile | reason) in worker processes, in order.

Normalizing a row (identity, status, typed params, JSON encoding) is the hot path and pure
Python, so one process cannot use a second core. For large inputs the main process keeps
reading (and keeps everything that must see rows in order: line numbers, duplicate detection,
batching, the journal), ships chunks of records to workers, and gets back for each record
either (customer id, the customer's JSON) or the reason it is rejected. The JSON is embedded
in the batch body as it is (``orjson.Fragment``), so batches come out byte for byte as the
serial path makes them: the same uuids.

At most ``2 x workers`` chunks are in flight, so memory stays flat. Workers ignore Ctrl-C
(the main process decides how to stop) and exit when the main process goes away.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterator
from itertools import islice
from typing import Any

import orjson

from .config import Segment
from .normalize import Normalizer, Profile, Reject
from .read import Record

CHUNK = 2_000
PARALLEL_FROM_ROWS = 100_000  # below this, starting workers costs more than it saves
WORKERS_ENV = "CANOPYCLI_WORKERS"
NOT_UTF8 = "is not valid UTF-8 (re-export the file as UTF-8)"

Outcome = Profile | str  # a profile, or the reason its row is rejected
_normalizer: Normalizer | None = None


def worker_count(estimated_rows: int | None) -> int:
    """``$CANOPYCLI_WORKERS`` if set (0: no workers), else one per spare core for large inputs."""
    env = os.environ.get(WORKERS_ENV)
    if env is not None and env.strip().isdigit():
        return int(env)
    cores = os.cpu_count() or 1
    if cores < 2 or (estimated_rows or 0) < PARALLEL_FROM_ROWS:
        return 0
    return min(cores - 1, 3)


def serial(records: Iterator[tuple[int, Record]], normalizer: Normalizer) -> Iterator[tuple[int, Outcome, Record]]:
    for line, record in records:
        if isinstance(record, str):
            yield line, record, record
            continue
        got = normalizer(line, record)
        yield line, (got.reason if isinstance(got, Reject) else got), record


def parallel(
    records: Iterator[tuple[int, Record]],
    settings: dict[str, Any],
    columns: list[str] | None,
    source_name: str,
    workers: int,
) -> Iterator[tuple[int, Outcome, Record]]:
    ctx = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads and SQLite handles
    pool = ctx.Pool(workers, initializer=_start, initargs=(settings, columns, source_name))
    inflight: deque[tuple[list[tuple[int, Record]], Any]] = deque()
    fragment = orjson.Fragment
    try:
        while True:
            chunk = list(islice(records, CHUNK))
            if chunk:
                inflight.append((chunk, pool.apply_async(_normalize, (chunk,))))
            while inflight and (not chunk or len(inflight) > 2 * workers):
                done, result = inflight.popleft()
                for (line, record), (cid, payload) in zip(done, result.get(), strict=True):
                    if cid is None:
                        yield line, payload, record
                    else:
                        yield line, Profile(line, cid, fragment(payload)), record
            if not chunk:
                return
    finally:
        pool.terminate()
        pool.join()


def _start(settings: dict[str, Any], columns: list[str] | None, source_name: str) -> None:
    global _normalizer
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    segment = Segment.model_validate(settings["segment"])
    _normalizer = Normalizer(segment, settings["identifier"], columns, settings["status"], source_name=source_name)


def _normalize(chunk: list[tuple[int, Record]]) -> list[tuple[str | None, Any]]:
    """Per record: (customer id, customer JSON) or (None, reason)."""
    assert _normalizer is not None
    normalize, dumps = _normalizer, orjson.dumps
    out: list[tuple[str | None, Any]] = []
    for line, record in chunk:
        if isinstance(record, str):
            out.append((None, record))
            continue
        got = normalize(line, record)
        if isinstance(got, Reject):
            out.append((None, got.reason))
            continue
        try:
            out.append((got.customer_id, dumps(got.customer)))
        except orjson.JSONEncodeError:
            out.append((None, NOT_UTF8))
    return out
