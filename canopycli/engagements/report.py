"""What came back, in figures: the report's queries and its JSON, and the export's rows.

A report covers UTC days ``since`` to ``until`` (both inclusive), optionally one campaign (by id
or name), grouped ``by`` type, campaign, day or link. Each figure comes from a pass over an index
that holds every column the query reads (see ``store.schema.ENGAGEMENTS``: by metric, by day,
clicks by link, bounces by category), so SQLite never reads the table's rows for them; counts per
metric and unique profiles (on a 60-bit integer key) are separate passes, the second once per group.

A profile is its ``email_sha256``, else its ``external_id``; events with neither count in the
figures but not in ``unique_profiles``.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterator
from typing import Any

from ..errors import UsageError
from ..store import Store
from ..store.engagements import METRICS, Event

BY = ("type", "campaign", "day", "link")
TOP_LINKS = 50
MAX_DAYS = 3_660  # --by day: ten years of rows at most
ALL_METRICS = "metric IN (" + ", ".join(f"'{m}'" for m in METRICS) + ")"  # walks the metric index in order
KEYS = (*METRICS, "unique_profiles")


def report(
    store: Store, *, since: dt.date, until: dt.date, campaign: str | None = None, by: str = "type"
) -> dict[str, Any]:
    """The report as its JSON: ``{"since", "until", "by", "totals", "rows", "bounces_by_category"}``."""
    if by not in BY:
        raise UsageError(f"--by takes {', '.join(BY)}, got {by!r}")
    if since > until:
        raise UsageError(f"--since {since} is after --until {until}")
    if by == "day" and (until - since).days >= MAX_DAYS:
        raise UsageError(
            f"--by day lists every day: {(until - since).days + 1:,} are too many",
            hint=f"Ask for at most {MAX_DAYS:,} days.",
        )
    where, params = _where(store, since, until, campaign)
    db = store.db
    per_metric = _grouped(db, "metric", where, params)
    totals = _zero()
    for counts in per_metric.values():
        for m in METRICS:
            totals[m] += counts[m]
    totals["unique_profiles"] = _distinct(db, None, "engagements_profile", where, params).get(None, 0)
    rows: list[dict[str, Any]]
    if by == "type":
        rows = [{"key": m, **per_metric.get(m, _zero())} for m in METRICS]
    elif by == "day":
        found = _grouped(db, "day", where, params)
        rows = [{"key": d, **found.get(d, _zero())} for d in _days(since, until)]
    elif by == "campaign":
        rows = []
        names = store.engagements.campaigns()
        found = _grouped(db, "campaign_id", where, params)
        for cid, counts in sorted(found.items(), key=lambda kv: (-kv[1]["sends"], str(kv[0]))):
            sends = counts["sends"]
            rates = {
                "open_rate": round(counts["opens"] / sends, 4) if sends else None,
                "click_rate": round(counts["clicks"] / sends, 4) if sends else None,
            }
            rows.append({"key": cid, "campaign_name": names.get(cid), **counts, **rates})
    else:
        sql = (
            "SELECT link, COUNT(*), COUNT(DISTINCT profile) FROM engagements INDEXED BY engagements_clicks"
            f" WHERE metric = 'clicks' AND {where} GROUP BY link ORDER BY COUNT(*) DESC, link LIMIT {TOP_LINKS}"
        )
        rows = [{"key": link, "link_description": _description(store, link), **_zero(), "clicks": n, "unique_profiles": u}
                for link, n, u in db.execute(sql, params)]  # fmt: skip
    bounces = db.execute(
        "SELECT COALESCE(bounce_category, ''), COALESCE(lower(bounce_type), ''), COUNT(*) FROM engagements"
        f" INDEXED BY engagements_bounces WHERE metric = 'bounces' AND {where} GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        params,
    ).fetchall()
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "by": by,
        "totals": totals,
        "rows": rows,
        "bounces_by_category": [{"category": c or None, "type": t or None, "count": n} for c, t, n in bounces],
    }


def by_day(store: Store, *, since: dt.date, until: dt.date, campaign: str | None = None) -> list[dict[str, Any]]:
    """Counts per metric for every day in the range (the terminal's bar chart); no unique counts."""
    where, params = _where(store, since, until, campaign)
    found: dict[str, dict[str, int]] = {}
    sums = ", ".join(f"SUM(metric = '{m}')" for m in METRICS)
    sql = f"SELECT day, {sums} FROM engagements INDEXED BY engagements_day WHERE {where} GROUP BY day"
    for day, *counts in store.db.execute(sql, params):
        found[day] = dict(zip(METRICS, (int(c or 0) for c in counts), strict=True))
    return [{"key": d, **{m: found.get(d, {}).get(m, 0) for m in METRICS}} for d in _days(since, until)]


def export_rows(
    store: Store, *, since: dt.date | None = None, until: dt.date | None = None, metrics: list[str] | None = None
) -> Iterator[Event]:
    """Stored events, oldest first, as a cursor (constant memory whatever the count)."""
    clauses, params = [], []
    if since is not None:
        clauses.append("day >= ?")
        params.append(since.isoformat())
    if until is not None:
        clauses.append("day <= ?")
        params.append(until.isoformat())
    if metrics:
        clauses.append(f"metric IN ({','.join('?' * len(metrics))})")
        params += metrics
    where = " AND ".join(clauses) or "1"
    cursor = store.db.execute(
        f"SELECT {', '.join(Event._fields)} FROM engagements WHERE {where} ORDER BY at, uuid", params
    )
    for row in cursor:
        yield Event(*row)


# --- parts ---------------------------------------------------------------------------------------


def _where(store: Store, since: dt.date, until: dt.date, campaign: str | None) -> tuple[str, list[str]]:
    where, params = "day BETWEEN ? AND ?", [since.isoformat(), until.isoformat()]
    if campaign is not None:
        cid = _campaign_id(store, campaign)
        where += " AND campaign_id = ?"
        params.append(cid)
    return where, params


def _campaign_id(store: Store, given: str) -> str:
    """``--campaign``: an id, or a name (any case) -> the campaign id; unknown -> exit 2 with the
    closest names stored."""
    names = store.engagements.campaigns()
    wanted = given.strip()
    known = store.db.execute(
        "SELECT 1 FROM engagements INDEXED BY engagements_day WHERE campaign_id = ? LIMIT 1", (wanted,)
    )
    if wanted in names or known.fetchone() is not None:
        return wanted
    by_name = {name.casefold(): cid for cid, name in names.items()}
    if wanted.casefold() in by_name:
        return by_name[wanted.casefold()]
    close = difflib.get_close_matches(wanted, list(names.values()), n=3, cutoff=0.5)
    hint = (
        f"Did you mean {', '.join(repr(c) for c in close)}?" if close else "Leave --campaign out to see every campaign."
    )
    if not names:
        hint = "No campaign name is stored: give a campaign id, or run `canopycli engagements pull` first."
    raise UsageError(f"--campaign {given!r}: no stored engagement has that campaign id or name", hint=hint)


def _description(store: Store, link: str | None) -> str | None:
    row = store.db.execute(
        "SELECT link_description FROM engagements INDEXED BY engagements_clicks"
        " WHERE metric = 'clicks' AND link IS ? AND link_description IS NOT NULL LIMIT 1",
        (link,),
    ).fetchone()
    return None if row is None else str(row[0])


INDEX_OF = {"metric": "engagements_metric", "day": "engagements_day", "campaign_id": "engagements_campaign"}


def _grouped(db: Any, key: str, where: str, params: list[str]) -> dict[Any, dict[str, int]]:
    """Per value of ``key`` (metric, day, campaign_id): each metric's count and the unique profiles,
    in two ordered passes over the key's covering index: the counts (conditional sums; for the
    metric itself, a plain count), then the distinct profiles (ordered within the key: no sort)."""
    index = INDEX_OF[key]
    out: dict[Any, dict[str, int]] = {}
    if key == "metric":
        sql = f"SELECT metric, COUNT(*) FROM engagements INDEXED BY {index} WHERE {ALL_METRICS} AND {where} GROUP BY metric"
        for metric, n in db.execute(sql, params):
            out.setdefault(metric, _zero())[metric] = n
    else:
        sums = ", ".join(f"SUM(metric = '{m}')" for m in METRICS)
        sql = f"SELECT {key}, {sums} FROM engagements INDEXED BY {index} WHERE {where} GROUP BY {key}"
        for k, *counts in db.execute(sql, params):
            out[k] = {**dict(zip(METRICS, (int(c or 0) for c in counts), strict=True)), "unique_profiles": 0}
    for k, n in _distinct(db, key, index, where if key != "metric" else f"{ALL_METRICS} AND {where}", params).items():
        out.setdefault(k, _zero())["unique_profiles"] = n
    return out


def _distinct(db: Any, key: str | None, index: str, where: str, params: list[str]) -> dict[Any, int]:
    """Unique profiles per value of ``key`` (None: over all)."""
    group = f"{key}, " if key else ""
    sql = f"SELECT {group}COUNT(DISTINCT profile) FROM engagements INDEXED BY {index} WHERE {where}"
    sql += f" GROUP BY {key}" if key else ""
    return {(k[0] if key else None): n for *k, n in db.execute(sql, params) if n}


def _zero() -> dict[str, int]:
    return dict.fromkeys(KEYS, 0)


def _days(since: dt.date, until: dt.date) -> list[str]:
    return [(since + dt.timedelta(days=i)).isoformat() for i in range((until - since).days + 1)]
