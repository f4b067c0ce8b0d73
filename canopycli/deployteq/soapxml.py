"""Deployteq's SOAP dialect as XML: request envelopes out, ``{code, msg}`` replies and faults in.

The API is document/literal with one wrapped element per call (``customer_insert`` in,
``customer_insertResponse`` out) and a schema with ``elementFormDefault="qualified"``: every
element we send is in ``NAMESPACE``, in the order of the operation's ``sequence`` (``uuid``
first), and a Customer's children in the order of the WSDL's Customer sequence (``CUSTOMER_FIELDS``).
A strict server refuses any other order, so the order lives here, in one tuple.

Replies are read by a parser that never resolves entities, never fetches anything and keeps
libxml2's size limits; a reply with a DTD is refused outright (SOAP forbids one). They are
matched by local name (``code``, ``msg``), so a server's choice of prefix or of qualified
vs. unqualified children does not matter, but their order does: ``code`` first, then ``msg``.

The error tree of the SOAP client lives here, the lowest layer that raises it (``soap.py``
re-exports it)::

    SoapError                   base; str(e) never holds the token
     ├── SoapFault              the far side answered with a Fault (or a non-zero code): ``code``, ``text``
     │    └── SoapCredentialsError   the token was refused (auth fault code or text, HTTP 401/403)
     ├── SoapProtocolError      the reply is not a SOAP reply we understand (not XML, HTML, empty, out of order)
     └── SoapTransient          no usable reply, worth another attempt (timeouts, connection errors, 5xx without a fault)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

NAMESPACE = "https://secure.myclang.com/app/api/soap/public/index.php"  # the schema's targetNamespace (login too)
ENVELOPE_NS = "http://schemas.xmlsoap.org/soap/envelope/"  # SOAP 1.1, as the WSDL's binding
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_REPLY_BYTES = 5 * 1024 * 1024  # a reply larger than this is refused (find returns a handful of customers)

# The WSDL's Customer sequence (version 1.24), in order. Every element is optional.
CUSTOMER_FIELDS = (
    "complaintCount", "accounts", "smsOptIn", "optIn", "id", "title", "lastname", "firstname", "middlename",
    "prefix", "suffix", "initials", "gender", "maritalStatus", "birthday", "birthplace", "address", "address2",
    "address3", "addressNumber", "addressNumberSuffix", "zipCode", "poBox", "city", "state", "country",
    "companyName", "department", "alternateAddress", "alternateAddress2", "alternateAddress3",
    "alternateAddressNumber", "alternateAddressNumberSuffix", "alternateZipCode", "alternateCity",
    "alternateState", "alternateCountry", "contactMan", "jobTitle", "workPhone", "workExtension", "workMobile",
    "homePhone", "mobilePhone", "faxNumber", "emailAddress", "alternateEmailAddress", "emailType", "mailStatus",
    "softBounceCount", "hardBounceCount", "website", "imageUrl", "status", "externalId", "userName", "password",
    "createdBy", "createdAt", "modifiedBy", "modifiedAt", "options",
)  # fmt: skip
_FIELD_POSITION = {name: i for i, name in enumerate(CUSTOMER_FIELDS)}
# Characters XML 1.0 cannot carry at all (lxml would raise its own, vaguer ValueError).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DIGITS = re.compile("[0-9]+")
_INTEGER = re.compile("-?[0-9]{1,18}")  # ASCII digits (never \d), within a long
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True)


class SoapError(Exception):
    """Base of the SOAP client's errors. Messages are one line and never hold the token."""


class SoapFault(SoapError):
    """The far side refused the call: a SOAP Fault, or ``code != 0`` without one.

    ``code`` is the fault code's digits ("213"), or None when it has none ("SOAP-ENV:Server");
    ``text`` the faultstring (redacted, one line); ``operation`` the call that drew it."""

    def __init__(self, code: str | None, text: str, operation: str = "") -> None:
        self.code = code
        self.text = text
        self.operation = operation
        where = f"{operation}: " if operation else ""
        super().__init__(f"{where}SOAP fault {code or '(no code)'}: {text}")


class SoapCredentialsError(SoapFault):
    """The token was refused: stop the run (exit 4)."""


