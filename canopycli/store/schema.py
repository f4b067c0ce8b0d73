"""The journal's schema and its history: numbered migrations, versioned by ``PRAGMA user_version``.

``user_version`` N means migrations 1..N are applied. Opening a journal (``db.connect``) applies
the ones it lacks, in one transaction, and refuses a journal from a newer canopycli (a version
above ``VERSION``) rather than misread it.

Releases before versioning (1.0, and the 1.x work before it) left ``user_version`` at 0 and
changed the schema with ``CREATE TABLE IF NOT EXISTS`` and ``ALTER``s at every open. So 0 means a
new file *or* such a journal, and migrations 1-3 are written to bring either to the same place:
tables created only if missing, columns added only if missing. Later migrations run on versioned
journals only and need no such care.

A migration is added, never edited: its number is in journals out there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

# Migration 1: the schema exactly as canopycli 1.0 created it (canopycli/journal.py at dd20420).
SCHEMA_1_0 = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    pid INTEGER,
    started TEXT NOT NULL,
    finished TEXT,
    config_path TEXT,
    connector TEXT NOT NULL,
    segment TEXT NOT NULL,
    segment_name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    input TEXT,
    input_sha256 TEXT,
    settings TEXT NOT NULL,
    spool_complete INTEGER NOT NULL DEFAULT 0,
    rows_read INTEGER NOT NULL DEFAULT 0,
    rows_rejected INTEGER NOT NULL DEFAULT 0,
    rows_duplicate INTEGER NOT NULL DEFAULT 0,
    profiles_unchanged INTEGER,
    status TEXT NOT NULL DEFAULT 'running',
    exit_code INTEGER,
    stop_reason TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    profiles INTEGER NOT NULL,
    state TEXT NOT NULL,
    status_code INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    detail TEXT,
    removals INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    body BLOB,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS requests (
    endpoint TEXT NOT NULL,
    day TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (endpoint, day)
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started);
CREATE TABLE IF NOT EXISTS baseline (
    scope TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (scope, customer_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS baseline_moves (
    scope TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    digest BLOB  -- NULL: removed
);
CREATE TABLE IF NOT EXISTS scopes (
    scope TEXT PRIMARY KEY,
    connector TEXT NOT NULL,
    segment TEXT NOT NULL,
    identifier TEXT NOT NULL,
    updated TEXT NOT NULL,
    last_run TEXT
);
"""


def _schema_1_0(db: sqlite3.Connection) -> None:
    _run_script(db, SCHEMA_1_0)


def _batch_removals(db: sqlite3.Connection) -> None:
    """REMOVED profiles in a sync batch. A journal from before sync lacks the column (1.0 created
    it with its tables and added it to older journals with an ALTER at every open)."""
    _add_columns(db, "batches", {"removals": "INTEGER NOT NULL DEFAULT 0"})


def _scope_origin(db: sqlite3.Connection) -> None:
    """What acknowledged a baseline: its webhook and segmentName (canopycli 1.1; NULL before)."""
    _add_columns(db, "scopes", {"endpoint": "TEXT", "segment_name": "TEXT"})


def _read_prefix(db: sqlite3.Connection) -> None:
    """How much of its input a run had read when it journaled a batch: the bytes, their SHA-256 and
    the input's size then (the input is read once; a run killed mid-way is checked on that prefix)."""
    _add_columns(db, "batches", {"read_bytes": "INTEGER", "read_sha256": "TEXT", "input_size": "INTEGER"})


QUEUE = """
CREATE TABLE queue (          -- the relay's durable queue: one waiting event per segment + identifier
    segment TEXT NOT NULL,     -- the segment key
    customer_id TEXT NOT NULL, -- as sent (a SHA-256 hex digest for hashed_email: never the address)
    status TEXT NOT NULL,      -- NEW / MODIFIED / REMOVED: the latest event's (once taken: the one sent)
    new_seen INTEGER NOT NULL, -- 1: a NEW was among the events merged into this row
    params BLOB NOT NULL,      -- the params as sent (JSON)
    received REAL NOT NULL,    -- when the first of its events arrived (unix time): the flush rule's age
    merged INTEGER NOT NULL DEFAULT 0, -- earlier events of this id it superseded (latest wins)
    run_id TEXT,               -- the flush run that took it (NULL: waiting)
    idx INTEGER                -- its batch in that run
);
CREATE UNIQUE INDEX queue_waiting ON queue (segment, customer_id) WHERE run_id IS NULL;
CREATE INDEX queue_order ON queue (segment, run_id);
CREATE INDEX queue_age ON queue (segment, received);
CREATE INDEX queue_taken ON queue (run_id, idx) WHERE run_id IS NOT NULL;
CREATE TABLE baseline_removed ( -- acknowledged removals (the relay drops a REMOVED echo of one)
    scope TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    PRIMARY KEY (scope, customer_id)
) WITHOUT ROWID;
"""


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Statement by statement: ``executescript`` would commit the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _relay_queue(db: sqlite3.Connection) -> None:
    """The relay's queue, and the removals a baseline has seen acknowledged (canopycli 1.2)."""
    _run_script(db, QUEUE)


