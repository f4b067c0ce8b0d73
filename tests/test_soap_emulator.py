"""The SOAP emulator, driven with raw httpx and envelopes built here with lxml (no client module):
its WSDL, each operation, each strict check, the faults it answers and the ones set on purpose."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from lxml import etree

from canopycli.emulators.soap import SOAP_PATH, SoapSandbox
from canopycli.emulators.soap_store import parse_campaigns
from canopycli.emulators.soap_wsdl import CUSTOMER_FIELDS, NAMESPACE, OPERATIONS
from canopycli.emulators.webhook import Sandbox
from canopycli.errors import UsageError

from .conftest import TOKEN

ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
QUERY = "?version=1.24&type=literal"
Args = list[tuple[str, Any]]


def envelope(op: str, args: Args, *, token: str = TOKEN, ns: str = NAMESPACE, uuid_first: bool = True) -> bytes:
    """``<Envelope><Body><op><uuid/>args…`` with each arg a text, or a list of (name, value) for a
    nested element (a Customer; ``options`` as a list of (name, value) pairs)."""
    env = etree.Element(f"{{{ENV}}}Envelope", nsmap={"soap-env": ENV, "ns0": NAMESPACE})
    el = etree.SubElement(etree.SubElement(env, f"{{{ENV}}}Body"), f"{{{ns}}}{op}")
    params = [("uuid", token), *args] if uuid_first else [*args, ("uuid", token)]
    _fill(el, params, ns)
    return etree.tostring(env)


def _fill(parent: etree._Element, items: Args, ns: str) -> None:
    for name, value in items:
        child = etree.SubElement(parent, f"{{{ns}}}{name}")
        if name == "options":
            for oname, ovalue in value:
                _fill(etree.SubElement(child, f"{{{ns}}}CustomerOption"), [("name", oname), ("value", ovalue)], ns)
        elif isinstance(value, list):
            _fill(child, value, ns)
        elif value is None:
            child.set(f"{{{XSI}}}nil", "true")
        else:
            child.text = str(value)


class Soap:
    """Posts envelopes to the emulator and reads the replies."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.http = httpx.Client(headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})

    def post(self, body: bytes, *, query: str = QUERY, **kw: Any) -> httpx.Response:
        return self.http.post(self.sb.soap_url + query, content=body, **kw)

    def call(self, op: str, args: Args | None = None, **kw: Any) -> etree._Element:
        """The ``msg`` of a successful call."""
        r = self.post(envelope(op, args or [], **kw))
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "text/xml; charset=utf-8"
        wrapper = etree.fromstring(r.content)[0][0]
        assert wrapper.tag == f"{{{NAMESPACE}}}{op}Response"
        code, msg = wrapper
        assert (code.tag, code.text, msg.tag) == (f"{{{NAMESPACE}}}code", "0", f"{{{NAMESPACE}}}msg")
        return msg

    def fault(self, body: bytes, **kw: Any) -> tuple[str, str]:
        r = self.post(body, **kw)
        assert r.status_code == 500 and r.headers["Content-Type"] == "text/xml; charset=utf-8", r.text
        f = etree.fromstring(r.content).find(f"{{{ENV}}}Body/{{{ENV}}}Fault")
        assert f is not None
        return f.findtext("faultcode") or "", f.findtext("faultstring") or ""


def text(el: etree._Element, name: str) -> str | None:
    return el.findtext(f"{{{NAMESPACE}}}{name}")


@pytest.fixture
def soap_for(sandbox: Callable[..., Sandbox]) -> Iterator[Callable[..., Soap]]:
    """A sandbox started with these keywords, and a client for it; all closed at the end."""
    clients: list[Soap] = []

    def start(**kwargs: Any) -> Soap:
        clients.append(Soap(sandbox(**kwargs)))
        return clients[-1]

    yield start
    for client in clients:
        client.http.close()


@pytest.fixture(scope="module")
def _shared() -> Iterator[Soap]:
    with Sandbox(TOKEN, port=0, campaigns="Password reset,12=Newsletter") as sb:  # stopping one takes 0.5 s
        client = Soap(sb)
        yield client
        client.http.close()


