"""Realistic segment exports for the benchmark: messy emails, several params, some bad rows."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

FIRST = [
    "Alice",
    "Bram",
    "Chloé",
    "Daan",
    "Emma",
    "Finn",
    "Grace",
    "Hugo",
    "Iris",
    "Jan",
    "Kim",
    "Lotte",
    "Milan",
    "Noor",
]
CITIES = [
    "Amsterdam",
    "Rotterdam",
    "Utrecht",
    "Den Haag",
    "Eindhoven",
    "Groningen",
    "Leiden",
    "Zwolle",
    "Breda",
    "Delft",
]
GENDERS = ["m", "F", "Male", "female", "vrouw", "man", "x", "", "unknown"]
NEWS = ["yes", "no", "Y", "N", "1", "0", "true", ""]
TIERS = ["gold", "silver", "bronze", "platinum"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "test.example.nl", "shop.example.de"]
HEADER = ["email", "first_name", "city", "gender", "newsletter", "birth_date", "tier", "score"]


@dataclass
class Expected:
    rows: int = 0
    invalid: int = 0
    duplicate: int = 0
    emails: list[str] = field(default_factory=list, repr=False)

    @property
    def valid(self) -> int:
        return self.rows - self.invalid - self.duplicate


def email_of(i: int) -> str:
    return f"{FIRST[i % len(FIRST)].lower().replace('é', 'e')}.{i}@{DOMAINS[i % len(DOMAINS)]}"


def row(i: int, r: random.Random, version: int = 0) -> list[str]:
    email = email_of(i)
    if i % 17 == 0:
        email = f"  {email.upper()} "  # messy, same address
    city = CITIES[(i + version) % len(CITIES)] if version and i % 100 < 1 else CITIES[i % len(CITIES)]
    return [
        email,
        FIRST[i % len(FIRST)],
        city,
        GENDERS[i % len(GENDERS)],
        NEWS[i % len(NEWS)],
        f"19{50 + i % 50}-{1 + i % 12:02d}-{1 + i % 28:02d}",
        TIERS[i % len(TIERS)],
        str(r.randint(0, 10_000)),
    ]


def change_file(path: Path, rows: int, seed: int = 42) -> Expected:
    """A push input: ~0.5% invalid emails, ~0.2% duplicate ids (later occurrences)."""
    r = random.Random(seed)
    exp = Expected()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(rows):
            values = row(i, r)
            if i % 200 == 7:
                values[0] = f"broken{i}@@example.com"
                exp.invalid += 1
            elif i % 500 == 11 and i > 11:
                values[0] = email_of(i - 11)  # the same person again (row i-11 is always valid)
                exp.duplicate += 1
            w.writerow(values)
            exp.rows += 1
    return exp


def snapshot(path: Path, rows: int, version: int, seed: int = 7) -> None:
    """A sync input with unique valid ids. Version 1 vs 0: ~1% of ids changed
    (0.4% params changed, 0.3% gone, 0.3% new)."""
    r = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(rows):
            values = row(i, r)
            values[7] = str(i % 9973)  # stable between versions
            if version and i % 1000 < 4:
                values[2] = values[2] + " Noord"  # params changed
            if version and 4 <= i % 1000 < 7:
                continue  # gone
            w.writerow(values)
        if version:
            for j in range(rows * 3 // 1000):
                values = row(rows + j, r)
                values[7] = "0"
                w.writerow(values)  # new
