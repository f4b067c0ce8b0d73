"""The SOAP client for Deployteq's real-time calls: the campaign list and per-profile customer calls.

One ``SoapClient`` holds one httpx connection pool and the token; each method is one HTTP POST
of a document/literal envelope (``soapxml.envelope``) and returns what the reply means, or
raises one of the errors drawn in ``soapxml``'s docstring (re-exported here):

- HTTP 200 with a ``{code, msg}`` answer: the value; ``code != 0`` without a fault is a
  ``SoapFault`` with that code, because it is the far side's answer about this call (the report
  counts it by code like any fault), not a reply we failed to understand;
- a SOAP Fault (HTTP 500 usually, any status accepted): ``SoapFault``, or ``SoapCredentialsError``
  when its code is in ``auth_fault_codes`` or its text speaks of authentication, the uuid, the
  token, being not authorised or a login (Deployteq's auth fault code is not public);
- HTTP 401/403: ``SoapCredentialsError``;
- a timeout, a connection error, HTTP 408/429/5xx without a fault: ``SoapTransient``;
- anything else (not XML, an HTML page, an empty reply, elements out of order, a redirect, a
  reply over ``MAX_REPLY_BYTES``): ``SoapProtocolError``.

The client never retries: the delivery layer retries ``SoapTransient`` with the connector's
retries and backoff, and the commands that call ``campaigns()`` directly make one attempt and
say so if it fails. ``calls`` counts every HTTP request made, retries included.

The token travels only inside the XML body. Every message is one line, and any text taken from a
reply (a faultstring, an element name) is redacted of the token before it is put in one; no
message quotes a request or a reply body.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from lxml import etree

from .. import __version__
from . import soapxml
from .deliver import redact
from .soapxml import (
    MAX_REPLY_BYTES,
    NAMESPACE,
    Fault,
    SoapCredentialsError,
    SoapError,
    SoapFault,
    SoapProtocolError,
    SoapTransient,
)

__all__ = [
    "NAMESPACE",
    "PLATFORMS",
    "READ_ONLY_FIELDS",
    "Campaign",
    "CustomerData",
    "SoapClient",
    "SoapCredentialsError",
    "SoapError",
    "SoapFault",
    "SoapProtocolError",
    "SoapTransient",
    "customer_data",
    "soap_address",
]

PLATFORMS = {
    "secure": "https://secure.myclang.com/app/api/soap/public/index.php",
    "login": "https://login.myclang.com/app/api/soap/public/index.php",
}
NOT_FOUND = "213"  # record not found
ALREADY_MEMBER = "107"  # customer already member of the campaign
# Deployteq's authentication fault code is not public: a fault that speaks of it is one.
_AUTH_TEXT = re.compile(r"authenticat|uuid|token|not authori[sz]ed|login", re.IGNORECASE)
_NOT_MEMBER = re.compile(r"not (a )?member", re.IGNORECASE)
_RETRY_STATUS = frozenset({408, 429})

# Customer fields Deployteq fills itself (or that are lists): a param cannot set them.
READ_ONLY_FIELDS = frozenset(
    {"id", "createdAt", "createdBy", "modifiedAt", "modifiedBy", "mailStatus", "complaintCount"}
    | {"softBounceCount", "hardBounceCount", "accounts", "options", "imageUrl"}
)
_FIELD_BY_LOWER = {name.lower(): name for name in soapxml.CUSTOMER_FIELDS}


def soap_address(base: str, version: str) -> str:
    """The address calls are POSTed to: the base URL plus ``?version=V&type=literal`` (as the WSDL's own)."""
    return str(httpx.URL(base).copy_merge_params({"version": version, "type": "literal"}))


@dataclass(frozen=True)
class Campaign:
    """One executable campaign: ``id`` from the Option's value, ``name`` and ``type`` as listed."""

    id: int
    name: str
    type: str


@dataclass
class CustomerData:
    """What a profile sets on its Deployteq customer: Customer fields (name -> text) and options.

    The order of ``fields`` does not matter: ``soapxml.customer_element`` renders the WSDL's."""

    fields: dict[str, str] = field(default_factory=dict)
    options: list[tuple[str, str]] = field(default_factory=list)


def _wire_text(value: Any) -> str:
    """A param's value as the text Deployteq stores: booleans as 1/0 (as the ``yesno`` type sends
    them), whole floats without ".0", other numbers and text as they are."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (str, int)):
        return str(value)
    raise ValueError("holds a nested value (flatten it, or map one field of it under params:)")


def _same(field_name: str, a: str, b: str) -> bool:
    return a.lower() == b.lower() if field_name == "emailAddress" else a == b


def customer_data(
    params: Sequence[Mapping[str, Any]], *, external_id: str | None = None, email: str | None = None
) -> CustomerData:
    """Wire params (``{"name", "type", "value"}``, converted by the webhook mapping rules) -> CustomerData.

    A param named like a Customer element (case-insensitively: ``firstname``, ``optin``) fills it;
    any other is a ``CustomerOption``; a None value is left out. ``external_id``/``email`` set
    ``externalId``/``emailAddress``; a param filling one of those with another value, a param naming
    a read-only field (``READ_ONLY_FIELDS``: Deployteq sets them), two params filling one field, or
    a character XML cannot carry is a ValueError naming the param, so the caller rejects the row
    (the message never holds the value)."""
    data = CustomerData()
    if external_id is not None:
        data.fields["externalId"] = external_id
    if email is not None:
        data.fields["emailAddress"] = email
    identifiers = set(data.fields)
    for param in params:
        name = str(param["name"])
        element = _FIELD_BY_LOWER.get(name.lower())
        if element in READ_ONLY_FIELDS:
            raise ValueError(
                f"param {name!r} names the read-only Customer field {element} (rename it to send an option)"
            )
        if param.get("value") is None:
            continue
        try:
            text = soapxml.xml_text(_wire_text(param["value"]))
            soapxml.xml_text(name)
        except ValueError as e:
            raise ValueError(f"param {name!r} {e}") from None
        if element is None:
            data.options.append((name, text))
        elif element in identifiers:
            if not _same(element, data.fields[element], text):
                raise ValueError(f"param {name!r} fills {element}, which the identifier sets, with another value")
        elif element in data.fields:
            raise ValueError(f"param {name!r} fills {element}, which another param fills already")
        else:
            data.fields[element] = text
    return data


class SoapClient:
    """One token's calls to one SOAP address; thread-safe (one httpx pool of ``max_connections``).

    ``address`` is the full POST address (``soap_address``); ``transport`` an httpx transport for
    tests; ``auth_fault_codes`` fault codes that mean the token was refused."""

    def __init__(
        self,
        address: str,
        token: str,
        *,
        timeout: float = 30,
        transport: httpx.BaseTransport | None = None,
        auth_fault_codes: Sequence[int] = (),
        max_connections: int = 4,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._token = token
        self._auth_codes = frozenset(str(c) for c in auth_fault_codes)
        self._lock = threading.Lock()
        self._calls = 0
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": '""',
            "User-Agent": f"canopycli/{__version__}",
        }
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def calls(self) -> int:
        """HTTP requests made so far (each attempt counts, whether or not a reply came)."""
        return self._calls

    # -- the operations ---------------------------------------------------------------------

    def campaigns(self) -> list[Campaign]:
        """``campaign_getAllExecutable``: each Option's value is the id, its name the name (inferred)."""
        op = "campaign_getAllExecutable"
        msg = self._call(op, [])
        with self._reading(op):
            found = soapxml.options(msg)
            return [Campaign(soapxml.integer(o["value"], "a campaign's <value>"), o["name"], o["type"]) for o in found]

    def find(self, *, external_id: str | None = None, email: str | None = None) -> int | None:
        """The first matching customer's id, or None (an empty msg, or fault 213)."""
        if (external_id is None) == (email is None):
            raise ValueError("find takes exactly one of external_id and email")
        if external_id is not None:
            op, part = "customer_getByExternalId", ("externalId", external_id)
        else:
            op, part = "customer_getByEmailAddress", ("emailAddress", str(email))
        try:
            msg = self._call(op, [part])
        except SoapFault as e:
            if e.code == NOT_FOUND and not isinstance(e, SoapCredentialsError):
                return None
            raise
        with self._reading(op):
            found = soapxml.customers(msg)
            return soapxml.integer(str(found[0].get("id", "")), "the customer's <id>") if found else None

    def insert(self, data: CustomerData) -> int:
        """``customer_insert``; the new customer's id."""
        op = "customer_insert"
        msg = self._call(op, [("customer", soapxml.customer_element(data.fields, data.options))])
        with self._reading(op):
            if msg is None:
                raise SoapProtocolError("the reply has no customer in <msg>")
            return soapxml.integer(str(soapxml.customer(msg).get("id", "")), "the new customer's <id>")

    def update(self, customer_id: int, data: CustomerData) -> None:
        """``customer_update`` of customer ``customer_id``; fault 213 (no such customer) propagates."""
        customer = soapxml.customer_element(data.fields, data.options, customer_id=customer_id)
        self._call("customer_update", [("customer", customer)])

    def add_member(self, campaign_id: int, customer_id: int) -> None:
        """``campaign_addMember``; fault 107 (already a member) is success, ``false`` a SoapFault without code."""
        op = "campaign_addMember"
        try:
            msg = self._call(op, [("campaignId", campaign_id), ("customerId", customer_id)])
        except SoapFault as e:
            if e.code == ALREADY_MEMBER and not isinstance(e, SoapCredentialsError):
                return
            raise
        with self._reading(op):
            added = soapxml.boolean(msg)
        if added is False:
            raise SoapFault(None, "the server answered false (the customer was not added)", op)

    def remove_member(self, campaign_id: int, customer_id: int) -> None:
        """``campaign_removeMember``. Not a member is success (the desired state holds): an answer of
        ``false``, or a fault whose text says "not (a) member"."""
        op = "campaign_removeMember"
        try:
            msg = self._call(op, [("campaignId", campaign_id), ("customerId", customer_id)])
        except SoapFault as e:
            if _NOT_MEMBER.search(e.text) and not isinstance(e, SoapCredentialsError):
                return
            raise
        with self._reading(op):
            soapxml.boolean(msg)  # true, false or empty: each leaves the customer outside the campaign

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SoapClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one call -----------------------------------------------------------------------------

    def _call(self, op: str, parts: Sequence[tuple[str, str | int | etree._Element]]) -> etree._Element | None:
        """One POST of ``op``; the reply's msg (None: none), or the error the reply means."""
        body = soapxml.envelope(op, self._token, parts)
        with self._reading(op):
            status, content_type, data = self._post(op, body)
            return self._answer(op, status, content_type, data)

    def _post(self, op: str, body: bytes) -> tuple[int, str, bytes]:
        with self._lock:
            self._calls += 1
        try:
            with self._client.stream("POST", self.address, content=body) as reply:
                return reply.status_code, reply.headers.get("Content-Type", ""), self._read(reply)
        except httpx.TimeoutException as e:
            raise SoapTransient(f"{op}: no reply within {self.timeout:g} s (timeout)") from e
        except httpx.TransportError as e:
            raise SoapTransient(f"{op}: connection error ({type(e).__name__})") from e
        except httpx.DecodingError as e:
            raise SoapProtocolError("the reply's content encoding could not be decoded") from e

    @staticmethod
    def _read(reply: httpx.Response) -> bytes:
        """The reply's body, refused past ``MAX_REPLY_BYTES`` without reading the rest."""
        too_big = SoapProtocolError(f"the reply is larger than {MAX_REPLY_BYTES // 2**20} MB (refused)")
        length = reply.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > MAX_REPLY_BYTES:
            raise too_big
        chunks, size = [], 0
        for chunk in reply.iter_bytes():
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    def _answer(self, op: str, status: int, content_type: str, data: bytes) -> etree._Element | None:
        retryable = status >= 500 or status in _RETRY_STATUS
        if status in (401, 403):
            raise SoapCredentialsError(None, f"HTTP {status}: the token was refused", op)
        if 300 <= status < 400:
            raise SoapProtocolError(f"HTTP {status}: a redirect, not followed (check soap_url or platform)")
        if _looks_like_html(content_type, data):
            if retryable:
                raise SoapTransient(f"{op}: HTTP {status} with an HTML page, no SOAP fault")
            raise SoapProtocolError(f"HTTP {status} with an HTML page, not a SOAP reply (check soap_url or platform)")
        try:
            element = soapxml.body_element(data)
        except SoapProtocolError as e:
            if retryable:
                raise SoapTransient(f"{op}: HTTP {status} without a SOAP fault") from None
            raise SoapProtocolError(f"HTTP {status}: {e}") from None
        fault = soapxml.fault(element)
        if fault is not None:
            raise self._fault(op, fault)
        if retryable:
            raise SoapTransient(f"{op}: HTTP {status} without a SOAP fault")
        if not 200 <= status < 300:
            raise SoapProtocolError(f"HTTP {status} with an answer but no SOAP fault")
        code, msg = soapxml.response(element, op)
        if code != 0:
            raise self._fault(op, Fault(str(code), f"result code {code} without a SOAP fault"))
        return msg

    def _fault(self, op: str, fault: Fault) -> SoapFault:
        """A fault as an error: credentials when its code or its text says so (matched before redaction)."""
        text = soapxml.one_line(redact(fault.text, self._token))
        if fault.code in self._auth_codes or _AUTH_TEXT.search(fault.text):
            return SoapCredentialsError(fault.code, text, op)
        return SoapFault(fault.code, text, op)

    @contextmanager
    def _reading(self, op: str) -> Iterator[None]:
        """Names the operation in a SoapProtocolError raised while reading its reply, redacted."""
        try:
            yield
        except SoapProtocolError as e:
            raise SoapProtocolError(redact(f"{op}: {e}", self._token)) from None


def _looks_like_html(content_type: str, data: bytes) -> bool:
    head = data[:200].lstrip().lower()
    return "html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html"))