@pytest.fixture
def soap(_shared: Soap) -> Soap:
    """The module's sandbox, as new (its SOAP state reset); for tests that set no server faults."""
    _shared.sb.soap.reset()
    return _shared


def insert(soap: Soap, ext: str, *fields: tuple[str, Any]) -> int:
    msg = soap.call("customer_insert", [("customer", [*fields, ("externalId", ext)])])
    return int(text(msg, "id") or 0)


# -- the WSDL ------------------------------------------------------------------------------------


def test_the_wsdl_is_served_parseable_and_lists_the_operations(soap: Soap) -> None:
    r = soap.http.get(soap.sb.soap_url + "?wsdl")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(r.content)
    assert root.get("targetNamespace") == NAMESPACE
    ops = {o.get("name") for o in root.iterfind(f"{{{WSDL_NS}}}portType/{{{WSDL_NS}}}operation")}
    assert ops == set(OPERATIONS) and len(ops) == 8
    address = root.find(f".//{{{WSDL_NS}}}port/{{http://schemas.xmlsoap.org/wsdl/soap/}}address")
    assert address is not None and address.get("location") == soap.sb.soap_url + QUERY
    schema_el = root.find(f"{{{WSDL_NS}}}types/{{{XSD_NS}}}schema")
    assert schema_el is not None
    customer = schema_el.find(f"{{{XSD_NS}}}complexType[@name='Customer']")
    assert customer is not None
    assert [e.get("name") for e in customer.iter(f"{{{XSD_NS}}}element")] == list(CUSTOMER_FIELDS)
    # The schema is a real XSD, and the requests this file builds are valid against it.
    schema = etree.XMLSchema(schema_el)
    request = envelope("customer_insert", [("customer", [("firstname", "Ann"), ("options", [("x", "1")])])])
    assert schema.validate(etree.fromstring(request)[0][0]), schema.error_log
    assert soap.http.get(soap.sb.soap_url).status_code == 405


# -- the operations -----------------------------------------------------------------------------


def test_campaigns_are_options_with_the_id_as_value(soap: Soap) -> None:
    msg = soap.call("campaign_getAllExecutable")
    got = [(text(o, "type"), text(o, "name"), text(o, "value")) for o in msg]
    assert got == [("campaign", "Password reset", "1"), ("campaign", "Newsletter", "12")]


def test_insert_find_update_and_membership(soap: Soap) -> None:
    assert len(soap.call("customer_getByExternalId", [("externalId", "c-1")])) == 0  # an empty <msg/>
    msg = soap.call(
        "customer_insert",
        [("customer", [("optIn", "N"), ("firstname", "Ann"), ("emailAddress", "Ann@Example.org"),
                       ("externalId", "c-1"), ("options", [("plan", "gold"), ("city", "Leiden")])])],
    )  # fmt: skip
    cid = int(text(msg, "id") or 0)
    assert cid == 1001 and text(msg, "firstname") == "Ann" and text(msg, "gender") == "UNKNOWN"
    names = [etree.QName(e).localname for e in msg]
    assert names == sorted(names, key=CUSTOMER_FIELDS.index)  # the reply keeps the sequence order
    found = soap.call("customer_getByExternalId", [("externalId", "c-1")])
    assert [text(c, "id") for c in found] == ["1001"]
    by_mail = soap.call("customer_getByEmailAddress", [("emailAddress", "ann@example.org")])
    assert [text(c, "externalId") for c in by_mail] == ["c-1"]

    updated = soap.call(
        "customer_update",
        [("customer", [("id", cid), ("lastname", "Smit"), ("firstname", None), ("options", [("plan", "silver")])])],
    )
    assert text(updated, "lastname") == "Smit" and text(updated, "firstname") is None
    options = {text(o, "name"): text(o, "value") for o in updated.iterfind(f".//{{{NAMESPACE}}}CustomerOption")}
    assert options == {"plan": "silver", "city": "Leiden"}

    member = [("campaignId", 12), ("customerId", cid)]
    assert soap.call("campaign_hasMember", member).text == "false"
    assert soap.call("campaign_addMember", member).text == "true"
    assert soap.fault(envelope("campaign_addMember", member)) == ("107", "customer already member of campaign")
    assert soap.call("campaign_hasMember", member).text == "true"
    assert soap.sb.soap.members(12) == {cid}
    assert soap.call("campaign_removeMember", member).text == "true"
    assert soap.call("campaign_removeMember", member).text == "false"  # not a member: false, no fault

    state = soap.http.get(soap.sb.base_url + "/_sandbox/soap").json()
    assert state["customers"]["1001"] == {
        "externalId": "c-1",
        "emailAddress": "Ann@Example.org",
        "fields": {"optIn": "N", "lastname": "Smit", "createdBy": "SOAP user (int)", "createdAt": state["customers"]["1001"]["fields"]["createdAt"]},
        "options": {"plan": "silver", "city": "Leiden"},
    }  # fmt: skip
    assert state["campaigns"] == [{"id": 1, "name": "Password reset", "members": []}, {"id": 12, "name": "Newsletter", "members": []}]  # fmt: skip
    assert state["calls"]["campaign_addMember"] == 2 and state["faults"] == {"107": 1}


