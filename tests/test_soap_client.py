"""SOAP client unit tests: envelopes as exact XML, reply parsing, and what every kind of reply means.

httpx.MockTransport stands in for Deployteq here; the end-to-end tests run the real client
against the SOAP emulator over loopback."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from canopycli.deployteq import soapxml
from canopycli.deployteq.soap import (
    NAMESPACE,
    PLATFORMS,
    Campaign,
    CustomerData,
    SoapClient,
    SoapCredentialsError,
    SoapError,
    SoapFault,
    SoapProtocolError,
    SoapTransient,
    customer_data,
    soap_address,
)

from .conftest import TOKEN

ADDRESS = soap_address(PLATFORMS["secure"], "1.24")
ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
HEAD = (
    "<?xml version='1.0' encoding='utf-8'?>\n"
    f'<soap-env:Envelope xmlns:soap-env="{ENV_NS}" xmlns:ns0="{NAMESPACE}"><soap-env:Body>'
)
TAIL = "</soap-env:Body></soap-env:Envelope>"
UUID = f"<ns0:uuid>{TOKEN}</ns0:uuid>"

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def soap(inner: str, status: int = 200, **kw: Any) -> httpx.Response:
    """A reply as Deployteq's PHP SoapServer writes one (its own prefixes, unqualified Fault parts)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV_NS}" xmlns:ns1="{NAMESPACE}">'
        f"<SOAP-ENV:Body>{inner}</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    return httpx.Response(status, content=body.encode(), headers={"Content-Type": "text/xml; charset=utf-8"}, **kw)


def answer(op: str, msg: str = "<ns1:msg/>", code: str = "0") -> httpx.Response:
    return soap(f"<ns1:{op}Response><ns1:code>{code}</ns1:code>{msg}</ns1:{op}Response>")


def fault(code: str, text: str, status: int = 500) -> httpx.Response:
    return soap(
        f"<SOAP-ENV:Fault><faultcode>{code}</faultcode><faultstring>{text}</faultstring></SOAP-ENV:Fault>", status
    )


def fields_xml(cid: int, ext: str = "ext-1", options: str = "") -> str:
    """A Customer's children: ``msg`` of customer_insert/update is a Customer (no wrapper element)."""
    return (
        f"<ns1:optIn>Y</ns1:optIn><ns1:id>{cid}</ns1:id><ns1:firstname>Ann</ns1:firstname>"
        f"<ns1:externalId>{ext}</ns1:externalId><ns1:options>{options}</ns1:options>"
    )


def customer_xml(cid: int, ext: str = "ext-1", options: str = "") -> str:
    """One ``<Customer>`` of an ArrayOfCustomer."""
    return f"<ns1:Customer>{fields_xml(cid, ext, options)}</ns1:Customer>"


