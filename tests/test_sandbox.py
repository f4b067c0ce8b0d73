from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from canopycli.emulators.webhook import Sandbox, validate_body
from canopycli.errors import UsageError

from .conftest import TOKEN

HEX = "a" * 64
PARAM = {"name": "city", "type": "string", "value": "Leiden"}


def body(**over: object) -> dict[str, object]:
    b: dict[str, object] = {
        "uuid": "123e4567-e89b-12d3-a456-426614174000",
        "customerType": "HASHED_EMAIL",
        "campaigns": [{"segmentName": "S", "customers": [{"customerId": HEX, "r42Status": "NEW", "params": []}]}],
    }
    b.update(over)
    return b


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda b: b.update(extra=1), "unknown field extra"),
        (lambda b: b.update(uuid="nope"), "uuid"),
        (lambda b: b.update(customerType="EMAIL"), "customerType"),
        (lambda b: b.update(campaigns=[]), "length >= 1 - at $.campaigns"),
        (lambda b: b["campaigns"][0].update(segmentName=" "), "$.campaigns[0].segmentName"),
        (lambda b: b["campaigns"][0]["customers"][0].update(r42Status="DELETED"), "r42Status"),
        (lambda b: b["campaigns"][0]["customers"][0].update(customerId="Not-Hex"), "SHA-256"),
        (lambda b: b["campaigns"][0]["customers"][0].update(params=[{"name": "x"}]), "params[0]"),
        (lambda b: b["campaigns"][0].update(customers=[b["campaigns"][0]["customers"][0]] * 601), "length <= 600"),
        (lambda b: b["campaigns"][0]["customers"][0].update(params=[PARAM | {"value": "y" * 257}]), "length <= 256"),
        (lambda b: b["campaigns"][0]["customers"][0].update(params=[PARAM | {"value": {"a": 1}}]), "params[0].value"),
    ],
)
def test_validate_body_names_the_problem(mutate: Callable[[dict], None], fragment: str) -> None:
    b = body()
    assert validate_body(b) is None
    b["campaigns"][0]["customers"][0]["params"] = [PARAM]  # type: ignore[index]
    assert validate_body(b) is None
    mutate(b)
    problem = validate_body(b)
    assert problem is not None and fragment in problem


def test_sandbox_refuses_non_loopback() -> None:
    with pytest.raises(UsageError, match="loopback"):
        Sandbox(TOKEN, host="0.0.0.0")


def test_auth_validation_counter_dedupe_and_record(sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    sb = sandbox(daily_limit=3, record=rec)
    with httpx.Client() as c:
        assert c.post(sb.endpoint, json=body()).status_code == 401
        assert c.post(sb.endpoint, params={"token": "wrong"}, json=body()).status_code == 401
        r = c.post(sb.endpoint, params={"token": TOKEN}, json=body())
        assert r.status_code == 200 and r.headers["X-Clang-Request-Count"] == "1"
        r = c.post(sb.endpoint, headers={"Authorization": f"Bearer {TOKEN}"}, json=body())
        assert r.json()["status"] == "duplicate"
        r = c.post(sb.endpoint, params={"token": TOKEN}, json=body(customerType="X"))
        assert r.status_code == 400 and "customerType" in r.json()["error"]
        r = c.post(sb.endpoint, params={"token": TOKEN}, json=body())
        assert r.status_code == 429 and r.headers["X-Clang-Request-Count"] == "4"
        c.post(sb.base_url + "/_sandbox/next-day")
        assert c.post(sb.endpoint, params={"token": TOKEN}, json=body()).status_code == 200
        stats = c.get(sb.base_url + "/_sandbox/stats").json()
    assert (stats["accepted"], stats["duplicates"], stats["limited"], stats["unauthorized"]) == (1, 2, 1, 2)
    lines = rec.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["uuid"] == body()["uuid"]
    assert TOKEN not in rec.read_text()


def test_fail_first_and_drop(sandbox: Callable[..., Sandbox]) -> None:
    sb = sandbox(fail_first=1)
    with httpx.Client(params={"token": TOKEN}) as c:
        assert c.post(sb.endpoint, json=body()).status_code == 500
        assert c.post(sb.endpoint, json=body()).status_code == 200
    sb2 = sandbox(drop_rate=1.0)
    with httpx.Client(params={"token": TOKEN}) as c, pytest.raises(httpx.RemoteProtocolError):
        c.post(sb2.endpoint, json=body())