CAMPAIGN_CACHE = """
CREATE TABLE campaign_cache (  -- SOAP campaign lists, kept 10 minutes (deployteq/campaigns.py)
    address TEXT NOT NULL,      -- the SOAP address, with its version
    token_sha256 TEXT NOT NULL, -- the SHA-256 of the token: never the token
    fetched REAL NOT NULL,      -- unix time
    campaigns BLOB NOT NULL,    -- JSON [{"id", "name", "type"}]
    PRIMARY KEY (address, token_sha256)
) WITHOUT ROWID;
CREATE TABLE soap_customers (  -- Deployteq customer ids learned over SOAP (deployteq/realtime.py)
    address TEXT NOT NULL,      -- the SOAP address, with its version
    key TEXT NOT NULL,          -- the identifier as journaled (an external id, or an address's SHA-256)
    customer_id INTEGER NOT NULL,
    PRIMARY KEY (address, key)
) WITHOUT ROWID;
"""


def _campaign_cache(db: sqlite3.Connection) -> None:
    """SOAP: the campaign list cache, and the customer ids learned (canopycli 1.3)."""
    _run_script(db, CAMPAIGN_CACHE)


ENGAGEMENTS = """
CREATE TABLE engagements (      -- engagement events pulled from the Analytics Events API or posted to the relay
    uuid TEXT NOT NULL UNIQUE,  -- the event's own id: pulling twice stores once
    metric TEXT NOT NULL,       -- sends | opens | clicks | bounces | complaints (the API's names)
    at TEXT NOT NULL,           -- when it happened, UTC ISO 8601
    day TEXT NOT NULL,          -- its UTC day, YYYY-MM-DD
    campaign_id TEXT,
    campaign_name TEXT,
    brand_id TEXT,
    mailing_type TEXT,
    content_name TEXT,
    link TEXT,                  -- clicks: the URL
    link_description TEXT,
    bounce_type TEXT,           -- bounces: hard | soft (as given)
    bounce_category TEXT,
    email_sha256 TEXT,          -- the address, trimmed, lowercased, SHA-256'd: never the address
    external_id TEXT,           -- the customer id (customer_id segments)
    source TEXT NOT NULL,       -- api | relay
    profile INTEGER             -- 60 bits of the profile's identifier (email_sha256, else external_id): unique counts
);
-- The report reads only these indexes, each covering its queries. In each, the profile follows the
-- grouping column, so unique profiles per group are counted in one ordered pass (no sort).
CREATE INDEX engagements_metric ON engagements (metric, profile, day, campaign_id);
CREATE INDEX engagements_day ON engagements (day, profile, metric, campaign_id);
CREATE INDEX engagements_campaign ON engagements (campaign_id, profile, metric, day);
CREATE INDEX engagements_profile ON engagements (profile, day, metric, campaign_id);
-- Clicks by link and bounces by category. Suppression reads identifiers among bounces and
-- complaints only, from indexes that hold what it needs (metric, day, bounce_type).
CREATE INDEX engagements_clicks ON engagements (link, day, campaign_id, profile) WHERE metric = 'clicks';
CREATE INDEX engagements_bounces ON engagements (day, campaign_id, bounce_category, bounce_type)
    WHERE metric = 'bounces';
CREATE INDEX engagements_email ON engagements (email_sha256, metric, day, bounce_type)
    WHERE metric IN ('bounces', 'complaints') AND email_sha256 IS NOT NULL;
CREATE INDEX engagements_external ON engagements (external_id, metric, day, bounce_type)
    WHERE metric IN ('bounces', 'complaints') AND external_id IS NOT NULL;
CREATE TABLE engagement_campaigns (  -- each campaign id's latest name: --campaign NAME, the report's names
    campaign_id TEXT PRIMARY KEY,
    campaign_name TEXT NOT NULL
) WITHOUT ROWID;
"""


def _engagements(db: sqlite3.Connection) -> None:
    """Engagements back: clicks, opens, receives, bounces, complaints, and the rows a run held
    back because of them (canopycli 1.4)."""
    _run_script(db, ENGAGEMENTS)
    _add_columns(db, "runs", {"rows_suppressed": "INTEGER NOT NULL DEFAULT 0"})


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _schema_1_0,  # 1
    _batch_removals,  # 2
    _scope_origin,  # 3
    _read_prefix,  # 4
    _relay_queue,  # 5
    _campaign_cache,  # 6
    _engagements,  # 7
)
VERSION = len(MIGRATIONS)


def _add_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    for name, decl in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


# The schema the migrations build, in one piece, for reading: 1.0's (which has batches.removals
# already) with the scope's origin of migration 3 and the read prefix of migration 4. A test checks
# that the migrations build exactly this.
SCHEMA = (
    SCHEMA_1_0.replace(
        "    last_run TEXT\n);",
        "    last_run TEXT,\n"
        "    endpoint TEXT,      -- the webhook that acknowledged the baseline (NULL: before canopycli 1.1)\n"
        "    segment_name TEXT   -- the segmentName it was sent as (NULL: before canopycli 1.1)\n);",
    ).replace(
        "    PRIMARY KEY (run_id, idx)\n);",
        "    read_bytes INTEGER,  -- the input read when the batch was journaled: its length, its SHA-256\n"
        "    read_sha256 TEXT,    -- and the input's size then (a run killed mid-way: retry checks that prefix)\n"
        "    input_size INTEGER,\n"
        "    PRIMARY KEY (run_id, idx)\n);",
    )
    + QUEUE
    + CAMPAIGN_CACHE
    + ENGAGEMENTS
).replace(
    "    exit_code INTEGER,\n    stop_reason TEXT\n);",
    "    exit_code INTEGER,\n    stop_reason TEXT,\n"
    "    rows_suppressed INTEGER NOT NULL DEFAULT 0  -- held back by engagements (canopycli 1.4)\n);",
)