class SoapProtocolError(SoapError):
    """The reply is not a SOAP reply this client understands; another attempt will not help."""


class SoapTransient(SoapError):
    """No usable reply (timeout, connection error, 5xx without a fault): worth another attempt."""


@dataclass(frozen=True)
class Fault:
    """A parsed SOAP Fault, before ``soap.py`` decides what kind of error it is."""

    code: str | None
    text: str


# -- requests -------------------------------------------------------------------------------


def _q(local: str) -> str:
    return f"{{{NAMESPACE}}}{local}"


def xml_text(value: str | int) -> str:
    """The value as element text; ValueError (without the value) if XML 1.0 cannot carry it."""
    text = str(value)
    if _NOT_XML.search(text):
        raise ValueError("holds a character XML cannot carry (a control character or a lone surrogate)")
    return text


def customer_element(
    fields: Mapping[str, str], options: Sequence[tuple[str, str]], customer_id: int | None = None
) -> etree._Element:
    """A ``<customer>`` with its children in the WSDL's order; ``options`` as ``CustomerOption`` name/value.

    ``fields`` are Customer element names (not ``id`` or ``options``: those come from
    ``customer_id`` and ``options``); an unknown name is a ValueError, never sent out of order."""
    unknown = [name for name in fields if name not in _FIELD_POSITION or name in ("id", "options")]
    if unknown:
        raise ValueError(f"not a Customer field this client fills: {', '.join(sorted(unknown))}")
    values: dict[str, str | int] = dict(fields)
    if customer_id is not None:
        values["id"] = customer_id
    customer = etree.Element(_q("customer"))
    for name in sorted(values, key=_FIELD_POSITION.__getitem__):
        etree.SubElement(customer, _q(name)).text = xml_text(values[name])
    if options:
        wrapper = etree.SubElement(customer, _q("options"))
        for name, value in options:
            option = etree.SubElement(wrapper, _q("CustomerOption"))
            etree.SubElement(option, _q("name")).text = xml_text(name)
            etree.SubElement(option, _q("value")).text = xml_text(value)
    return customer


def envelope(operation: str, uuid: str, parts: Sequence[tuple[str, str | int | etree._Element]] = ()) -> bytes:
    """The request for ``operation``: ``uuid`` first, then ``parts`` in the order given (the WSDL's).

    A part is (element name, text) or a ready element (``customer_element``). Text is escaped by
    lxml; the body is UTF-8 with non-ASCII characters as they are."""
    root = etree.Element(f"{{{ENVELOPE_NS}}}Envelope", nsmap={"soap-env": ENVELOPE_NS, "ns0": NAMESPACE})
    body = etree.SubElement(root, f"{{{ENVELOPE_NS}}}Body")
    call = etree.SubElement(body, _q(operation))
    etree.SubElement(call, _q("uuid")).text = xml_text(uuid)
    for name, value in parts:
        if isinstance(value, etree._Element):
            call.append(value)
        else:
            etree.SubElement(call, _q(name)).text = xml_text(value)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


# -- replies --------------------------------------------------------------------------------


def _local(element: etree._Element) -> str:
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else "(not an element)"


def _named(name: str) -> str:
    """An element name from a reply, to quote in a one-line message: a long one is not quoted at all
    (cut, it could hold part of a token that ``soap.py``'s redaction would no longer recognise)."""
    return name if len(name) <= 40 else "an element with a long name"


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _children(element: etree._Element) -> list[etree._Element]:
    """Element children only (comments and processing instructions are not part of the data)."""
    return [c for c in element if isinstance(c.tag, str)]


def body_element(body: bytes) -> etree._Element:
    """The first element inside the reply's ``Body``; SoapProtocolError if the reply is not a SOAP envelope."""
    if not body.strip():
        raise SoapProtocolError("the reply is empty, not a SOAP envelope")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        raise SoapProtocolError("the reply is not well-formed XML") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise SoapProtocolError("the reply declares a DTD, which SOAP forbids (refused, nothing expanded)")
    if root.tag != f"{{{ENVELOPE_NS}}}Envelope":
        raise SoapProtocolError(f"the reply is XML but not a SOAP 1.1 envelope (root <{_named(_local(root))}>)")
    bodies = [c for c in _children(root) if c.tag == f"{{{ENVELOPE_NS}}}Body"]
    if len(bodies) != 1 or not _children(bodies[0]):
        raise SoapProtocolError("the SOAP envelope has no Body with an element in it")
    return _children(bodies[0])[0]


