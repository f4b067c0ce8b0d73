"""The SOAP emulator's XML: a request read strictly, and the replies and faults it sends.

A request is parsed with a hardened lxml parser (no entities, no network, no DTD at all) and
checked against the tables in ``soap_wsdl``: a SOAP 1.1 ``Envelope`` with a ``Body`` whose one
child is a known operation in the schema's namespace, its parameters in sequence order (``uuid``
first), each present once, longs that are integers, a ``Customer`` whose elements follow the
Customer sequence and whose ``options`` are ``CustomerOption`` elements in order. Any problem is a
``Fault`` naming the element; the numeric codes are listed below (which are Deployteq's own and
which the emulator's is in the README).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from lxml import etree

from .soap_wsdl import CUSTOMER_FIELDS, CUSTOMER_TYPES, NAMESPACE, OPERATIONS, OPTION_FIELDS, OPTION_TYPES

ENVELOPE_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

# Fault codes. 105, 107 and 213 are Deployteq's (seen in public client code); the others are the
# emulator's own, as Deployteq's are not public.
MALFORMED = 101  # not XML, not a SOAP 1.1 envelope, wrong Content-Type or binding
UNKNOWN_OPERATION = 102
INVALID_PARAMETER = 103  # wrong namespace, order, a missing, repeated or unknown element, a bad value
SIZE = 105
ALREADY_MEMBER = 107
AUTH_FAILED = 150  # the default; configurable (--soap-auth-fault-code)
NOT_FOUND = 213

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, remove_comments=True, remove_pis=True
)
_RULES: dict[str, Callable[[str], bool]] = {
    "gender": lambda v: v in ("MAN", "WOMAN", "FAMILY", "UNKNOWN", "NONBINARY"),
    "optIn": lambda v: v in ("Y", "N"),
    "smsOptIn": lambda v: v in ("Y", "N"),
    "birthday": lambda v: re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) is not None,
}
_MAX_LENGTH = {"externalId": 100, "emailAddress": 80, "firstname": 40, "lastname": 100}


class Fault(Exception):
    def __init__(self, code: int, text: str, operation: str | None = None) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.operation = operation


@dataclass
class CustomerIn:
    """A Customer as sent: elements given (None: nil), and options by name (None: ``options`` absent)."""

    fields: dict[str, str | None] = field(default_factory=dict)
    options: dict[str, str | None] | None = None


@dataclass
class Call:
    operation: str
    uuid: str
    args: dict[str, str | int | CustomerIn]


def _name(el: etree._Element) -> str:
    return etree.QName(el).localname


def _children(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def _text(el: etree._Element) -> str | None:
    if el.get(f"{{{XSI_NS}}}nil") in ("true", "1"):
        return None
    return el.text or ""


def _in_order(parent: etree._Element, order: tuple[str, ...], where: str) -> list[etree._Element]:
    """``parent``'s children, checked: in the schema's namespace, known, once each, in ``order``."""
    last = -1
    kids = _children(parent)
    for kid in kids:
        name = _name(kid)
        if etree.QName(kid).namespace != NAMESPACE:
            raise Fault(INVALID_PARAMETER, f"{where}: element {name!r} is not in the namespace {NAMESPACE}")
        if name not in order:
            raise Fault(INVALID_PARAMETER, f"{where}: unknown element {name!r} (the sequence is {', '.join(order)})")
        at = order.index(name)
        if at == last:
            raise Fault(INVALID_PARAMETER, f"{where}: element {name!r} appears more than once")
        if at < last:
            raise Fault(
                INVALID_PARAMETER, f"{where}: element {name!r} is out of order (the sequence is {', '.join(order)})"
            )
        last = at
    return kids


def _long(el: etree._Element, where: str) -> int:
    text = _text(el)
    if text is None or not re.fullmatch(r"-?\d{1,18}", text.strip()):
        raise Fault(INVALID_PARAMETER, f"{where}: {_name(el)} must be an integer")
    return int(text)


def _simple(el: etree._Element, where: str) -> None:
    if _children(el):
        raise Fault(INVALID_PARAMETER, f"{where}: {_name(el)} must be text, not elements")


def _customer(el: etree._Element, where: str) -> CustomerIn:
    customer = CustomerIn()
    for kid in _in_order(el, CUSTOMER_FIELDS, where):
        name = _name(kid)
        kind = CUSTOMER_TYPES.get(name, "string")
        if kind == "ArrayOfCustomerOption":
            customer.options = _options(kid, f"{where}.options")
        elif kind == "ArrayOfAccount":
            continue  # accepted, not kept
        elif kind == "long":
            customer.fields[name] = str(_long(kid, where)) if _text(kid) is not None else None
        else:
            _simple(kid, where)
            value = _text(kid)
            if value is not None and value != "" and name in _RULES and not _RULES[name](value):
                raise Fault(INVALID_PARAMETER, f"{where}: {name} has an invalid value")
            if value is not None and len(value) > _MAX_LENGTH.get(name, 255):
                raise Fault(INVALID_PARAMETER, f"{where}: {name} is longer than {_MAX_LENGTH.get(name, 255)}")
            customer.fields[name] = value
    return customer


def _options(el: etree._Element, where: str) -> dict[str, str | None]:
    options: dict[str, str | None] = {}
    for i, kid in enumerate(_in_order_many(el, "CustomerOption", where)):
        parts = {_name(p): p for p in _in_order(kid, OPTION_FIELDS, f"{where}.CustomerOption[{i}]")}
        for name, part in parts.items():
            if OPTION_TYPES.get(name) == "long" and _text(part) is not None:
                _long(part, f"{where}.CustomerOption[{i}]")
            else:
                _simple(part, f"{where}.CustomerOption[{i}]")
        name_text = _text(parts["name"]) if "name" in parts else None
        if not name_text:
            raise Fault(INVALID_PARAMETER, f"{where}.CustomerOption[{i}]: name is missing")
        options[name_text] = _text(parts["value"]) if "value" in parts else None
    return options


def _in_order_many(el: etree._Element, item: str, where: str) -> list[etree._Element]:
    kids = _children(el)
    for kid in kids:
        if etree.QName(kid).namespace != NAMESPACE or _name(kid) != item:
            raise Fault(INVALID_PARAMETER, f"{where}: expected {item} elements in {NAMESPACE}, found {_name(kid)!r}")
    return kids


def _operation_element(body: bytes, content_type: str | None, query: str) -> etree._Element:
    if not (content_type or "").lower().startswith("text/xml"):
        raise Fault(MALFORMED, "SOAP 1.1 only: the Content-Type must be text/xml")
    if parse_qs(query).get("type") != ["literal"]:
        raise Fault(MALFORMED, "this address serves document/literal: add type=literal to the query")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        raise Fault(MALFORMED, "the request is not well-formed XML") from None
    if root.getroottree().docinfo.doctype:
        raise Fault(MALFORMED, "a SOAP message must not contain a DTD")
    if root.tag != f"{{{ENVELOPE_NS}}}Envelope":
        raise Fault(MALFORMED, "the request is not a SOAP 1.1 Envelope")
    bodies = [c for c in _children(root) if c.tag == f"{{{ENVELOPE_NS}}}Body"]
    if len(bodies) != 1:
        raise Fault(MALFORMED, "the SOAP Envelope has no Body")
    ops = _children(bodies[0])
    if len(ops) != 1:
        raise Fault(MALFORMED, "the SOAP Body must hold exactly one operation element")
    return ops[0]


def parse_call(body: bytes, content_type: str | None, query: str) -> Call:
    """The call in a request; ``Fault`` if it breaks any rule of the module docstring."""
    op_el = _operation_element(body, content_type, query)
    name = _name(op_el)
    op = OPERATIONS.get(name)
    if op is None:
        raise Fault(UNKNOWN_OPERATION, f"unknown operation {name!r}")
    if etree.QName(op_el).namespace != NAMESPACE:
        raise Fault(INVALID_PARAMETER, f"{name}: the operation element is not in the namespace {NAMESPACE}", name)
    order = tuple(n for n, _ in op.params)
    try:
        given = {_name(k): k for k in _in_order(op_el, order, name)}
        missing = [n for n in order if n not in given]
        if missing:
            raise Fault(
                INVALID_PARAMETER, f"{name}: element {missing[0]!r} is missing (the sequence is {', '.join(order)})"
            )
        args: dict[str, str | int | CustomerIn] = {}
        for pname, ptype in op.params[1:]:
            el = given[pname]
            if ptype == "long":
                args[pname] = _long(el, name)
            elif ptype == "Customer":
                args[pname] = _customer(el, f"{name}.customer")
            else:
                _simple(el, name)
                args[pname] = _text(el) or ""
        _simple(given["uuid"], name)
    except Fault as f:
        f.operation = name
        raise
    return Call(name, _text(given["uuid"]) or "", args)


# -- answers ---------------------------------------------------------------------------------

XML = "text/xml; charset=utf-8"
_NSMAP = {"SOAP-ENV": ENVELOPE_NS, "ns1": NAMESPACE}


def _envelope() -> tuple[etree._Element, etree._Element]:
    env = etree.Element(f"{{{ENVELOPE_NS}}}Envelope", nsmap=_NSMAP)
    return env, etree.SubElement(env, f"{{{ENVELOPE_NS}}}Body")


def add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    """A child element in the schema's namespace."""
    el = etree.SubElement(parent, f"{{{NAMESPACE}}}{name}")
    if text is not None:
        el.text = text
    return el


def reply(operation: str, fill: Callable[[etree._Element], None], *, mode: str | None = None) -> bytes:
    """``<opResponse><code>0</code><msg>…</msg>``; ``fill`` writes the msg. ``mode`` breaks it on
    purpose: ``out_of_order`` puts msg before code, ``no_code`` leaves code out."""
    env, body = _envelope()
    wrapper = add(body, f"{operation}Response")
    msg = etree.Element(f"{{{NAMESPACE}}}msg")
    fill(msg)
    code = etree.Element(f"{{{NAMESPACE}}}code")
    code.text = "0"
    order = {"out_of_order": [msg, code], "no_code": [msg]}.get(mode or "", [code, msg])
    wrapper.extend(order)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def fault(code: int, text: str) -> bytes:
    env, body = _envelope()
    f = etree.SubElement(body, f"{{{ENVELOPE_NS}}}Fault")
    etree.SubElement(f, "faultcode").text = str(code)
    etree.SubElement(f, "faultstring").text = text
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")
