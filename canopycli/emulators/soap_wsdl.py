"""What the SOAP emulator speaks: the operations it serves, the Customer sequence, and its WSDL.

The tables here are the single source of both the WSDL served at ``?wsdl`` and the emulator's
strict checks of a request, so the two cannot disagree. The WSDL is written for this project
(document/literal, one wrapped element per operation, ``soapAction=""``, a schema with
``elementFormDefault="qualified"``) and describes only the eight operations canopycli uses; the
names, parameter order and types follow Deployteq's public API (see the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

NAMESPACE = "https://secure.myclang.com/app/api/soap/public/index.php"  # the schema's targetNamespace

# The Customer complexType: every element optional and nillable, in this order (a strict sequence).
CUSTOMER_FIELDS: tuple[str, ...] = (
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
CUSTOMER_TYPES = {"complaintCount": "long", "id": "long", "softBounceCount": "long", "hardBounceCount": "long"}
CUSTOMER_TYPES |= {"accounts": "ArrayOfAccount", "options": "ArrayOfCustomerOption"}  # the rest: string
OPTION_FIELDS: tuple[str, ...] = ("identifier", "customerId", "name", "value")  # CustomerOption, in order
OPTION_TYPES = {"customerId": "long"}


@dataclass(frozen=True)
class Operation:
    name: str
    params: tuple[tuple[str, str], ...]  # (element, type) in sequence order; uuid first
    reply: str  # the type of ``msg`` in the response


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("campaign_getAllExecutable", (("uuid", "string"),), "ArrayOfOption"),
        Operation("customer_getByExternalId", (("uuid", "string"), ("externalId", "string")), "ArrayOfCustomer"),
        Operation("customer_getByEmailAddress", (("uuid", "string"), ("emailAddress", "string")), "ArrayOfCustomer"),
        Operation("customer_insert", (("uuid", "string"), ("customer", "Customer")), "Customer"),
        Operation("customer_update", (("uuid", "string"), ("customer", "Customer")), "Customer"),
        *(
            Operation(
                f"campaign_{verb}", (("uuid", "string"), ("campaignId", "long"), ("customerId", "long")), "boolean"
            )
            for verb in ("addMember", "removeMember", "hasMember")
        ),
    )
}


def _qualified(type_: str) -> str:
    return f"xsd:{type_}" if type_ in ("string", "long", "boolean", "integer", "anyType") else f"tns:{type_}"


def _element(name: str, type_: str, *, many: bool = False, nillable: bool = True) -> str:
    occurs = ' minOccurs="0" maxOccurs="unbounded"' if many else ' minOccurs="0"'
    nil = ' nillable="true"' if nillable and not many else ""
    return f'<xsd:element name="{name}" type="{_qualified(type_)}"{occurs}{nil}/>'


def _sequence_type(name: str, elements: list[str]) -> str:
    return f'<xsd:complexType name="{name}"><xsd:sequence>{"".join(elements)}</xsd:sequence></xsd:complexType>'


def _schema() -> str:
    types = [
        _sequence_type("Customer", [_element(f, CUSTOMER_TYPES.get(f, "string")) for f in CUSTOMER_FIELDS]),
        _sequence_type("CustomerOption", [_element(f, OPTION_TYPES.get(f, "string")) for f in OPTION_FIELDS]),
        _sequence_type("Option", [_element(f, "string") for f in ("type", "name", "value")]),
        _sequence_type("ArrayOfCustomerOption", [_element("CustomerOption", "CustomerOption", many=True)]),
        _sequence_type("ArrayOfCustomer", [_element("Customer", "Customer", many=True)]),
        _sequence_type("ArrayOfOption", [_element("Option", "Option", many=True)]),
        _sequence_type("ArrayOfAccount", [_element("Account", "anyType", many=True)]),  # accepted, not kept
    ]
    elements = []
    for op in OPERATIONS.values():
        params = "".join(f'<xsd:element name="{n}" type="{_qualified(t)}"/>' for n, t in op.params)
        elements.append(f'<xsd:element name="{op.name}"><xsd:complexType><xsd:sequence>{params}')
        elements.append("</xsd:sequence></xsd:complexType></xsd:element>")
        reply = f'<xsd:element name="code" type="xsd:integer"/><xsd:element name="msg" type="{_qualified(op.reply)}" nillable="true"/>'
        elements.append(f'<xsd:element name="{op.name}Response"><xsd:complexType><xsd:sequence>{reply}')
        elements.append("</xsd:sequence></xsd:complexType></xsd:element>")
    return (
        f'<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="{NAMESPACE}"'
        f' targetNamespace="{NAMESPACE}" elementFormDefault="qualified">'
        f"{''.join(types)}{''.join(elements)}</xsd:schema>"
    )


def wsdl(address: str) -> bytes:
    """The WSDL, with ``address`` (the full POST address, query included) as the port's location."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>']
    parts.append(
        '<wsdl:definitions name="clangAPI" xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"'
        ' xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
        f' xmlns:tns="{NAMESPACE}" targetNamespace="{NAMESPACE}">'
    )
    parts.append(f"<wsdl:types>{_schema()}</wsdl:types>")
    for op in OPERATIONS.values():
        for suffix in ("Request", "Response"):
            element = op.name + ("Response" if suffix == "Response" else "")
            parts.append(
                f'<wsdl:message name="{op.name}{suffix}"><wsdl:part name="parameters" element="tns:{element}"/></wsdl:message>'
            )
    parts.append('<wsdl:portType name="clangService">')
    for op in OPERATIONS.values():
        parts.append(
            f'<wsdl:operation name="{op.name}"><wsdl:input message="tns:{op.name}Request"/>'
            f'<wsdl:output message="tns:{op.name}Response"/></wsdl:operation>'
        )
    parts.append("</wsdl:portType>")
    parts.append('<wsdl:binding name="clangBinding" type="tns:clangService">')
    parts.append('<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>')
    literal = '<soap:body use="literal"/>'
    for op in OPERATIONS.values():
        parts.append(
            f'<wsdl:operation name="{op.name}"><soap:operation soapAction="" style="document"/>'
            f"<wsdl:input>{literal}</wsdl:input><wsdl:output>{literal}</wsdl:output></wsdl:operation>"
        )
    parts.append("</wsdl:binding>")
    parts.append(
        '<wsdl:service name="clangAPI"><wsdl:port name="clangPort" binding="tns:clangBinding">'
        f"<soap:address location={quoteattr(address)}/></wsdl:port></wsdl:service>"
    )
    parts.append("</wsdl:definitions>")
    return "\n".join(parts).encode()