@pytest.mark.parametrize(
    ("op", "args", "text_"),
    [
        ("customer_update", [("customer", [("id", 999)])], "Customer not found"),
        ("customer_update", [("customer", [("firstname", "no id")])], "Customer not found"),
        ("campaign_addMember", [("campaignId", 5), ("customerId", 1001)], "Campaign not found"),
        ("campaign_addMember", [("campaignId", 1), ("customerId", 999)], "Customer not found"),
        ("campaign_removeMember", [("campaignId", 1), ("customerId", 999)], "Customer not found"),
        ("campaign_hasMember", [("campaignId", 7), ("customerId", 1001)], "Campaign not found"),
    ],
)
def test_not_found_is_fault_213(soap: Soap, op: str, args: Args, text_: str) -> None:
    insert(soap, "c-1")
    assert soap.fault(envelope(op, args)) == ("213", text_)


# -- strict checks ------------------------------------------------------------------------------

GOOD = envelope("campaign_addMember", [("campaignId", 1), ("customerId", 1001)])


@pytest.mark.parametrize(
    ("body", "query", "code", "fragment"),
    [
        (b"not xml <", QUERY, "101", "not well-formed XML"),
        (b"<a/>", QUERY, "101", "not a SOAP 1.1 Envelope"),
        (f'<e:Envelope xmlns:e="{ENV}"/>'.encode(), QUERY, "101", "has no Body"),
        (f'<e:Envelope xmlns:e="{ENV}"><e:Body/></e:Envelope>'.encode(), QUERY, "101", "exactly one operation"),
        (b'<!DOCTYPE x [<!ENTITY e "x">]><x>&e;</x>', QUERY, "101", "DTD"),
        (GOOD, "?version=1.24", "101", "type=literal"),
        (envelope("customer_delete", []), QUERY, "102", "unknown operation 'customer_delete'"),
        (envelope("campaign_addMember", [("campaignId", 1), ("customerId", 1)], ns="urn:x"), QUERY, "103", "namespace"),
        (envelope("campaign_addMember", [("campaignId", 1), ("customerId", 1)], uuid_first=False), QUERY, "103", "'uuid' is out of order"),
        (envelope("campaign_addMember", [("customerId", 1), ("campaignId", 1)]), QUERY, "103", "'campaignId' is out of order"),
        (envelope("campaign_addMember", [("campaignId", 1)]), QUERY, "103", "'customerId' is missing"),
        (envelope("campaign_addMember", [("campaignId", 1), ("campaignId", 1)]), QUERY, "103", "more than once"),
        (envelope("campaign_addMember", [("campaignId", "one"), ("customerId", 1)]), QUERY, "103", "campaignId must be an integer"),
        (envelope("customer_getByExternalId", [("externalId", "x"), ("extra", "y")]), QUERY, "103", "unknown element 'extra'"),
        (envelope("customer_insert", [("customer", [("externalId", "x"), ("firstname", "A")])]), QUERY, "103", "customer_insert.customer: element 'firstname' is out of order"),
        (envelope("customer_insert", [("customer", [("gender", "M")])]), QUERY, "103", "gender has an invalid value"),
        (envelope("customer_insert", [("customer", [("birthday", "1/2/1990")])]), QUERY, "103", "birthday"),
        (envelope("customer_insert", [("customer", [("colour", "red")])]), QUERY, "103", "unknown element 'colour'"),
        (envelope("customer_insert", [("customer", [("options", [("", "v")])])]), QUERY, "103", "name is missing"),
    ],
)  # fmt: skip
def test_each_strict_check_is_a_fault_naming_the_problem(
    soap: Soap, body: bytes, query: str, code: str, fragment: str
) -> None:
    got_code, got_text = soap.fault(body, query=query)
    assert got_code == code and fragment in got_text
    assert TOKEN not in got_text


