"""The Analytics Events API: OAuth2 client credentials, the events endpoint, incremental pulls.

``pull()`` fetches each metric's events from a start day to an end day (UTC, both inclusive),
page by page along ``_links.next``, and stores each page whole (one transaction) or not at all.
Without ``since`` it resumes per metric from the newest stored day of that metric, one day back
(the uuids make the overlap harmless), or fetches the last 30 days the first time.

What the API answers decides what happens, and nothing is half-stored:

- the token: fetched with HTTP Basic (client id and secret), reused until shortly before it
  expires; a 401 from the events endpoint renews it once; a rejected secret is exit 4;
- 5xx, timeouts, dropped connections: retried with exponential backoff, then exit 1;
- 429: ``Retry-After`` honoured a few times (each wait capped), then exit 3;
- a page with an event that is not an object or lacks ``uuid``/``metric``/``metric_timestamp``:
  refused whole, exit 1 naming the field; a ``next`` link to another host: refused, exit 1.

The secret and the bearer token are registered for scrubbing the moment they are known, and no
message quotes a URL's query or an event's values.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson

from ..config import EngagementSettings
from ..errors import CredentialsError, QuotaError, ServiceError, UsageError, register_secret
from ..store import Store
from ..store.engagements import Event
from .events import EventError, from_api

FIRST_PULL_DAYS = 30
OVERLAP_DAYS = 1
RATE_LIMIT_TRIES = 3  # 429s honoured in a row before giving up (exit 3)
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is waited this long, then asked again
TOKEN_MARGIN = 30.0  # seconds before its expiry a token is renewed
MAX_PAGE_BYTES = 64 * 1024 * 1024
PULL_CACHE_KIB = 65536
CREDENTIALS_HINT = (
    "Check engagements.client_id and engagements.client_secret (and that the app may read analytics events)."
)

# called after each stored page with the metric's figures so far
Progress = Callable[["MetricPull"], None]


@dataclass
class MetricPull:
    """What one metric's pull did."""

    metric: str
    since: str
    until: str
    pages: int = 0
    received: int = 0
    new: int = 0
    duplicates: int = 0
    total: int | None = None  # the API's total_count, when it says


@dataclass
class PullResult:
    metrics: list[MetricPull] = field(default_factory=list)

    @property
    def new(self) -> int:
        return sum(m.new for m in self.metrics)

    @property
    def received(self) -> int:
        return sum(m.received for m in self.metrics)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "new": self.new,
            "metrics": [{k: v for k, v in asdict(m).items() if k != "total"} for m in self.metrics],
        }


