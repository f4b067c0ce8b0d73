"""The SOAP emulator's records: the campaigns ``--campaigns`` names, and customers with their
fields and options (what Deployteq keeps about a profile, as far as canopycli touches it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ..errors import UsageError
from .soap_wsdl import CUSTOMER_FIELDS
from .soap_xml import CustomerIn, add

FIRST_CUSTOMER_ID = 1001
# What a fresh record carries before anyone sets it (as Deployteq's replies show).
FRESH = {"optIn": "Y", "smsOptIn": "N", "gender": "UNKNOWN", "status": "SUSPECT", "mailStatus": "ACTIVE"}


def parse_campaigns(spec: str | Iterable[str]) -> dict[int, str]:
    """``"Password reset,Newsletter"`` -> ids 1, 2, ...; ``"12=Password reset"`` fixes an id."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    fixed: dict[int, str] = {}
    free: list[str] = []
    for item in items:
        head, sep, name = item.partition("=")
        if sep and head.strip().isdigit():
            if int(head) in fixed:
                raise UsageError(f"campaign id {int(head)} is given twice in --campaigns")
            fixed[int(head)] = name.strip()
        else:
            free.append(item)
    campaigns = dict(fixed)
    next_id = 1
    for name in free:
        while next_id in campaigns:
            next_id += 1
        campaigns[next_id] = name
    names = [n for n in campaigns.values()]
    if "" in names or len(set(names)) != len(names):
        raise UsageError("--campaigns takes distinct names, like 'Password reset,Newsletter' or '12=Password reset'")
    return dict(sorted(campaigns.items()))


@dataclass
class Customer:
    """A customer: the elements set on it (``id`` apart) and its options by name."""

    id: int
    fields: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)

    def merge(self, given: CustomerIn) -> None:
        for name, value in given.fields.items():
            if name == "id":
                continue
            if value is None:
                self.fields.pop(name, None)
            else:
                self.fields[name] = value
        for name, value in (given.options or {}).items():
            if value is None:
                self.options.pop(name, None)
            else:
                self.options[name] = value

    def render(self, parent: etree._Element) -> None:
        values = {**FRESH, **self.fields, "id": str(self.id)}
        for name in CUSTOMER_FIELDS:
            if name == "options":
                options = add(parent, "options")
                for key, value in self.options.items():
                    option = add(options, "CustomerOption")
                    add(option, "customerId", str(self.id))
                    add(option, "name", key)
                    add(option, "value", value)
            elif name in values:
                add(parent, name, values[name])

    def lookup_keys(self) -> tuple[str | None, str | None]:
        email = self.fields.get("emailAddress")
        return self.fields.get("externalId"), email.lower() if email else None


def describe(c: Customer) -> dict[str, Any]:
    fields = {k: v for k, v in c.fields.items() if k not in ("externalId", "emailAddress")}
    return {
        "externalId": c.fields.get("externalId"),
        "emailAddress": c.fields.get("emailAddress"),
        "fields": fields,
        "options": dict(c.options),
    }
