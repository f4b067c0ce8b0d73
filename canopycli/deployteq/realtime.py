"""Real time over SOAP: one profile a "batch", delivered by a few SOAP calls (a ``deliver.Transport``).

The shared machinery (journal, retries, concurrency, quota, report) sees batches of one profile:
the journal then keeps per-profile state, and ``retry`` resends only the profiles that failed.
``ProfileEncoder`` builds them (body: the webhook's customer object, the identifier hashed for
``identifier: email``; the address itself stays in this process, ``PLAIN``); ``SoapTransport``
delivers one:

- NEW: find the customer (external id, or email address), insert it if absent, else update its
  fields and options; then add it to the segment's campaign (already a member: success);
- MODIFIED: find and update, or insert (update if found, else create), no campaign change;
- REMOVED: find and remove from the campaign; a customer that does not exist is ``not_found``
  (success: the desired state holds).

Deployteq customer ids learned are remembered (``CustomerMemory``, in the state folder, keyed by
the SOAP address and the hashed identifier), so a repeat push needs no lookup: 2 calls a profile.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..model import Batch, Profile, Reject
from .deliver import Kind, Verdict
from .soap import (
    CustomerData,
    SoapClient,
    SoapCredentialsError,
    SoapError,
    SoapFault,
    SoapTransient,
    customer_data,
)
from .webhook import BATCH_NAMESPACE

# identifier: email: uuid -> the address, for the request only (never journaled or reported)
PLAIN: dict[str, str] = {}
_PLAIN_LOCK = threading.Lock()
NOT_FOUND = "customer not found: nothing to remove"


def email_hash(address: str) -> str:
    return hashlib.sha256(address.encode()).hexdigest()


class ProfileEncoder:
    """One batch per profile; its uuid is derived from the address, segment and content, as the
    webhook's are, so a resend carries the same uuid."""

    def __init__(self, endpoint: str, segment_name: str) -> None:
        self._prefix = f"{endpoint}\x00{segment_name}\x00"

    def encode(self, profiles: list[Profile], first_index: int) -> tuple[list[Batch], list[Reject]]:
        out: list[Batch] = []
        for i, p in enumerate(profiles):
            obj: dict[str, Any] = (
                dict(p.customer) if isinstance(p.customer, dict) else orjson.loads(orjson.dumps(p.customer))
            )
            plain = obj.pop("emailAddress", None)
            body = orjson.dumps(obj)
            u = str(uuidlib.uuid5(BATCH_NAMESPACE, self._prefix + hashlib.sha256(body).hexdigest()))
            if plain is not None:
                with _PLAIN_LOCK:
                    PLAIN[u] = plain
            out.append(Batch(first_index + i, u, body, [p.customer_id], [p.line], int(p.line == 0), [p.digest]))
        return out, []


class CustomerMemory:
    """Deployteq customer ids by (SOAP address, hashed identifier), in the state folder's journal.
    A cache: losing it costs a lookup. One connection shared by the delivery threads, behind a lock."""

    def __init__(self, journal: Path, address: str) -> None:
        self.address = address
        self._db = sqlite3.connect(journal, timeout=30, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()

    def get(self, key: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT customer_id FROM soap_customers WHERE address=? AND key=?", (self.address, key)
            ).fetchone()
        return None if row is None else int(row[0])

    def put(self, key: str, customer_id: int | None) -> None:
        with self._lock:
            if customer_id is None:
                self._db.execute("DELETE FROM soap_customers WHERE address=? AND key=?", (self.address, key))
            else:
                self._db.execute(
                    "INSERT INTO soap_customers (address, key, customer_id) VALUES (?,?,?)"
                    " ON CONFLICT(address, key) DO UPDATE SET customer_id=excluded.customer_id",
                    (self.address, key, customer_id),
                )

    def close(self) -> None:
        self._db.close()


@dataclass
class Outcome:
    """What delivering one profile came to (the transport's reply)."""

    kind: Kind
    error: str | None = None
    detail: str | None = None
    not_found: bool = False
    fault: str | None = None  # the fault code a failed profile ended with


@dataclass
class SoapTransport:
    """Delivers one-profile batches to one campaign through ``client``."""

    client: SoapClient
    campaign_id: int
    identifier: str  # customer_id | email
    memory: CustomerMemory | None = None
    calls_before: int = field(default=0)

    def encode(self, profiles: list[Profile], first_index: int) -> tuple[list[Batch], list[Reject]]:
        raise TypeError("SOAP batches are built by the stage's ProfileEncoder")

    @property
    def calls(self) -> int:
        return self.client.calls

    def attempt(self, batch: Batch) -> Outcome:
        c = orjson.loads(batch.body)
        key, status = c["customerId"], c["r42Status"]
        if self.identifier == "email":
            with _PLAIN_LOCK:
                plain = PLAIN.get(batch.uuid)
            if plain is None:
                return Outcome(Kind.FAILED, "no address", "the address is not in this process: retry from the file")
            ident: dict[str, str] = {"email": plain}
        else:
            ident = {"external_id": key}
        try:
            data = customer_data(c.get("params") or [], **ident)
        except ValueError as e:
            return Outcome(Kind.FAILED, "invalid", str(e))
        try:
            return self._deliver(key, status, ident, data)
        except SoapCredentialsError as e:
            return Outcome(Kind.STOP_CREDENTIALS, "credentials", str(e), fault=e.code)
        except SoapTransient as e:
            return Outcome(Kind.RETRY, "transient", str(e))
        except SoapFault as e:
            return Outcome(Kind.FAILED, f"fault {e.code or '?'}", str(e), fault=e.code or "?")
        except SoapError as e:
            return Outcome(Kind.FAILED, "bad reply", str(e), fault="reply")

    def _deliver(self, key: str, status: str, ident: dict[str, str], data: CustomerData) -> Outcome:
        cid = self._find(key, ident)
        if status == "REMOVED":
            if cid is None:
                return Outcome(Kind.DELIVERED, detail=NOT_FOUND, not_found=True)
            self.client.remove_member(self.campaign_id, cid)
            return Outcome(Kind.DELIVERED)
        cid = self._upsert(key, ident, data, cid)
        if status == "NEW":
            self.client.add_member(self.campaign_id, cid)
        return Outcome(Kind.DELIVERED)

    def _find(self, key: str, ident: dict[str, str]) -> int | None:
        remembered = self.memory.get(key) if self.memory is not None else None
        if remembered is not None:
            return remembered
        cid = self.client.find(**ident)
        if cid is not None and self.memory is not None:
            self.memory.put(key, cid)
        return cid

    def _upsert(self, key: str, ident: dict[str, str], data: CustomerData, cid: int | None) -> int:
        if cid is not None:
            try:
                self.client.update(cid, data)
                return cid
            except SoapFault as e:
                if e.code != "213" or self.memory is None:
                    raise
                self.memory.put(key, None)  # a remembered id Deployteq no longer has: look again
                cid = self.client.find(**ident)
                if cid is not None:
                    self.client.update(cid, data)
                    self.memory.put(key, cid)
                    return cid
        new = self.client.insert(data)
        if self.memory is not None:
            self.memory.put(key, new)
        return new

    def classify(self, reply: Outcome) -> Verdict:
        return Verdict(reply.kind, 200 if reply.kind == Kind.DELIVERED else None, reply.error, reply.detail)

    def close(self) -> None:
        self.client.close()
        if self.memory is not None:
            self.memory.close()