def pull(
    settings: EngagementSettings,
    store: Store,
    *,
    since: dt.date | None = None,
    until: dt.date | None = None,
    metrics: list[str] | None = None,
    progress: Progress | None = None,
    transport: httpx.BaseTransport | None = None,
    today: dt.date | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PullResult:
    """Pull ``metrics`` (default: the configured ones) into ``store``; see the module's docstring."""
    today = today or dt.datetime.now(dt.UTC).date()
    end = until or today
    wanted = metrics or list(settings.metrics)
    unknown = [m for m in wanted if m not in settings.metrics]
    if unknown:
        raise UsageError(
            f"--metric {unknown[0]!r} is not one of {', '.join(settings.metrics)}",
            hint="engagements.metrics in the config lists the metrics to pull.",
        )
    if since is not None and since > end:
        raise UsageError(f"--since {since} is after --until {end}")
    result = PullResult()
    # Pages land all over the uuid and report indexes: a bigger page cache for this connection
    # keeps a long pull from re-reading them (64 MiB, used only as the indexes grow).
    store.db.execute(f"PRAGMA cache_size=-{PULL_CACHE_KIB}")
    store.db.execute("PRAGMA wal_autocheckpoint=16384")  # 64 MiB of WAL between checkpoints: a page written once
    with EventsApi(settings, transport=transport, sleep=sleep) as api:
        for metric in wanted:
            start = since or resume_day(store, metric, today)
            done = MetricPull(metric, start.isoformat(), end.isoformat())
            result.metrics.append(done)
            if start > end:
                continue
            for number, events in enumerate(api.pages(metric, start, end, done), 1):
                rows = _events(events, settings.metrics, f"{metric}, page {number}")
                new = store.engagements.store(rows)
                done.pages += 1
                done.received += len(rows)
                done.new += new
                done.duplicates += len(rows) - new
                if progress is not None:
                    progress(done)
    return result


def resume_day(store: Store, metric: str, today: dt.date) -> dt.date:
    """Where a pull without --since starts: the newest stored day of ``metric`` minus the overlap,
    or 30 days back the first time."""
    newest = store.engagements.newest_day(metric)
    if newest is None:
        return today - dt.timedelta(days=FIRST_PULL_DAYS)
    return dt.date.fromisoformat(newest) - dt.timedelta(days=OVERLAP_DAYS)


def _events(page: list[Any], metrics: list[str], where: str) -> list[Event]:
    """A page's events, all of them or none (the first bad one named by its 0-based index)."""
    rows: list[Event] = []
    for i, e in enumerate(page):
        try:
            rows.append(from_api(e, metrics))
        except EventError as err:
            raise ServiceError(
                f"{where}: event {i} {err}: nothing of that page was stored",
                hint="The earlier pages are stored; run the pull again once the API's data is fixed.",
            ) from None
    return rows


class EventsApi:
    """The token and events endpoints on one HTTP client."""

    def __init__(
        self,
        settings: EngagementSettings,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.secret = settings.client_secret.get_secret_value()
        register_secret(self.secret)
        self.sleep, self.clock = sleep, clock
        self.http = httpx.Client(transport=transport, timeout=settings.timeout, follow_redirects=False)
        self.host = _origin(settings.api_url)
        self._token: str | None = None
        self._expires = 0.0

    def __enter__(self) -> EventsApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    # --- the token ------------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None or self.clock() >= self._expires:
            self._renew()
        assert self._token is not None
        return self._token

    def _renew(self) -> None:
        s = self.settings
        answer = self._send(
            "POST",
            s.token_url,
            "the token endpoint",
            auth=(s.client_id, self.secret),
            data={"grant_type": "client_credentials", "scope": s.scope},
        )
        if answer.status_code in (400, 401, 403):
            error = _oauth_error(answer)
            if answer.status_code != 400 or error in ("invalid_client", "unauthorized_client", "invalid_grant", None):
                raise CredentialsError(
                    f"the token endpoint rejected the client credentials (HTTP {answer.status_code})",
                    hint=CREDENTIALS_HINT,
                )
            raise ServiceError(
                f"the token endpoint refused the request: {error}",
                hint="Check engagements.scope and engagements.token_url.",
            )
        if answer.status_code != 200:
            raise ServiceError(
                f"the token endpoint answered HTTP {answer.status_code}",
                hint=f"Check engagements.token_url ({s.token_url}).",
            )
        body = self._json(answer, "the token endpoint")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ServiceError(
                "the token endpoint's answer has no access_token", hint=f"Check engagements.token_url ({s.token_url})."
            )
        register_secret(token)
        expires = body.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else 3600.0
        self._token = token
        self._expires = self.clock() + max(lifetime - TOKEN_MARGIN, lifetime / 2)

    # --- the events -----------------------------------------------------------------------

    def pages(self, metric: str, since: dt.date, until: dt.date, done: MetricPull) -> Iterator[list[Any]]:
        """Each page's ``data`` for one metric, following ``_links.next`` on the API's host only."""
        s = self.settings
        url: str | None = f"{s.api_url.rstrip('/')}/events"
        params: dict[str, Any] | None = {
            "filter[date_from]": since.isoformat(),
            "filter[date_to]": until.isoformat(),
            "filter[metric]": metric,
            "limit": s.page_size,
            "offset": 0,
        }
        number = 0
        seen: set[str] = set()
        while url is not None:
            number += 1
            seen.add(url)
            page = self._page(url, params, f"{metric}, page {number}")
            data = page.get("data")
            if not isinstance(data, list):
                raise ServiceError(f'{metric}, page {number}: the answer has no "data" list: nothing of it was stored')
            if done.total is None and isinstance(page.get("total_count"), int):
                done.total = page["total_count"]
            following = _next(page)
            if following is not None:
                following = urljoin(url, following)
                if _origin(following) != self.host:
                    raise ServiceError(
                        f"{metric}, page {number}: refused to follow a next link to {_origin(following)}: only the"
                        f" configured API host ({self.host}) is followed; nothing was fetched from it",
                        hint="Check engagements.api_url; the pages before this one are stored.",
                    )
                if following in seen:
                    raise ServiceError(f"{metric}, page {number}: the next link points back at a page already read")
            yield data
            if not data:
                break  # an empty page is the end, whatever it links to
            url, params = following, None

    def _page(self, url: str, params: dict[str, Any] | None, where: str) -> dict[str, Any]:
        answer = self._send("GET", url, where, params=params, bearer=True)
        if answer.status_code == 401:  # the token expired early or was revoked: renew once
            self._token = None
            answer = self._send("GET", url, where, params=params, bearer=True)
            if answer.status_code == 401:
                raise CredentialsError(
                    f"{where}: the events endpoint refused a fresh token (HTTP 401)", hint=CREDENTIALS_HINT
                )
        if answer.status_code == 403:
            raise CredentialsError(f"{where}: the events endpoint refused access (HTTP 403)", hint=CREDENTIALS_HINT)
        if answer.status_code != 200:
            raise ServiceError(
                f"{where}: the events endpoint answered HTTP {answer.status_code}",
                hint=f"Check engagements.api_url ({self.settings.api_url}) and the dates asked for.",
            )
        body = self._json(answer, where)
        if not isinstance(body, dict):
            raise ServiceError(f"{where}: the answer is not a JSON object: nothing of it was stored")
        return body

    # --- one request, with retries ---------------------------------------------------------

    def _send(self, method: str, url: str, where: str, *, bearer: bool = False, **kwargs: Any) -> httpx.Response:
        """One request: transport errors and 5xx retried with backoff, 429 waited out a few times.
        The answer returned is neither of those."""
        s = self.settings
        failures = limited = 0
        while True:
            headers = {"Accept": "application/json"}
            if bearer:
                headers["Authorization"] = f"Bearer {self.token()}"
            try:
                answer = self.http.request(method, url, headers=headers, **kwargs)
                answer.read()
            except httpx.TransportError as e:
                failures += 1
                if failures > s.retries:
                    raise ServiceError(
                        f"{where}: no answer after {failures} tries ({type(e).__name__})",
                        hint="Check the network and engagements.token_url / api_url; run the pull again.",
                    ) from None
                self.sleep(s.backoff * 2 ** (failures - 1))
                continue
            if answer.status_code == 429:
                limited += 1
                if limited > RATE_LIMIT_TRIES:
                    raise QuotaError(
                        f"{where}: still rate-limited (HTTP 429) after {RATE_LIMIT_TRIES} waits",
                        hint="The stored pages are kept; run the pull again later (it resumes where it stopped).",
                    )
                self.sleep(_retry_after(answer.headers.get("retry-after"), s.backoff))
                continue
            if answer.status_code >= 500:
                failures += 1
                if failures > s.retries:
                    raise ServiceError(
                        f"{where}: HTTP {answer.status_code} after {failures} tries",
                        hint="Deployteq's API is failing; the stored pages are kept, run the pull again later.",
                    )
                self.sleep(s.backoff * 2 ** (failures - 1))
                continue
            return answer

    def _json(self, answer: httpx.Response, where: str) -> Any:
        if len(answer.content) > MAX_PAGE_BYTES:
            raise ServiceError(
                f"{where}: the answer is over {MAX_PAGE_BYTES // 2**20} MiB: lower engagements.page_size"
            )
        try:
            return orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            raise ServiceError(
                f"{where}: the answer is not JSON (HTTP {answer.status_code}): nothing of it was stored"
            ) from None


def _next(page: dict[str, Any]) -> str | None:
    """``_links.next``: a URL, or an object with ``href``; absent or null at the end."""
    links = page.get("_links")
    if not isinstance(links, dict):
        return None
    following = links.get("next")
    if isinstance(following, dict):
        following = following.get("href")
    if following is None or following == "":
        return None
    if not isinstance(following, str):
        raise ServiceError("a page's _links.next is neither a URL nor an object with href")
    return following


def _oauth_error(answer: httpx.Response) -> str | None:
    """An OAuth2 error answer's ``error`` code (a short token; anything else is not shown)."""
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) and error.replace("_", "").isalnum() and len(error) < 40 else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _retry_after(value: str | None, backoff: float) -> float:
    """Seconds to wait: ``Retry-After`` as seconds or an HTTP date, capped; else the backoff."""
    if value:
        value = value.strip()
        if value.isascii() and value.isdigit():
            return min(float(value), MAX_RETRY_AFTER)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return min(max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0), MAX_RETRY_AFTER)
    return max(backoff, 1.0)
