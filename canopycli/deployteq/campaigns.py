"""The campaigns of a SOAP connector: the executable campaign list (``campaign_getAllExecutable``),
cached 10 minutes in the journal, and a segment's ``campaign:`` (a name or an id) resolved to the
id profiles are added to.

The cache is keyed by the SOAP address and the SHA-256 of the token, never the token; a token
Deployteq rejects drops its entry. ``client_for`` is the one place this module builds a client
(tests put a fake there).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from ..config import Config, Connector, Segment, campaign_id
from ..errors import CanopyError, CredentialsError, ServiceError, UsageError
from ..store import Store
from .soap import Campaign, SoapClient, SoapCredentialsError, SoapError, SoapFault, SoapProtocolError

CACHE_SECONDS = 600.0
SEE_ALL = "canopycli campaigns"


def client_for(connector: Connector, transport: httpx.BaseTransport | None = None) -> SoapClient:
    """A SOAP client for ``connector`` (its address, token, timeout and auth fault codes)."""
    return SoapClient(
        connector.endpoint,
        connector.token.get_secret_value(),
        timeout=connector.timeout,
        transport=transport,
        auth_fault_codes=connector.auth_fault_codes,
        max_connections=connector.concurrency,
    )


def token_sha256(connector: Connector) -> str:
    return hashlib.sha256(connector.token.get_secret_value().encode()).hexdigest()


def fetch_campaigns(
    connector: Connector, transport: httpx.BaseTransport | None = None, client: SoapClient | None = None
) -> list[Campaign]:
    """One ``campaign_getAllExecutable``, no cache; SOAP errors become CLI errors (exit 4 or 1).
    ``client``: a run's own (its calls are counted with the run's), left open."""
    own = client is None
    client = client or client_for(connector, transport)
    where = connector.shown_endpoint
    try:
        return client.campaigns()
    except SoapCredentialsError as e:
        raise CredentialsError(
            f"Deployteq rejected the token of the SOAP connector at {where} ({e})",
            hint="Check `token:` (the SOAP token, not the webhook's) and `platform:` (secure or login: "
            "the host the token belongs to); a fault code that means a bad token goes in `auth_fault_codes`.",
        ) from None
    except SoapProtocolError as e:
        raise ServiceError(
            f"the campaign list from {where} is not a SOAP answer canopycli understands ({e})",
            hint="Check `soap_url`/`platform` and `soap_version` (the campaign list needs 1.22 or later).",
        ) from None
    except SoapFault as e:
        raise ServiceError(f"Deployteq answered the campaign list call at {where} with a fault ({e})") from None
    except SoapError as e:  # SoapTransient: the retries are spent
        raise ServiceError(
            f"cannot get the campaign list from {where} ({e})",
            hint="Try again in a moment; if it persists, check the network and `soap_url`/`platform`.",
        ) from None
    finally:
        if own:
            client.close()


@contextlib.contextmanager
def _opened(store_or_root: Store | Path) -> Iterator[Store]:
    if isinstance(store_or_root, Store):
        yield store_or_root
    else:
        with Store(store_or_root) as store:
            yield store


def campaign_list(
    connector: Connector,
    store_or_root: Store | Path,
    *,
    fresh: bool = False,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.time,
    client: SoapClient | None = None,
) -> list[Campaign]:
    """The executable campaigns of a SOAP connector: from the cache when fetched in the last 10
    minutes (unless ``fresh``), else from Deployteq, and then cached."""
    address, token_hash = connector.endpoint, token_sha256(connector)
    with _opened(store_or_root) as store:
        now = clock()
        if not fresh:
            cached = store.campaigns.get(address, token_hash, since=now - CACHE_SECONDS, until=now)
            if cached is not None:
                return [Campaign(id=int(c["id"]), name=str(c["name"]), type=str(c["type"])) for c in cached]
        try:
            campaigns = fetch_campaigns(connector, transport, client)
        except CredentialsError:
            store.campaigns.drop(address, token_hash)
            raise
        store.campaigns.put(address, token_hash, now, [asdict(c) for c in campaigns])
        return campaigns


def resolve_campaign(segment: Segment, campaigns: list[Campaign], where: str | None = None) -> int:
    """A segment's ``campaign:`` as the id of one of ``campaigns``; a UsageError (exit 2) naming
    close matches when it is not among them. ``where`` names the segment in messages."""
    who = f"{where}: " if where else ""
    if segment.campaign is None:
        raise UsageError(f"{who}no campaign: a SOAP segment names one (campaign: NAME or ID)", hint=see_all())
    number = campaign_id(segment.campaign)
    if number is not None:
        if any(c.id == number for c in campaigns):
            return number
        raise UsageError(
            f"{who}campaign id {number} is not among the {len(campaigns)} executable campaigns of this token",
            hint=see_all(),
        )
    name = str(segment.campaign)
    named = [c for c in campaigns if c.name == name]
    if len(named) == 1:
        return named[0].id
    if named:
        ids = ", ".join(str(c.id) for c in named)
        raise UsageError(f"{who}{len(named)} campaigns are named {name!r} (ids {ids})", hint="Give the id instead.")
    raise UsageError(f"{who}no executable campaign is named {name!r}", hint=see_all(close_matches(name, campaigns)))


def close_matches(name: str, campaigns: list[Campaign], n: int = 3) -> list[Campaign]:
    """The campaigns whose names are closest to ``name``: same letters in another case first."""
    folded = name.casefold()
    same = [c for c in campaigns if c.name.casefold() == folded]
    by_folded: dict[str, list[Campaign]] = {}
    for c in campaigns:
        by_folded.setdefault(c.name.casefold(), []).append(c)
    near = difflib.get_close_matches(folded, list(by_folded), n=n, cutoff=0.6)
    out = same + [c for key in near for c in by_folded[key] if c not in same]
    return out[:n]


def see_all(matches: list[Campaign] | None = None) -> str:
    tail = f"See them all with: {SEE_ALL}"
    if not matches:
        return tail
    shown = ", ".join(f"{c.name!r} (id {c.id})" for c in matches)
    return f"Did you mean {shown}? {tail}"


# --- validate-config --online -----------------------------------------------------------------


@dataclass
class OnlineCheck:
    """What ``validate-config --online`` found: lines for people, and the problems."""

    lines: list[str] = field(default_factory=list)
    problems: list[CanopyError] = field(default_factory=list)

    def error(self) -> CanopyError | None:
        """One error for all the problems: exit 4 if a token was rejected, else 2 for a campaign, else 1."""
        if not self.problems:
            return None
        ranked = sorted(self.problems, key=lambda e: _RANK.get(type(e), len(_RANK)))
        if len(ranked) == 1:
            return ranked[0]
        listed = "\n".join("  " + str(e).replace("\n", "\n    ") for e in self.problems)
        combined = type(ranked[0])(f"the online check found {len(ranked)} problems:\n{listed}")
        combined.exit_code = ranked[0].exit_code
        return combined


_RANK = {CredentialsError: 0, UsageError: 1, ServiceError: 2}


def check_online(config: Config, transport: httpx.BaseTransport | None = None) -> OnlineCheck:
    """One campaign list per SOAP connector (no cache) and every SOAP segment's campaign resolved.
    Every problem is collected; webhook connectors are not called (the webhook has no cheap call)."""
    check = OnlineCheck()
    for name, connector in config.connectors.items():
        if not connector.is_soap:
            check.lines.append(f"connector {name}: not checked online (the webhook has no cheap call)")
            continue
        try:
            campaigns = fetch_campaigns(connector, transport)
        except (CredentialsError, ServiceError) as e:
            e.message = f"connector {name}: {e.message}"
            check.problems.append(e)
            continue
        check.lines.append(f"connector {name}: the token works; {len(campaigns)} executable campaigns")
        for key, segment in config.segments.items():
            if segment.connector != name:
                continue
            try:
                number = resolve_campaign(segment, campaigns, where=f"segment {key}")
            except UsageError as e:
                check.problems.append(e)
                continue
            check.lines.append(f"segment {key}: campaign {segment.campaign!r} is id {number}")
    return check
