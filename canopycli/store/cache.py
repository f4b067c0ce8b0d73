"""Short-lived answers of the far side: the SOAP campaign list, per address and token.

A row is keyed by the SOAP address and the SHA-256 of the token (the token itself is never
written). Freshness is the caller's rule (fetched within ``since``..``until``); a row is replaced on write.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .db import Guard, guarded, transaction


class CampaignCache:
    """``campaign_cache`` rows: a campaign list (``[{"id", "name", "type"}]``) with when it was fetched."""

    def __init__(self, db: sqlite3.Connection, guard: Guard) -> None:
        self.db = db
        self.guard = guard

    @guarded
    def get(self, address: str, token_sha256: str, since: float, until: float) -> list[dict[str, Any]] | None:
        """The list fetched after ``since`` and not after ``until`` (a clock set back does not keep a row fresh)."""
        row = self.db.execute(
            "SELECT campaigns FROM campaign_cache WHERE address = ? AND token_sha256 = ? AND fetched > ? AND fetched <= ?",
            (address, token_sha256, since, until),
        ).fetchone()
        return None if row is None else list(json.loads(row[0]))

    @guarded
    def put(self, address: str, token_sha256: str, fetched: float, campaigns: list[dict[str, Any]]) -> None:
        with transaction(self.db):
            self.db.execute(
                "INSERT OR REPLACE INTO campaign_cache (address, token_sha256, fetched, campaigns) VALUES (?, ?, ?, ?)",
                (address, token_sha256, fetched, json.dumps(campaigns).encode()),
            )

    @guarded
    def drop(self, address: str, token_sha256: str) -> None:
        with transaction(self.db):
            self.db.execute(
                "DELETE FROM campaign_cache WHERE address = ? AND token_sha256 = ?", (address, token_sha256)
            )