def test_a_namespaced_child_out_of_namespace_and_wrong_content_type(soap: Soap) -> None:
    body = GOOD.replace(b"<ns0:campaignId>", b'<campaignId xmlns="urn:other">').replace(
        b"</ns0:campaignId>", b"</campaignId>"
    )
    assert soap.fault(body)[1].endswith("element 'campaignId' is not in the namespace " + NAMESPACE)
    code, text_ = soap.fault(GOOD, headers={"Content-Type": "application/soap+xml"})
    assert code == "101" and "text/xml" in text_


def test_a_wrong_uuid_is_the_authentication_fault_and_not_counted(soap_for: Callable[..., Soap]) -> None:
    soap = soap_for(soap_auth_fault_code=401)
    assert soap.fault(envelope("campaign_getAllExecutable", [], token="wrong")) == (
        "401",
        "Invalid uuid (authentication failed)",
    )
    assert soap.fault(envelope("campaign_getAllExecutable", [], token=""))[0] == "401"
    assert soap.sb.stats["requests"] == 0
    assert soap.sb.soap.snapshot()["calls"] == {"campaign_getAllExecutable": 2}
    default = soap_for()
    assert default.fault(envelope("campaign_getAllExecutable", [], token="wrong"))[0] == "150"


# -- faults on purpose -------------------------------------------------------------------------


def test_faults_for_chosen_customers_then_cleared(soap: Soap) -> None:
    ok, bad = insert(soap, "ok-1"), insert(soap, "bad-1")
    r = soap.http.post(
        soap.sb.base_url + "/_sandbox/soap/faults", json={"externalIds": ["bad-1"], "code": 900, "text": "boom"}
    )
    assert r.status_code == 200
    assert soap.fault(envelope("customer_getByExternalId", [("externalId", "bad-1")])) == ("900", "boom")
    assert soap.fault(envelope("campaign_addMember", [("campaignId", 1), ("customerId", bad)])) == ("900", "boom")
    assert soap.fault(envelope("customer_update", [("customer", [("id", bad)])])) == ("900", "boom")
    assert soap.fault(envelope("customer_insert", [("customer", [("externalId", "bad-1")])])) == ("900", "boom")
    soap.call("campaign_addMember", [("campaignId", 1), ("customerId", ok)])
    soap.http.post(soap.sb.base_url + "/_sandbox/soap/faults", json={})  # cleared
    soap.call("campaign_addMember", [("campaignId", 1), ("customerId", bad)])
    assert soap.sb.soap.members(1) == {ok, bad}
    soap.sb.soap.fail_customers(email_addresses=["X@example.org"], code=500, times=1)
    assert soap.fault(envelope("customer_getByEmailAddress", [("emailAddress", "x@example.org")]))[0] == "500"
    soap.call("customer_getByEmailAddress", [("emailAddress", "x@example.org")])  # only once


