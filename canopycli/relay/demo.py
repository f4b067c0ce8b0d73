"""``canopycli demo --relay``: the sandbox and a relay in this process, sample events posted in
all three shapes (profiles, a custom connector's engine payloads, a signed Copernica callback),
flushed, and what the sandbox received, by segment and status."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..config import Config, Connector, RelaySettings, Segment
from ..emulators.webhook import Sandbox
from .service import background
from .signature import PinnedKeys, sign

EXTERNAL_ID = "2582431"


def demo_config(endpoint: str, token: str, relay_token: str, key_file: Path) -> Config:
    connector = Connector(endpoint=endpoint, token=token, identifier="hashed_email")  # type: ignore[arg-type]
    return Config(
        connectors={"sandbox": connector},
        segments={
            "WelcomeFlow": Segment(connector="sandbox", id_column="email"),
            "Engine": Segment(connector="sandbox", id_column="email", external_id=EXTERNAL_ID),
            "Copernica": Segment(connector="sandbox", id_column="email"),
        },
        relay=RelaySettings(
            tokens=[relay_token],  # type: ignore[list-item]
            copernica={"public_key_file": str(key_file)},  # type: ignore[arg-type]
        ),
    )


def run_demo(workdir: Path, say: Callable[[str], None]) -> list[str]:
    """Returns the lines to show: each post's answer, then what the sandbox received."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = workdir / "copernica.pem"
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file.write_bytes(pem)
    received = workdir / "received.jsonl"
    relay_token = secrets.token_urlsafe(24)
    shown: list[str] = []
    with Sandbox(secrets.token_urlsafe(24), port=0, record=received) as sb:
        config = demo_config(sb.endpoint, sb.token, relay_token, key_file)
        with background(config, str(workdir / "demo.yaml"), workdir / "state", PinnedKeys(key_file)) as (core, url):
            say(f"demo: a relay at {url} in front of a sandbox webhook at {sb.endpoint}")
            auth = {"Authorization": f"Bearer {relay_token}"}
            with httpx.Client(base_url=url, timeout=30) as c:
                for what, response in _posts(c, auth, key, url):
                    shown.append(f"POST {what}: {response.status_code} {response.text}")
                c.post("/v1/flush", headers=auth)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and core.status()["segments"] and _queued(core.status()):
                    time.sleep(0.05)
    arrived: Counter[tuple[str, str]] = Counter()
    for line in received.read_text().splitlines() if received.exists() else []:
        body = json.loads(line)
        for campaign in body["campaigns"]:
            for customer in campaign["customers"]:
                arrived[(campaign["segmentName"], customer["r42Status"])] += 1
    shown.append("The sandbox received:")
    shown += [f"  {segment:12} {status:9} {n}" for (segment, status), n in sorted(arrived.items())]
    return shown


def _queued(status: dict[str, dict[str, dict[str, int]]]) -> int:
    return sum(s["queued"] for s in status["segments"].values())


def _posts(c: httpx.Client, auth: dict[str, str], key: rsa.RSAPrivateKey, url: str) -> list[tuple[str, httpx.Response]]:
    out = []
    people = [
        {"email": "ada@example.com", "firstName": "Ada"},
        {"email": "grace@example.com", "firstName": "Grace", "status": "MODIFIED"},
        {"email": "not-an-address", "firstName": "Nobody"},
        {"email": "alan@example.com", "status": "REMOVED"},
    ]
    out.append(
        ("/v1/segments/WelcomeFlow/profiles", c.post("/v1/segments/WelcomeFlow/profiles", json=people, headers=auth))
    )
    engine = [
        {"partnerAudienceId": EXTERNAL_ID, "partnerIds": ["edsger@example.com", "barbara@example.com"],
         "audienceVariables": {"tier": "gold"}},
        {"partnerAudienceId": EXTERNAL_ID, "partnerIds": ["ken@example.com"], "r42Status": "REMOVED"},
    ]  # fmt: skip
    out.append(("/v1/engine", c.post("/v1/engine", json=engine, headers=auth)))
    path = "/v1/copernica/Copernica"
    body = json.dumps({"id": "42", "action": "create", "fields": {"email": "margaret@example.com", "city": "Delft"}})
    host = url.removeprefix("http://")
    signed = sign("POST", path, {"Host": host, "Content-Type": "application/json"}, body.encode(), key)
    out.append((f"{path} (signed)", c.post(path, content=body.encode(), headers=signed)))
    return out