def fault(element: etree._Element) -> Fault | None:
    """The Fault in a reply's Body, or None when the Body holds an answer instead.

    A numeric faultcode is Deployteq's ("213"); a qualified one ("SOAP-ENV:Server.105") gives its
    digits if it has any, else no code."""
    if element.tag != f"{{{ENVELOPE_NS}}}Fault":
        return None
    parts = {_local(c): (c.text or "").strip() for c in _children(element)}
    digits = _DIGITS.findall(parts.get("faultcode", ""))
    text = " ".join(parts.get("faultstring", "").split())  # cut to length only once redacted (soap.py)
    return Fault(digits[-1] if digits else None, text or "(no faultstring)")


def _is_nil(element: etree._Element) -> bool:
    return element.get(f"{{{XSI_NS}}}nil") in ("true", "1")


def response(element: etree._Element, operation: str) -> tuple[int, etree._Element | None]:
    """(code, msg) of ``<operation>Response``; msg None when empty, nil or absent ("none").

    ``code`` must come first and ``msg`` next; anything else is a SoapProtocolError naming what
    was expected. ``msg`` absent after ``code`` is read as none (a server may leave out a null)."""
    expected = operation + "Response"
    if _local(element) != expected:
        raise SoapProtocolError(f"expected <{expected}> in the reply, got <{_named(_local(element))}>")
    children = _children(element)
    names = [_local(c) for c in children]
    if not names or names[0] != "code":
        got = f"<{_named(names[0])}>" if names else "nothing"
        raise SoapProtocolError(f"expected <code> first in <{expected}>, got {got}")
    if names[1:] not in ([], ["msg"]):
        raise SoapProtocolError(f"expected <msg> after <code> in <{expected}>, got <{_named(names[1])}>")
    code = integer((children[0].text or "").strip(), f"<code> in <{expected}>")
    msg = children[1] if len(children) == 2 else None
    if msg is None or _is_nil(msg) or (not _children(msg) and not (msg.text or "").strip()):
        return code, None
    return code, msg


# -- msg readers ----------------------------------------------------------------------------


def customer(element: etree._Element) -> dict[str, Any]:
    """A Customer's simple fields by name (text; "" when empty), ``id`` as text, ``options`` as name -> value."""
    record: dict[str, Any] = {}
    for child in _children(element):
        name = _local(child)
        if name == "options":
            record["options"] = {
                str(o.get("name", "")): str(o.get("value", "")) for o in (_pairs(c) for c in _children(child))
            }
        elif not _children(child):
            record[name] = (child.text or "").strip()
    return record


def _pairs(element: etree._Element) -> dict[str, str]:
    return {_local(c): (c.text or "").strip() for c in _children(element)}


def customers(msg: etree._Element | None) -> list[dict[str, Any]]:
    """An ArrayOfCustomer: one dict per ``<Customer>`` (see ``customer``); none for an empty msg."""
    if msg is None:
        return []
    return [customer(c) for c in _children(msg) if _local(c) == "Customer"]


def options(msg: etree._Element | None) -> list[dict[str, str]]:
    """An ArrayOfOption: one ``{"type", "name", "value"}`` per ``<Option>`` (missing parts are "")."""
    if msg is None:
        return []
    return [{"type": "", "name": "", "value": "", **_pairs(c)} for c in _children(msg) if _local(c) == "Option"]


def boolean(msg: etree._Element | None) -> bool | None:
    """An xsd:boolean msg: True/False, or None when the msg is empty."""
    if msg is None:
        return None
    text = (msg.text or "").strip()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise SoapProtocolError("<msg> is not a boolean")


def long(msg: etree._Element | None, what: str = "<msg>") -> int:
    """An xsd:long msg (or a customer's ``id``); SoapProtocolError if absent or not an integer."""
    text = ("" if msg is None else msg.text or "").strip()
    return integer(text, what)


def integer(text: str, what: str) -> int:
    if _INTEGER.fullmatch(text):
        return int(text)
    raise SoapProtocolError(f"{what} in the reply is not an integer")