def test_the_servers_faults_apply_to_soap_calls(soap_for: Callable[..., Soap]) -> None:
    soap = soap_for(fail_first=1)
    r = soap.post(envelope("campaign_getAllExecutable", []))
    assert r.status_code == 500 and r.headers["Content-Type"] == "text/html" and b"<Fault" not in r.content
    soap.call("campaign_getAllExecutable")
    dropping = soap_for(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        dropping.post(envelope("campaign_getAllExecutable", []))


@pytest.mark.parametrize("mode", ["html", "not_xml", "empty_200", "out_of_order", "no_code"])
def test_bad_replies_for_the_next_calls(soap: Soap, mode: str) -> None:
    r = soap.http.post(soap.sb.base_url + "/_sandbox/soap/bad-replies", json={"mode": mode, "count": 2})
    assert r.status_code == 200
    body = envelope("customer_insert", [("customer", [("externalId", "e")])])
    for _ in range(2):
        r = soap.post(body)
        assert r.status_code == 200
        if mode == "html":
            assert r.headers["Content-Type"].startswith("text/html") and r.content.startswith(b"<!DOCTYPE html>")
        elif mode == "not_xml":
            with pytest.raises(etree.XMLSyntaxError):
                etree.fromstring(r.content)
        elif mode == "empty_200":
            assert r.content == b""
        else:
            names = [etree.QName(e).localname for e in etree.fromstring(r.content)[0][0]]
            assert names == (["msg", "code"] if mode == "out_of_order" else ["msg"])
    soap.call("campaign_getAllExecutable")  # then good again
    assert len(soap.sb.soap.customers()) == 2  # the calls were carried out, only their replies broken


def test_control_endpoints(soap: Soap) -> None:
    base = soap.sb.base_url + "/_sandbox/soap"
    r = soap.http.post(base + "/customers", json={"externalId": "pre", "options": {"a": "1"}, "campaigns": [12]})
    assert r.json() == {"id": 1001}
    assert soap.call("campaign_hasMember", [("campaignId", 12), ("customerId", 1001)]).text == "true"
    assert soap.http.post(base + "/customers", json={"campaigns": [99]}).status_code == 400
    assert soap.http.post(base + "/bad-replies", json={"mode": "nope"}).status_code == 400
    assert soap.http.post(base + "/faults", content=b"[1]").status_code == 400
    reset = soap.http.post(base + "/reset").json()
    assert reset["customers"] == {} and reset["calls"] == {} and [c["members"] for c in reset["campaigns"]] == [[], []]
    assert insert(soap, "again") == 1001


def test_campaign_specs() -> None:
    assert parse_campaigns("Password reset, Newsletter") == {1: "Password reset", 2: "Newsletter"}
    assert parse_campaigns("A,1=B,C") == {1: "B", 2: "A", 3: "C"}
    for bad in ("A,A", "1=A,1=B", "5="):
        with pytest.raises(UsageError):
            parse_campaigns(bad)


def test_loopback_only_and_stops(sandbox: Callable[..., Sandbox]) -> None:
    sb = sandbox()
    assert sb.soap_url == f"http://127.0.0.1:{sb.port}{SOAP_PATH}"
    assert isinstance(sb.soap, SoapSandbox)
    sb.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(sb.soap_url + "?wsdl", timeout=2)
    with pytest.raises(UsageError, match="loopback"):
        Sandbox(TOKEN, host="0.0.0.0")


def test_the_sandbox_command_serves_the_campaigns_it_is_given() -> None:
    args = ["sandbox", "--port", "0", "--campaigns", "12=Password reset,Newsletter", "--max-requests", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "canopycli", *args, "--duration", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    endpoint, soap_line = proc.stdout.readline(), proc.stdout.readline()
    assert endpoint.startswith("endpoint: http://127.0.0.1:")
    assert soap_line.endswith(f"{SOAP_PATH}  (WSDL: ?wsdl; campaigns: 1=Newsletter, 12=Password reset)\n")
    url = soap_line.split()[1]
    r = httpx.post(url + QUERY, content=envelope("campaign_getAllExecutable", []), headers={"Content-Type": "text/xml"})
    names = [o.findtext(f"{{{NAMESPACE}}}name") for o in etree.fromstring(r.content).iter(f"{{{NAMESPACE}}}Option")]
    assert names == ["Newsletter", "Password reset"]
    out, err = proc.communicate(timeout=30)  # --max-requests 1: the SOAP call counts
    assert proc.returncode == 0, err
    assert 'soap calls: {"campaign_getAllExecutable": 1}' in err and TOKEN not in out + err
