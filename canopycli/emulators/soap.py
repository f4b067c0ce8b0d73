"""A local emulator of Deployteq's SOAP API (the operations canopycli uses), on loopback only.

Routes on a ``server.LoopbackServer`` (the webhook ``Sandbox`` mounts it on its own server: same
port, same token). ``GET SOAP_PATH?wsdl`` serves the emulator's WSDL (``soap_wsdl``);
``POST SOAP_PATH?version=V&type=literal`` (any version; ``type=literal`` is required) answers SOAP
1.1. Every request is read strictly (``soap_xml``): a broken one is a SOAP Fault (HTTP 500) naming
the problem; a wrong ``uuid`` is the authentication fault (code ``auth_fault_code``, text "Invalid
uuid (authentication failed)"), refused before it is counted, like the webhook's 401.

State is in memory: campaigns (from ``--campaigns``), customers (ids from 1001) with their fields
and options, and campaign members. Deployteq's semantics as far as public sources tell:
lookups answer code 0 with the matching ``Customer`` elements or an empty ``msg``; ``customer_update``
needs the ``id`` of an existing customer (else fault 213) and merges fields and options (by name; a
nil element clears one); ``campaign_addMember`` faults 213 for an unknown campaign or customer and
107 for a member already; ``campaign_removeMember`` of a non-member answers ``false``.

Faults on purpose: the server's (a 500 HTML page, dropped connections, slow answers, latency),
plus two of the emulator's own, for the next calls: a fault for chosen customers (by external id or
address; ``fail_customers``), and broken replies (``bad_replies``: ``html``, ``not_xml``,
``empty_200``, ``out_of_order``, ``no_code``). A broken reply replaces the reply of a call that was
carried out (the client cannot know whether it was).

Control endpoints (no token): ``GET /_sandbox/soap``, ``POST /_sandbox/soap/reset``,
``POST /_sandbox/soap/faults``, ``POST /_sandbox/soap/bad-replies``, ``POST /_sandbox/soap/customers``.
Addresses are kept in memory and returned by the control endpoint only; nothing is logged.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ..errors import UsageError
from .server import LoopbackServer, Request, Response
from .soap_store import FIRST_CUSTOMER_ID, Customer, describe, parse_campaigns
from .soap_wsdl import wsdl
from .soap_xml import (
    ALREADY_MEMBER,
    AUTH_FAILED,
    NOT_FOUND,
    XML,
    Call,
    CustomerIn,
    Fault,
    add,
    fault,
    parse_call,
    reply,
)

SOAP_PATH = "/app/api/soap/public/index.php"
DEFAULT_CAMPAIGNS = ("Password reset", "Order confirmation", "Newsletter")
BAD_REPLIES = ("html", "not_xml", "empty_200", "out_of_order", "no_code")
AUTH_TEXT = "Invalid uuid (authentication failed)"
_HTML_PAGE = b"<!DOCTYPE html><html><head><title>Maintenance</title></head><body><h1>Back soon</h1></body></html>"
_SERVER_ERROR = Response.raw(500, b"<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html")


@dataclass
class CustomerFaults:
    external_ids: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    code: int = 500
    text: str = "injected fault"
    times: int | None = None  # per customer; None: every call
    used: Counter[str] = field(default_factory=Counter)


class SoapSandbox:
    """The SOAP emulator's routes and state; ``snapshot()`` is what ``GET /_sandbox/soap`` answers."""

    def __init__(
        self,
        server: LoopbackServer,
        token: str,
        campaigns: str | Iterable[str] = DEFAULT_CAMPAIGNS,
        *,
        auth_fault_code: int = AUTH_FAILED,
    ) -> None:
        self.server = server
        self.token = token
        self.auth_fault_code = auth_fault_code
        self.campaigns = parse_campaigns(campaigns)
        self._lock = threading.Lock()
        self.reset()
        server.route("GET", SOAP_PATH, self._wsdl)
        server.api("POST", SOAP_PATH, self._respond, check=self._check, failure=_SERVER_ERROR)
        server.route("GET", "/_sandbox/soap", lambda _: Response(200, _jsonable(self.snapshot())))
        server.route("POST", "/_sandbox/soap/reset", self._control(lambda _: self.reset()))
        server.route("POST", "/_sandbox/soap/faults", self._control(self._set_faults))
        server.route("POST", "/_sandbox/soap/bad-replies", self._control(self._set_bad_replies))
        server.route("POST", "/_sandbox/soap/customers", self._control(self._add_customer))
        self._handlers: dict[str, Callable[[Call], Callable[[etree._Element], None]]] = {
            "campaign_getAllExecutable": self._campaigns,
            "customer_getByExternalId": self._find,
            "customer_getByEmailAddress": self._find,
            "customer_insert": self._insert,
            "customer_update": self._update,
            "campaign_addMember": self._add_member,
            "campaign_removeMember": self._remove_member,
            "campaign_hasMember": self._has_member,
        }

    @property
    def url(self) -> str:
        """The SOAP address without a query (what a config's ``soap_url`` holds)."""
        return self.server.base_url + SOAP_PATH

    # -- Python control ----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget customers, members, counts and the faults set on purpose; keep the campaigns."""
        with self._lock:
            self._customers: dict[int, Customer] = {}
            self._members: dict[int, set[int]] = {cid: set() for cid in self.campaigns}
            self._next_id = FIRST_CUSTOMER_ID
            self.calls: Counter[str] = Counter()
            self.faults: Counter[int] = Counter()
            self._customer_faults = CustomerFaults()
            self._bad: tuple[str, int, int] = ("", 0, 200)  # mode, calls left, status

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "campaigns": [
                    {"id": cid, "name": name, "members": sorted(self._members[cid])}
                    for cid, name in self.campaigns.items()
                ],
                "customers": {cid: describe(c) for cid, c in self._customers.items()},
                "calls": dict(self.calls),
                "faults": dict(self.faults),
            }

    def members(self, campaign_id: int) -> set[int]:
        with self._lock:
            return set(self._members[campaign_id])

    def customers(self) -> dict[int, dict[str, Any]]:
        return dict(self.snapshot()["customers"])

    def add_customer(
        self,
        *,
        external_id: str | None = None,
        email_address: str | None = None,
        fields: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        campaigns: Sequence[int] = (),
    ) -> int:
        """An existing customer, as if Deployteq had it before the test; its id."""
        given = CustomerIn(dict(fields or {}), dict(options or {}))
        if external_id is not None:
            given.fields["externalId"] = external_id
        if email_address is not None:
            given.fields["emailAddress"] = email_address
        with self._lock:
            unknown = [c for c in campaigns if c not in self._members]
            if unknown:
                raise UsageError(f"no campaign with id {unknown[0]} in the SOAP sandbox")
            customer = self._new_customer(given)
            for cid in campaigns:
                self._members[cid].add(customer.id)
        return customer.id

    def fail_customers(
        self,
        *,
        external_ids: Iterable[str] = (),
        email_addresses: Iterable[str] = (),
        code: int = 500,
        text: str = "injected fault",
        times: int | None = None,
    ) -> None:
        """Fault every call about these customers (``times`` calls each, or all); replaces the last setting."""
        with self._lock:
            self._customer_faults = CustomerFaults(
                set(external_ids), {e.lower() for e in email_addresses}, code, text, times
            )

    def bad_replies(self, mode: str, count: int = 1, *, status: int = 200) -> None:
        """Break the reply of the next ``count`` successful calls (``status`` for html and not_xml)."""
        if mode not in BAD_REPLIES:
            raise UsageError(f"unknown bad reply mode {mode!r}: one of {', '.join(BAD_REPLIES)}")
        with self._lock:
            self._bad = (mode, count, status)

    # -- a call: the steps on the server (see server.py) -------------------------------------

    def _wsdl(self, req: Request) -> Response:
        if "wsdl" not in req.query.lower().split("&"):
            return Response.raw(405, b"POST SOAP requests here, or GET ?wsdl for the WSDL\n", "text/plain")
        return Response.raw(200, wsdl(f"{self.url}?version=1.24&type=literal"), XML)

    def _check(self, req: Request) -> Response | None:
        """Before anything is counted: the request is read; a wrong uuid is refused here."""
        try:
            call = parse_call(req.body, req.headers.get("Content-Type"), req.query)
        except Fault as f:
            req.note["fault"] = f
            with self._lock:
                self.calls[f.operation or "(unreadable)"] += 1
            return None
        with self._lock:
            self.calls[call.operation] += 1
        if not hmac.compare_digest(call.uuid.encode(), self.token.encode()):
            return self._fault(Fault(self.auth_fault_code, AUTH_TEXT))
        req.note["call"] = call
        return None

    def _respond(self, req: Request) -> Response:
        problem: Fault | None = req.note.get("fault")
        if problem is not None:
            return self._fault(problem)
        call: Call = req.note["call"]
        with self._lock:
            try:
                self._injected_fault(call)
                fill = self._handlers[call.operation](call)
            except Fault as f:
                self.faults[f.code] += 1
                return Response.raw(500, fault(f.code, f.text), XML)
            mode, left, status = self._bad
            if left:
                self._bad = (mode, left - 1, status)
            else:
                mode = ""
            answer = reply(call.operation, fill, mode=mode or None)  # under the lock: it reads the state
        if mode == "html":
            return Response.raw(status, _HTML_PAGE, "text/html; charset=utf-8")
        if mode == "not_xml":
            return Response.raw(status, b"temporarily unavailable, try again later\n", XML)
        if mode == "empty_200":
            return Response.raw(200, b"", XML)
        return Response.raw(200, answer, XML)

    def _fault(self, f: Fault) -> Response:
        with self._lock:
            self.faults[f.code] += 1
        return Response.raw(500, fault(f.code, f.text), XML)

    def _injected_fault(self, call: Call) -> None:
        """The fault set by ``fail_customers`` if the call is about one of those customers; under the lock."""
        rule = self._customer_faults
        if not (rule.external_ids or rule.emails):
            return
        for key in self._keys_of(call):
            if key in rule.external_ids or key.lower() in rule.emails:
                if rule.times is not None and rule.used[key] >= rule.times:
                    return
                rule.used[key] += 1
                raise Fault(rule.code, rule.text)

    def _keys_of(self, call: Call) -> list[str]:
        args = call.args
        keys = [v for k, v in args.items() if k in ("externalId", "emailAddress") and isinstance(v, str)]
        given = args.get("customer")
        if isinstance(given, CustomerIn):
            keys += [v for k, v in given.fields.items() if k in ("externalId", "emailAddress") and v]
            known = self._customers.get(int(given.fields.get("id") or 0))
        else:
            customer_id = args.get("customerId")
            known = self._customers.get(customer_id) if isinstance(customer_id, int) else None
        if known is not None:
            keys += [k for k in known.lookup_keys() if k]
        return keys

    # -- the operations (under the lock); each returns what fills the reply's msg ------------

    def _campaigns(self, call: Call) -> Callable[[etree._Element], None]:
        campaigns = list(self.campaigns.items())

        def fill(msg: etree._Element) -> None:
            for cid, name in campaigns:
                option = add(msg, "Option")
                add(option, "type", "campaign")
                add(option, "name", name)
                add(option, "value", str(cid))

        return fill

    def _find(self, call: Call) -> Callable[[etree._Element], None]:
        if "externalId" in call.args:
            wanted, index = call.args["externalId"], 0
        else:
            wanted, index = str(call.args["emailAddress"]).lower(), 1
        found = [c for c in self._customers.values() if c.lookup_keys()[index] == wanted]

        def fill(msg: etree._Element) -> None:
            for customer in found:
                customer.render(add(msg, "Customer"))

        return fill

    def _insert(self, call: Call) -> Callable[[etree._Element], None]:
        given = call.args["customer"]
        assert isinstance(given, CustomerIn)
        return self._new_customer(given).render

    def _update(self, call: Call) -> Callable[[etree._Element], None]:
        given = call.args["customer"]
        assert isinstance(given, CustomerIn)
        customer = self._customers.get(int(given.fields.get("id") or 0))
        if customer is None:
            raise Fault(NOT_FOUND, "Customer not found")
        customer.merge(given)
        return customer.render

    def _membership(self, call: Call) -> tuple[set[int], int]:
        campaign_id, customer_id = call.args["campaignId"], call.args["customerId"]
        assert isinstance(campaign_id, int) and isinstance(customer_id, int)
        if campaign_id not in self._members:
            raise Fault(NOT_FOUND, "Campaign not found")
        if customer_id not in self._customers:
            raise Fault(NOT_FOUND, "Customer not found")
        return self._members[campaign_id], customer_id

    def _add_member(self, call: Call) -> Callable[[etree._Element], None]:
        members, customer_id = self._membership(call)
        if customer_id in members:
            raise Fault(ALREADY_MEMBER, "customer already member of campaign")
        members.add(customer_id)
        return _boolean(True)

    def _remove_member(self, call: Call) -> Callable[[etree._Element], None]:
        members, customer_id = self._membership(call)
        was = customer_id in members
        members.discard(customer_id)
        return _boolean(was)

    def _has_member(self, call: Call) -> Callable[[etree._Element], None]:
        members, customer_id = self._membership(call)
        return _boolean(customer_id in members)

    def _new_customer(self, given: CustomerIn) -> Customer:
        customer = Customer(self._next_id)
        self._next_id += 1
        customer.merge(given)
        customer.fields.setdefault("createdBy", "SOAP user (int)")
        customer.fields.setdefault("createdAt", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"))
        self._customers[customer.id] = customer
        return customer

    # -- control endpoints -------------------------------------------------------------------

    def _control(self, act: Callable[[dict[str, Any]], object]) -> Callable[[Request], Response]:
        def handle(req: Request) -> Response:
            try:
                data = json.loads(req.body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("the body must be a JSON object")
                result = act(data)
            except (ValueError, TypeError, KeyError, UsageError) as e:
                return Response(400, {"error": str(e)})
            return Response(200, result if isinstance(result, dict) else _jsonable(self.snapshot()))

        return handle

    def _set_faults(self, data: dict[str, Any]) -> None:
        self.fail_customers(
            external_ids=[str(x) for x in data.get("externalIds", [])],
            email_addresses=[str(x) for x in data.get("emailAddresses", [])],
            code=int(data.get("code", 500)),
            text=str(data.get("text", "injected fault")),
            times=None if data.get("times") is None else int(data["times"]),
        )

    def _set_bad_replies(self, data: dict[str, Any]) -> None:
        self.bad_replies(str(data["mode"]), int(data.get("count", 1)), status=int(data.get("status", 200)))

    def _add_customer(self, data: dict[str, Any]) -> dict[str, Any]:
        new_id = self.add_customer(
            external_id=data.get("externalId"),
            email_address=data.get("emailAddress"),
            fields={str(k): str(v) for k, v in (data.get("fields") or {}).items()},
            options={str(k): str(v) for k, v in (data.get("options") or {}).items()},
            campaigns=[int(c) for c in data.get("campaigns", [])],
        )
        return {"id": new_id}


def _boolean(value: bool) -> Callable[[etree._Element], None]:
    def fill(msg: etree._Element) -> None:
        msg.text = "true" if value else "false"

    return fill


def _jsonable(snapshot: dict[str, Any]) -> dict[str, Any]:
    """JSON object keys are strings: customer ids and fault codes become "1001", "213"."""
    return json.loads(json.dumps(snapshot))
