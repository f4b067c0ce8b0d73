"""The state folder: one SQLite file (the journal) and the segment locks.

Modules by concern:

- ``db``: opening the journal (a connection per role, pragmas, owner-only files), the one
  ``transaction()`` helper, what a SQLite error means for the user; ``schema``: the numbered
  migrations (``PRAGMA user_version``) that bring any journal since 1.0 to the current schema;
- ``runs``: runs and their batches, and the daily request counters;
- ``queue``: the relay's durable queue of profile events;
- ``engagements``: engagement events (pulled or posted), for reports and suppression;
- ``cache``: short-lived answers of the far side (the SOAP campaign list);
- ``baseline``: sync baselines (moves, fold, scopes) and the diff's scratch ``Snapshot``;
  ``portable``: ``state export`` / ``state import`` files;
- ``locks``: where the state folder is, and one lock per connector + segment.

``Store(root, role)`` opens the journal of the state folder ``root`` for one role and bundles
its parts, which share that connection::

    with Store(state_dir(None)) as store:
        run = store.runs.last()
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .baseline import Baselines
from .cache import CampaignCache
from .db import JOURNAL, Guard, connect
from .engagements import Engagements
from .queue import Queue
from .runs import RequestCounts, Runs


class Store:
    """The journal of one state folder, opened for one role (``cli``; the relay's ``intake`` and
    ``flusher`` each open their own)."""

    def __init__(self, root: Path, role: str = "cli") -> None:
        self.path = root / JOURNAL
        self.role = role
        self.db: sqlite3.Connection = connect(self.path, role)
        self.guard = Guard(self.path)  # shared: a run started via ``runs`` is named by any part's error
        self.runs = Runs(self.db, self.guard)
        self.baselines = Baselines(self.db, self.guard)
        self.requests = RequestCounts(self.db, self.guard)
        self.queue = Queue(self.db, self.guard)
        self.engagements = Engagements(self.db, self.guard)
        self.campaigns = CampaignCache(self.db, self.guard)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Baselines", "CampaignCache", "Queue", "RequestCounts", "Runs", "Store"]
