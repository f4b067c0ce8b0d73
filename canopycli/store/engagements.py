"""Engagement events in the journal: stored whole per page, queried for reports and suppression.

Identifiers are kept as canopycli sends them: an address only as the SHA-256 of its trimmed,
lowercased text (``email_sha256``), a customer id as given (``external_id``), so engagements join
to segments and baselines. Pulling twice stores once (``uuid`` is the key).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from typing import NamedTuple

from .db import Guard, guarded, transaction

METRICS = ("sends", "opens", "clicks", "bounces", "complaints")


class Event(NamedTuple):
    """One engagement, as stored (see ``schema.ENGAGEMENTS``)."""

    uuid: str
    metric: str
    at: str  # UTC ISO 8601
    day: str  # YYYY-MM-DD
    campaign_id: str | None = None
    campaign_name: str | None = None
    brand_id: str | None = None
    mailing_type: str | None = None
    content_name: str | None = None
    link: str | None = None
    link_description: str | None = None
    bounce_type: str | None = None
    bounce_category: str | None = None
    email_sha256: str | None = None
    external_id: str | None = None
    source: str = "api"


_COLS = ", ".join((*Event._fields, "profile"))
_INSERT = f"INSERT OR IGNORE INTO engagements ({_COLS}) VALUES ({', '.join('?' * (len(Event._fields) + 1))})"

# What a segment's ``suppress:`` types hold back: a hard bounce, any complaint. ``SUPPRESSING``
# repeats the partial indexes' condition, so SQLite uses them.
SUPPRESS_SQL = {
    "bounce": "metric = 'bounces' AND lower(bounce_type) = 'hard'",
    "complaint": "metric = 'complaints'",
}
SUPPRESSING = "metric IN ('bounces', 'complaints')"
# The covering partial index of each identifier column (named: SQLite 3.40's planner would rather
# take the metric index and read every row).
_BY = {"email_sha256": "engagements_email", "external_id": "engagements_external"}


def reason(metric: str, day: str) -> str:
    """Why a row is held back, as ``--rejects`` says it."""
    what = "hard bounce" if metric == "bounces" else "complaint"
    return f"suppressed: {what} on {day} (--no-suppress sends it anyway)"


def profile_key(e: Event) -> int | None:
    """60 bits of the profile's identifier (``email_sha256``, else ``external_id``): what the
    report counts distinct. An integer, not the 64-character digest, keeps its index small and
    its distinct counts fast; two profiles share a key with odds of about 1 in 10^12 a million."""
    if e.email_sha256 is not None:
        return int(e.email_sha256[:15], 16) if len(e.email_sha256) == 64 else _key(e.email_sha256)
    return None if e.external_id is None else _key(e.external_id)


def _key(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:15], 16)


def _where(types: Iterable[str]) -> str:
    return f"{SUPPRESSING} AND (" + " OR ".join(f"({SUPPRESS_SQL[t]})" for t in types) + ")"


class Engagements:
    """The engagements on one journal connection (``guard``: what its errors mean)."""

    def __init__(self, db: sqlite3.Connection, guard: Guard) -> None:
        self.db = db
        self.guard = guard

    @guarded
    def store(self, events: Iterable[Event]) -> int:
        """Store a page whole (one transaction); how many were new."""
        names: dict[str, str] = {}
        rows = []
        for e in events:
            rows.append((*e, profile_key(e)))
            if e.campaign_id is not None and e.campaign_name is not None:
                names[e.campaign_id] = e.campaign_name
        with transaction(self.db) as db:
            before = db.total_changes
            db.executemany(_INSERT, rows)
            new = db.total_changes - before
            db.executemany("INSERT OR REPLACE INTO engagement_campaigns VALUES (?, ?)", names.items())
            return new

    @guarded
    def campaigns(self) -> dict[str, str]:
        """Campaign id -> its name, as the newest stored events named it."""
        return dict(self.db.execute("SELECT campaign_id, campaign_name FROM engagement_campaigns"))

    @guarded
    def newest_day(self, metric: str, source: str = "api") -> str | None:
        row = self.db.execute(  # walks the day index from the newest day: no scan
            "SELECT day FROM engagements INDEXED BY engagements_day WHERE metric = ? AND source = ?"
            " ORDER BY day DESC LIMIT 1",
            (metric, source),
        ).fetchone()
        return None if row is None else row[0]

    @guarded
    def prune(self, before_day: str) -> int:
        with transaction(self.db) as db:
            return int(db.execute("DELETE FROM engagements WHERE day < ?", (before_day,)).rowcount)

    @guarded
    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM engagements").fetchone()[0])

    @guarded
    def suppressed(self, column: str, ids: list[str], types: Iterable[str]) -> dict[str, str]:
        """Of ``ids`` (``column``: email_sha256 or external_id), those with an engagement of one of
        ``types`` (bounce, complaint): id -> the reason, naming the type and its UTC day."""
        if column not in ("email_sha256", "external_id"):
            raise ValueError(column)
        where = _where(types)
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            sql = (
                f"SELECT {column}, metric, MIN(day) FROM engagements INDEXED BY {_BY[column]}"
                f" WHERE {column} IN ({','.join('?' * len(part))})"
                f" AND {where} GROUP BY {column}, metric"
            )
            for ident, metric, day in self.db.execute(sql, part):
                out.setdefault(ident, reason(metric, day))
        return out

    @guarded
    def suppressed_ids(self, column: str, types: Iterable[str]) -> set[str]:
        """Every identifier ``types`` hold back (what a run loads: the ids alone, no reasons)."""
        if column not in ("email_sha256", "external_id"):
            raise ValueError(column)
        sql = (
            f"SELECT {column} FROM engagements INDEXED BY {_BY[column]}"
            f" WHERE {column} IS NOT NULL AND {_where(types)} GROUP BY {column}"
        )
        return {ident for (ident,) in self.db.execute(sql)}

    @guarded
    def suppressed_all(self, column: str, types: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Every identifier ``types`` hold back -> (metric, the first such day); a profile that
        bounced and complained is named by its bounce. A run loads them once: one set lookup a
        row, whatever the size of the input; ``reason()`` words it for the rows held."""
        if column not in ("email_sha256", "external_id"):
            raise ValueError(column)
        sql = (
            f"SELECT {column}, metric, MIN(day) FROM engagements INDEXED BY {_BY[column]}"
            f" WHERE {column} IS NOT NULL AND {_where(types)}"
            f" GROUP BY {column}, metric"
        )
        rows = self.db.execute(sql).fetchall()  # by identifier, then metric: bounces before complaints
        return {ident: (metric, day) for ident, metric, day in reversed(rows)}

    @guarded
    def held_back(self, column: str, types: Iterable[str]) -> tuple[int, str | None]:
        """How many identifiers ``types`` hold back, and since when (the earliest such event's day)."""
        if column not in ("email_sha256", "external_id"):
            raise ValueError(column)
        row = self.db.execute(
            f"SELECT COUNT(DISTINCT {column}), MIN(day) FROM engagements INDEXED BY {_BY[column]}"
            f" WHERE {column} IS NOT NULL AND {_where(types)}"
        ).fetchone()
        return int(row[0]), row[1]