class Script:
    """Answers each request with the next answer (a reply, an exception to raise, or a function)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        a = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(a, Exception):
            raise a
        return a(request) if callable(a) else a

    def body(self, i: int = -1) -> str:
        return self.seen[i].content.decode()


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[SoapClient, Script]]]:
    clients: list[SoapClient] = []

    def start(*answers: Answer, **kw: Any) -> tuple[SoapClient, Script]:
        script = Script(*answers)
        client = SoapClient(ADDRESS, TOKEN, transport=httpx.MockTransport(script), **kw)
        clients.append(client)
        return client, script

    yield start
    for c in clients:
        c.close()


# -- addresses and headers ------------------------------------------------------------------


def test_soap_address_adds_the_version_and_literal() -> None:
    assert ADDRESS == "https://secure.myclang.com/app/api/soap/public/index.php?version=1.24&type=literal"
    assert soap_address("http://127.0.0.1:8080/app/api/soap/public/index.php", "1.22").endswith(
        ":8080/app/api/soap/public/index.php?version=1.22&type=literal"
    )


def test_a_call_is_one_post_with_soap_headers(make: Any) -> None:
    client, script = make(answer("campaign_getAllExecutable"))
    client.campaigns()
    [req] = script.seen
    assert (req.method, str(req.url)) == ("POST", ADDRESS)
    assert req.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert req.headers["SOAPAction"] == '""'
    assert req.headers["User-Agent"].startswith("canopycli/")
    assert TOKEN not in str(req.url) and "authorization" not in req.headers


# -- envelopes: exact XML -------------------------------------------------------------------


def test_envelope_campaigns(make: Any) -> None:
    client, script = make(answer("campaign_getAllExecutable"))
    client.campaigns()
    assert script.body() == f"{HEAD}<ns0:campaign_getAllExecutable>{UUID}</ns0:campaign_getAllExecutable>{TAIL}"


@pytest.mark.parametrize(
    ("kw", "op", "part"),
    [
        ({"external_id": "ext-1"}, "customer_getByExternalId", "<ns0:externalId>ext-1</ns0:externalId>"),
        (
            {"email": "ann@example.nl"},
            "customer_getByEmailAddress",
            "<ns0:emailAddress>ann@example.nl</ns0:emailAddress>",
        ),
    ],
)
def test_envelope_find(make: Any, kw: dict[str, str], op: str, part: str) -> None:
    client, script = make(answer(op))
    client.find(**kw)
    assert script.body() == f"{HEAD}<ns0:{op}>{UUID}{part}</ns0:{op}>{TAIL}"


@pytest.mark.parametrize(
    ("method", "op"), [("add_member", "campaign_addMember"), ("remove_member", "campaign_removeMember")]
)
def test_envelope_membership(make: Any, method: str, op: str) -> None:
    client, script = make(answer(op, "<ns1:msg>true</ns1:msg>"))
    getattr(client, method)(12, 34)
    ids = "<ns0:campaignId>12</ns0:campaignId><ns0:customerId>34</ns0:customerId>"
    assert script.body() == f"{HEAD}<ns0:{op}>{UUID}{ids}</ns0:{op}>{TAIL}"


def test_envelope_insert_escapes_text_and_keeps_non_ascii(make: Any) -> None:
    client, script = make(answer("customer_insert", f"<ns1:msg>{fields_xml(7)}</ns1:msg>"))
    data = CustomerData({"lastname": "Øster <&> 'Ü'", "externalId": "e&1"}, [("note", "a<b & c>d"), ("städt", "Zoë")])
    assert client.insert(data) == 7
    customer = (
        "<ns0:customer><ns0:lastname>Øster &lt;&amp;&gt; 'Ü'</ns0:lastname><ns0:externalId>e&amp;1</ns0:externalId>"
        "<ns0:options><ns0:CustomerOption><ns0:name>note</ns0:name><ns0:value>a&lt;b &amp; c&gt;d</ns0:value>"
        "</ns0:CustomerOption><ns0:CustomerOption><ns0:name>städt</ns0:name><ns0:value>Zoë</ns0:value>"
        "</ns0:CustomerOption></ns0:options></ns0:customer>"
    )
    assert script.body() == f"{HEAD}<ns0:customer_insert>{UUID}{customer}</ns0:customer_insert>{TAIL}"
    assert script.seen[0].content.decode("utf-8").count("Zoë") == 1  # UTF-8, not character references


def test_envelope_update_puts_the_id_in_its_place(make: Any) -> None:
    client, script = make(answer("customer_update", f"<ns1:msg>{fields_xml(9)}</ns1:msg>"))
    client.update(9, CustomerData({"firstname": "Ann", "optIn": "Y", "externalId": "x"}))
    customer = (
        "<ns0:customer><ns0:optIn>Y</ns0:optIn><ns0:id>9</ns0:id><ns0:firstname>Ann</ns0:firstname>"
        "<ns0:externalId>x</ns0:externalId></ns0:customer>"
    )
    assert script.body() == f"{HEAD}<ns0:customer_update>{UUID}{customer}</ns0:customer_update>{TAIL}"


def test_the_token_is_escaped_inside_the_body() -> None:
    body = soapxml.envelope("customer_getAll", "a<b&c").decode()
    assert "<ns0:uuid>a&lt;b&amp;c</ns0:uuid>" in body


@given(st.permutations(["birthday", "gender", "externalId", "optIn", "lastname", "zipCode", "emailAddress", "city"]))
def test_customer_fields_follow_the_wsdl_order_whatever_the_param_order(names: list[str]) -> None:
    params = [{"name": n, "type": "string", "value": "v"} for n in names] + [{"name": "loyalty", "value": "gold"}]
    data = customer_data(params)
    element = soapxml.customer_element(data.fields, data.options)
    order = [soapxml.etree.QName(c).localname for c in element]
    wsdl = ["optIn", "lastname", "gender", "birthday", "zipCode", "city", "emailAddress", "externalId", "options"]
    assert order == wsdl


def test_an_unknown_or_reserved_field_is_never_rendered() -> None:
    for bad in ({"nickname": "x"}, {"id": "3"}, {"options": "x"}):
        with pytest.raises(ValueError, match="not a Customer field"):
            soapxml.customer_element(bad, [])


def test_text_xml_cannot_carry_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="control character") as e:
        soapxml.envelope("customer_getByExternalId", TOKEN, [("externalId", "a\x00secret")])
    assert "secret" not in str(e.value)


# -- params -> CustomerData -----------------------------------------------------------------


def test_customer_data_fills_fields_case_insensitively_and_the_rest_become_options() -> None:
    params = [
        {"name": "FirstName", "type": "string", "value": "Ann"},
        {"name": "optin", "type": "string", "value": "Y"},
        {"name": "gender", "type": "string", "value": "WOMAN"},
        {"name": "points", "type": "number", "value": 12},
        {"name": "ratio", "type": "number", "value": 0.5},
        {"name": "whole", "type": "number", "value": 3.0},
        {"name": "vip", "type": "boolean", "value": True},
        {"name": "churned", "type": "boolean", "value": False},
        {"name": "skipped", "type": "date", "value": None},
        {"name": "blank", "type": "string", "value": ""},
    ]
    data = customer_data(params, external_id="ext-1")
    assert data.fields == {"externalId": "ext-1", "firstname": "Ann", "optIn": "Y", "gender": "WOMAN"}
    assert data.options == [
        ("points", "12"),
        ("ratio", "0.5"),
        ("whole", "3"),
        ("vip", "1"),
        ("churned", "0"),
        ("blank", ""),
    ]


def test_customer_data_email_identifier() -> None:
    data = customer_data([{"name": "EmailAddress", "value": "Ann@Example.nl"}], email="ann@example.nl")
    assert data.fields == {"emailAddress": "ann@example.nl"}


@pytest.mark.parametrize(
    ("params", "kw", "match"),
    [
        ([{"name": "ID", "value": "5"}], {}, "'ID' names the read-only Customer field id"),
        ([{"name": "modifiedAt", "value": "x"}], {}, "read-only"),
        ([{"name": "options", "value": "x"}], {}, "read-only"),
        ([{"name": "externalid", "value": "other"}], {"external_id": "ext-1"}, "which the identifier sets"),
        ([{"name": "emailaddress", "value": "b@x.nl"}], {"email": "a@x.nl"}, "which the identifier sets"),
        ([{"name": "city", "value": "A"}, {"name": "City", "value": "B"}], {}, "which another param fills"),
        ([{"name": "note", "value": "se\x01cret"}], {}, "'note' holds a character XML cannot carry"),
        ([{"name": "note", "value": {"a": 1}}], {}, "'note' holds a nested value"),
    ],
)
def test_customer_data_refuses_what_cannot_be_sent(
    params: list[dict[str, Any]], kw: dict[str, str], match: str
) -> None:
    with pytest.raises(ValueError, match=match) as e:
        customer_data(params, **kw)
    assert "cret" not in str(e.value) and "b@x.nl" not in str(e.value)


# -- replies ----------------------------------------------------------------------------------


def test_find_returns_the_first_customers_id(make: Any) -> None:
    both = customer_xml(7) + customer_xml(8)
    client, _ = make(answer("customer_getByExternalId", f"<ns1:msg>{both}</ns1:msg>"))
    assert client.find(external_id="ext-1") == 7


@pytest.mark.parametrize(
    "msg",
    [
        "<ns1:msg/>",
        "<ns1:msg>\n  </ns1:msg>",
        '<ns1:msg xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>',
        "",  # msg left out
    ],
)
def test_find_nothing(make: Any, msg: str) -> None:
    client, _ = make(answer("customer_getByExternalId", msg))
    assert client.find(external_id="ext-1") is None


def test_find_not_found_fault_is_none(make: Any) -> None:
    client, _ = make(fault("213", "Customer not found"))
    assert client.find(email="a@b.nl") is None


def test_customers_reader_reads_fields_and_options() -> None:
    opts = "<ns1:CustomerOption><ns1:name>tier</ns1:name><ns1:value>gold</ns1:value></ns1:CustomerOption>"
    reply = answer("customer_getByExternalId", f"<ns1:msg>{customer_xml(7, options=opts)}{customer_xml(8)}</ns1:msg>")
    code, msg = soapxml.response(soapxml.body_element(reply.content), "customer_getByExternalId")
    found = soapxml.customers(msg)
    assert code == 0 and [c["id"] for c in found] == ["7", "8"]
    assert found[0] == {"optIn": "Y", "id": "7", "firstname": "Ann", "externalId": "ext-1", "options": {"tier": "gold"}}


def test_campaigns_reads_the_option_list(make: Any) -> None:
    options = (
        "<ns1:Option><ns1:type>MULTI</ns1:type><ns1:name>Password reset</ns1:name><ns1:value>12</ns1:value></ns1:Option>"
        "<ns1:Option><ns1:type>SINGLE</ns1:type><ns1:name>Nieuwsbrief &amp; meer</ns1:name><ns1:value>7</ns1:value></ns1:Option>"
    )
    client, _ = make(answer("campaign_getAllExecutable", f"<ns1:msg>{options}</ns1:msg>"))
    assert client.campaigns() == [Campaign(12, "Password reset", "MULTI"), Campaign(7, "Nieuwsbrief & meer", "SINGLE")]


def test_campaigns_empty(make: Any) -> None:
    client, _ = make(answer("campaign_getAllExecutable"))
    assert client.campaigns() == []


def test_campaign_value_that_is_not_an_id(make: Any) -> None:
    option = "<ns1:Option><ns1:type>T</ns1:type><ns1:name>A</ns1:name><ns1:value>abc</ns1:value></ns1:Option>"
    client, _ = make(answer("campaign_getAllExecutable", f"<ns1:msg>{option}</ns1:msg>"))
    with pytest.raises(
        SoapProtocolError, match=r"^campaign_getAllExecutable: a campaign's <value> in the reply is not"
    ):
        client.campaigns()


def test_insert_without_a_customer_in_the_reply(make: Any) -> None:
    client, _ = make(answer("customer_insert"))
    with pytest.raises(SoapProtocolError, match="customer_insert: the reply has no customer"):
        client.insert(CustomerData({"externalId": "x"}))


def test_add_member_already_a_member_is_success(make: Any) -> None:
    client, _ = make(fault("107", "customer already member of campaign"))
    client.add_member(1, 2)


def test_add_member_false_is_a_fault_without_code(make: Any) -> None:
    client, _ = make(answer("campaign_addMember", "<ns1:msg>false</ns1:msg>"))
    with pytest.raises(SoapFault) as e:
        client.add_member(1, 2)
    assert e.value.code is None and "answered false" in str(e.value)


@pytest.mark.parametrize(
    "reply",
    [
        answer("campaign_removeMember", "<ns1:msg>true</ns1:msg>"),
        answer("campaign_removeMember", "<ns1:msg>false</ns1:msg>"),
        fault("213", "Customer is not a member of this campaign"),
        fault("SOAP-ENV:Server", "customer not member"),
    ],
)
def test_remove_member_of_a_non_member_is_success(make: Any, reply: httpx.Response) -> None:
    client, _ = make(reply)
    client.remove_member(1, 2)


def test_update_of_an_unknown_customer_propagates_213(make: Any) -> None:
    client, _ = make(fault("213", "Customer not found"))
    with pytest.raises(SoapFault) as e:
        client.update(99, CustomerData())
    assert (type(e.value), e.value.code, e.value.operation) == (SoapFault, "213", "customer_update")
    assert str(e.value) == "customer_update: SOAP fault 213: Customer not found"


# -- what every kind of reply means --------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + f']><SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV_NS}"><SOAP-ENV:Body>&lol9;</SOAP-ENV:Body></SOAP-ENV:Envelope>'
)
SMALL_ENTITY = (
    f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY t "{TOKEN}">]><SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV_NS}" '
    f'xmlns:ns1="{NAMESPACE}"><SOAP-ENV:Body><ns1:customer_getByExternalIdResponse><ns1:code>0</ns1:code>'
    "<ns1:msg>&t;</ns1:msg></ns1:customer_getByExternalIdResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"
)
OP = "customer_getByExternalId"


def raw(status: int, body: bytes | str, content_type: str = "text/xml; charset=utf-8") -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, content=content, headers={"Content-Type": content_type})


def html(status: int) -> httpx.Response:
    page = f"<!DOCTYPE html><html><body>Error for uuid {TOKEN}</body></html>"
    return raw(status, page, "text/html")


ERRORS: list[tuple[str, Answer, type[SoapError], str]] = [
    ("fault 105", fault("105", "Size must be between 1 and 50"), SoapFault, "SOAP fault 105: Size must be"),
    ("fault on 200", fault("751", "Name missing", 200), SoapFault, "SOAP fault 751: Name missing"),
    ("fault, no code", fault("SOAP-ENV:Server", "Internal error"), SoapFault, r"SOAP fault \(no code\): Internal"),
    ("fault, qualified code", fault("SOAP-ENV:Client.751", "Bad name"), SoapFault, "SOAP fault 751: Bad name"),
    ("fault, empty", soap("<SOAP-ENV:Fault/>"), SoapFault, r"\(no code\): \(no faultstring\)"),
    ("auth code", fault("150", "Something else"), SoapCredentialsError, "SOAP fault 150"),
    ("auth text", fault("999", f"Invalid uuid {TOKEN}"), SoapCredentialsError, r"SOAP fault 999: Invalid uuid \*\*\*$"),
    ("auth text 2", fault("SOAP-ENV:Server", "Not authorized"), SoapCredentialsError, "Not authorized"),
    ("auth text 3", fault("3", "Authentication failed"), SoapCredentialsError, "Authentication failed"),
    ("code not 0", answer(OP, code="42"), SoapFault, "SOAP fault 42: result code 42 without a SOAP fault"),
    ("HTTP 401", raw(401, f"bad token {TOKEN}", "text/plain"), SoapCredentialsError, "HTTP 401: the token was refused"),
    ("HTTP 403", html(403), SoapCredentialsError, "HTTP 403"),
    (
        "HTTP 503",
        raw(503, "Service Unavailable", "text/plain"),
        SoapTransient,
        f"^{OP}: HTTP 503 without a SOAP fault$",
    ),
    ("HTTP 500 not XML", raw(500, f"PHP Fatal error {TOKEN}"), SoapTransient, "HTTP 500 without a SOAP fault"),
    ("HTTP 502 HTML", html(502), SoapTransient, "HTTP 502 with an HTML page"),
    ("HTTP 408", raw(408, ""), SoapTransient, "HTTP 408"),
    ("HTTP 500 answer", raw(500, answer(OP).content), SoapTransient, "HTTP 500 without a SOAP fault"),
    ("HTML 200", html(200), SoapProtocolError, f"^{OP}: HTTP 200 with an HTML page, not a SOAP reply"),
    ("HTML as XML", raw(200, f"<html><body>{TOKEN}</body></html>"), SoapProtocolError, "HTML page"),
    ("not XML", raw(200, f'{{"uuid": "{TOKEN}"}}', "application/json"), SoapProtocolError, "not well-formed XML"),
    ("empty 200", raw(200, ""), SoapProtocolError, f"^{OP}: HTTP 200: the reply is empty"),
    ("HTTP 404", raw(404, "Not Found", "text/plain"), SoapProtocolError, "HTTP 404: the reply is not well-formed"),
    ("redirect", httpx.Response(302, headers={"Location": "https://x/"}), SoapProtocolError, "HTTP 302: a redirect"),
    ("not SOAP", raw(200, f"<{TOKEN}/>"), SoapProtocolError, r"not a SOAP 1.1 envelope \(root <\*\*\*>\)"),
    (
        "SOAP 1.2",
        raw(200, '<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>'),
        SoapProtocolError,
        "not a SOAP 1.1 envelope",
    ),
    ("no body", soap(""), SoapProtocolError, "no Body with an element"),
    (
        "other response",
        answer("customer_insert"),
        SoapProtocolError,
        f"expected <{OP}Response> in the reply, got <customer_insertResponse>",
    ),
    ("token as element", soap(f"<ns1:{TOKEN}/>"), SoapProtocolError, r"got <\*\*\*>"),
    (
        "msg before code",
        soap(f"<ns1:{OP}Response><ns1:msg/><ns1:code>0</ns1:code></ns1:{OP}Response>"),
        SoapProtocolError,
        f"expected <code> first in <{OP}Response>, got <msg>",
    ),
    (
        "missing code",
        soap(f"<ns1:{OP}Response><ns1:msg/></ns1:{OP}Response>"),
        SoapProtocolError,
        "expected <code> first",
    ),
    ("nothing", soap(f"<ns1:{OP}Response/>"), SoapProtocolError, "got nothing"),
    (
        "extra element",
        soap(f"<ns1:{OP}Response><ns1:code>0</ns1:code><ns1:msg/><ns1:{TOKEN}/></ns1:{OP}Response>"),
        SoapProtocolError,
        r"expected <msg> after <code> .*got <msg>",
    ),
    (
        "element after code",
        soap(f"<ns1:{OP}Response><ns1:code>0</ns1:code><ns1:{TOKEN}/></ns1:{OP}Response>"),
        SoapProtocolError,
        r"expected <msg> after <code> in <customer_getByExternalIdResponse>, got <\*\*\*>",
    ),
    (
        "code not a number",
        answer(OP, code="zero"),
        SoapProtocolError,
        "<code> in <customer_getByExternalIdResponse> in the reply is not an integer",
    ),
    ("code not ASCII", answer(OP, code="٠"), SoapProtocolError, "is not an integer"),
    (
        "customer id missing",
        answer(OP, "<ns1:msg><ns1:Customer><ns1:firstname>A</ns1:firstname></ns1:Customer></ns1:msg>"),
        SoapProtocolError,
        "the customer's <id>",
    ),
    ("billion laughs", raw(200, BILLION_LAUGHS), SoapProtocolError, "(not well-formed XML|declares a DTD)"),
    ("entity declaration", raw(200, SMALL_ENTITY), SoapProtocolError, "declares a DTD, which SOAP forbids"),
    (
        "external DTD",
        raw(200, '<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd"><x/>'),
        SoapProtocolError,
        "declares a DTD",
    ),
    (
        "too big, declared",
        httpx.Response(200, headers={"Content-Length": str(6 * 2**20)}, content=b""),
        SoapProtocolError,
        "larger than 5 MB",
    ),
    ("too big, streamed", httpx.Response(200, content=iter([b"<" * 2**20] * 6)), SoapProtocolError, "larger than 5 MB"),
    ("timeout", httpx.ReadTimeout("timed out"), SoapTransient, f"^{OP}: no reply within 30 s \\(timeout\\)$"),
    ("connect error", httpx.ConnectError("refused"), SoapTransient, f"^{OP}: connection error \\(ConnectError\\)$"),
    ("remote closed", httpx.RemoteProtocolError("closed"), SoapTransient, "connection error"),
]


@pytest.mark.parametrize(("reply", "error", "match"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_what_a_reply_means(make: Any, reply: Answer, error: type[SoapError], match: str) -> None:
    client, script = make(reply, auth_fault_codes=[150])
    with pytest.raises(SoapError) as e:
        client.find(external_id="ext-1")
    assert type(e.value) is error
    message = str(e.value)
    assert TOKEN not in message and TOKEN[4:20] not in message
    assert "\n" not in message and message.startswith(OP + ": ")
    assert len(script.seen) == 1
    assert re.search(match, message), message


def test_a_fault_carries_its_parts(make: Any) -> None:
    client, _ = make(fault("105", f"Size must be between 1 and 50 ({TOKEN})"))
    with pytest.raises(SoapFault) as e:
        client.campaigns()
    assert (e.value.code, e.value.text, e.value.operation) == (
        "105",
        "Size must be between 1 and 50 (***)",
        "campaign_getAllExecutable",
    )


def test_a_long_faultstring_is_cut_after_redaction(make: Any) -> None:
    client, _ = make(fault("1", "x" * 290 + TOKEN + "y" * 500))
    with pytest.raises(SoapFault) as e:
        client.find(external_id="e")
    assert len(e.value.text) == 300 and TOKEN[:8] not in e.value.text and "***" in e.value.text


@pytest.mark.parametrize(
    ("reply", "method"),
    [(fault("107", "Invalid token"), "add_member"), (fault("213", "not a member, bad uuid"), "remove_member")],
)
def test_credentials_win_over_benign_codes(make: Any, reply: httpx.Response, method: str) -> None:
    client, _ = make(reply)
    with pytest.raises(SoapCredentialsError):
        getattr(client, method)(1, 2)


def test_find_with_credentials_fault_213_is_not_none(make: Any) -> None:
    client, _ = make(fault("213", "Unknown record"), auth_fault_codes=[213])
    with pytest.raises(SoapCredentialsError):
        client.find(external_id="e")


def test_find_takes_exactly_one_identifier(make: Any) -> None:
    client, script = make(answer(OP))
    for kw in ({}, {"external_id": "a", "email": "b@c.nl"}):
        with pytest.raises(ValueError, match="exactly one"):
            client.find(**kw)
    assert script.seen == [] and client.calls == 0


# -- calls ----------------------------------------------------------------------------------


def test_calls_counts_every_request_made_failed_ones_too(make: Any) -> None:
    client, _ = make(httpx.ConnectError("refused"), raw(503, ""), fault("213", "nf"), answer(OP))
    with pytest.raises(SoapTransient):
        client.find(external_id="e")
    with pytest.raises(SoapTransient):
        client.find(external_id="e")
    assert client.find(external_id="e") is None
    assert client.find(external_id="e") is None
    assert client.calls == 4


def test_calls_is_thread_safe(make: Any) -> None:
    client, _ = make(answer("campaign_addMember", "<ns1:msg>true</ns1:msg>"), max_connections=8)

    def work() -> None:
        for i in range(25):
            client.add_member(1, i)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.calls == 200


def test_the_client_never_retries(make: Any) -> None:
    client, script = make(raw(503, ""), answer("campaign_getAllExecutable"))
    with pytest.raises(SoapTransient):
        client.campaigns()
    assert len(script.seen) == 1 and client.calls == 1
