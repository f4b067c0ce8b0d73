"""Deployteq's daily request budget (50,000 per brand per day for standard webhooks).

Requests are counted per endpoint URL per UTC day in the journal; when the receiver sends
``X-Clang-Request-Count`` (the brand's own running count) that number is taken instead, as it
also covers other webhooks of the brand. The reset time on Deployteq's side is unconfirmed; we
assume midnight UTC and say so in every message about it.
"""

from __future__ import annotations

import datetime as dt
import math
import threading

from ..errors import QuotaError
from ..store.runs import RequestCounts


def utc_day(at: dt.datetime | None = None) -> str:
    return (at or dt.datetime.now(dt.UTC)).date().isoformat()


def next_reset(at: dt.datetime | None = None) -> dt.datetime:
    t = at or dt.datetime.now(dt.UTC)
    return dt.datetime.combine(t.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def retry_when(at: dt.datetime | None = None) -> str:
    t = at or dt.datetime.now(dt.UTC)
    left = next_reset(t) - t
    h, m = divmod(int(left.total_seconds()) // 60, 60)
    return f"after 00:00 UTC (in {h} h {m} min; Deployteq's exact reset time is unconfirmed)"


class DailyQuota:
    """Thread-safe counter of today's requests to one endpoint; ``take`` before each request."""

    def __init__(self, counts: RequestCounts, endpoint: str, limit: int | None) -> None:
        self.counts = counts
        self.endpoint = endpoint
        self.limit = limit
        self.day = utc_day()
        self.used = counts.count(endpoint, self.day)
        self._lock = threading.Lock()

    def remaining(self) -> int | None:
        with self._lock:
            self._roll()
            return None if self.limit is None else max(0, self.limit - self.used)

    def _roll(self) -> None:
        today = utc_day()
        if today != self.day:
            self.day, self.used = today, 0

    def take(self) -> bool:
        """Reserve one request; False when today's budget is spent (the request must not be made)."""
        with self._lock:
            self._roll()
            if self.limit is not None and self.used >= self.limit:
                return False
            self.used += 1
            return True

    def observe(self, count: int) -> None:
        """The receiver's own count (``X-Clang-Request-Count``) wins when it is higher."""
        with self._lock:
            self.used = max(self.used, count)

    def save(self) -> None:
        with self._lock:
            day, used = self.day, self.used
        self.counts.save(self.endpoint, day, used)

    def check(self, needed: int | None, allow_partial: bool) -> None:
        """Refuse (exit 3) a push that needs more requests than remain today."""
        left = self.remaining()
        if left is None or needed is None or needed <= left:
            return
        if allow_partial and left > 0:
            return
        raise QuotaError(
            f"this needs about {needed:,} requests but only {left:,} of today's {self.limit:,} remain for this endpoint",
            hint=(
                f"Send what fits with --allow-partial and the rest {retry_when()} with `canopycli retry`, or wait."
                if left > 0
                else f"Nothing was sent. Try again {retry_when()}."
            ),
        )


def requests_needed(rows: int | None, batch_size: int) -> int | None:
    return None if rows is None else math.ceil(max(rows, 0) / batch_size)
