"""The far side a connector speaks: its encoder (profiles -> batches) and its transport.

``api: webhook`` (the default) sends batches of up to 500 profiles as JSON to the webhook
receiver; ``api: soap`` sends each profile by itself through Deployteq's SOAP API
(``realtime.py``). The machinery that journals and sends (``pipeline/drive.py``) asks this module
for both and never which one it has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ..config import Resolved
from .deliver import Transport
from .realtime import CustomerMemory, ProfileEncoder, SoapTransport
from .webhook import Encoder, WebhookTransport


def encoder_for(settings: dict[str, Any], endpoint: str) -> Encoder | ProfileEncoder:
    """The encoder of a run's settings: a rebuilt batch comes out identical."""
    if settings.get("api") == "soap":
        return ProfileEncoder(endpoint, settings["segment_name"])
    return Encoder(endpoint, settings["segment_name"], settings["customer_type"], settings["max_body_bytes"])


# (resolved, state folder's journal, httpx transport for tests, concurrency) -> a transport
FarSide = Callable[[Resolved, Path, httpx.BaseTransport | None, int], Transport[Any]]


def _webhook(
    resolved: Resolved, journal: Path, transport: httpx.BaseTransport | None, concurrency: int
) -> Transport[Any]:
    return WebhookTransport(resolved.connector, transport=transport, concurrency=concurrency)


def _soap(resolved: Resolved, journal: Path, transport: httpx.BaseTransport | None, concurrency: int) -> Transport[Any]:
    from .campaigns import campaign_list, client_for, resolve_campaign

    conn = resolved.connector
    client = client_for(conn, transport)
    try:
        campaign = resolve_campaign(resolved.segment, campaign_list(conn, journal.parent, client=client))
    except BaseException:
        client.close()
        raise
    return SoapTransport(client, campaign, conn.identifier, CustomerMemory(journal, conn.endpoint))


FAR_SIDES: dict[str, FarSide] = {"webhook": _webhook, "soap": _soap}


def far_side(
    resolved: Resolved, journal: Path, transport: httpx.BaseTransport | None, concurrency: int
) -> Transport[Any]:
    return FAR_SIDES[resolved.connector.api](resolved, journal, transport, concurrency)
