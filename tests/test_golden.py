"""Golden bytes: the request bodies (and so the batch uuids) for fixed inputs and configs.

A restructure must not change one byte on the wire: ``retry`` of a run journaled earlier
rebuilds its batches and checks their uuids. ``tests/golden/bodies.json`` holds the SHA-256 of
every body per case; regenerate it only for a deliberate wire change:
``CANOPYCLI_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from canopycli.cli import app

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "bodies.json"
ENDPOINT = "https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-golden"
TYPED = [
    {"name": "firstName", "column": "first_name"},
    {"name": "gender", "type": "gender"},
    {"name": "newsletter", "type": "optin"},
    {"name": "birthDate", "column": "birth_date", "type": "date"},
    {"name": "tier", "type": "option"},
    {"name": "orders", "type": "integer"},
    {"name": "spent", "type": "number"},
    {"name": "vip", "type": "boolean"},
    {"name": "seen", "type": "datetime"},
    {"name": "sms", "type": "yesno"},
]


def _typed_csv(path: Path, n: int) -> Path:
    genders = ["female", "m", "vrouw", "x", "unknown", ""]
    lines = ["email,status,first_name,gender,newsletter,birth_date,tier,orders,spent,vip,seen,sms"]
    for i in range(n):
        email = f" User{i}@Example.COM " if i % 7 == 0 else f"user{i}@example.com"
        status = ("NEW", "MODIFIED", "REMOVED")[i % 3]
        lines.append(
            f"{email},{status},Näme {i},{genders[i % 6]},{'yes' if i % 2 else 'no'},19{50 + i % 50}-0{1 + i % 9}-1{i % 10},"
            f"tier{i % 4},{i},{i * 1.25},{'true' if i % 5 else 'false'},2024-01-0{1 + i % 9}T12:00:00Z,{'ja' if i % 3 else 'nee'}"
        )
    lines.append("not-an-email,NEW,x,m,yes,2000-01-01,t,1,1,true,2024-01-01T00:00:00Z,ja")
    lines.append("user1@example.com,NEW,dup,m,yes,2000-01-01,t,1,1,true,2024-01-01T00:00:00Z,ja")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _config(path: Path, connector: dict[str, Any], segment: dict[str, Any]) -> Path:
    conn = {"endpoint": ENDPOINT, "token": "${CANOPY_TOKEN}", "identifier": "hashed_email", **connector}
    seg = {"connector": "main", "id_column": "email", **segment}
    path.write_text(yaml.safe_dump({"connectors": {"main": conn}, "segments": {"WelcomeFlow": seg}}))
    return path


def _bodies(tmp_path: Path, command: str, data: Path, cfg: Path, *extra: str) -> list[str]:
    out = tmp_path / "bodies"
    r = CliRunner().invoke(app, [command, str(data), "-c", str(cfg), "--dry-run", "--out", str(out), *extra])
    assert r.exit_code == 0, r.stderr
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())]


def case_packaged_sample(tmp_path: Path) -> list[str]:
    params = [
        {"name": "firstName", "column": "first_name"},
        {"name": "city"},
        {"name": "gender", "type": "gender"},
        {"name": "newsletter", "type": "optin"},
        {"name": "birthDate", "column": "birth_date", "type": "date"},
    ]
    cfg = _config(tmp_path / "c.yaml", {}, {"params": params})
    return _bodies(tmp_path, "push", ROOT / "canopycli" / "data" / "sample_segment.csv", cfg)


def case_example_config(tmp_path: Path) -> list[str]:
    cfg = _config(tmp_path / "c.yaml", {}, yaml.safe_load((ROOT / "configs" / "example.yaml").read_text())["segments"]["WelcomeFlow"] | {"connector": "main"})  # fmt: skip
    return _bodies(tmp_path, "push", ROOT / "sample_data" / "segment.csv", cfg)


def case_jsonl_inferred_types(tmp_path: Path) -> list[str]:
    cfg = _config(tmp_path / "c.yaml", {}, {})
    return _bodies(tmp_path, "push", ROOT / "sample_data" / "segment.jsonl", cfg)


def case_typed_params_small_batches(tmp_path: Path) -> list[str]:
    cfg = _config(tmp_path / "c.yaml", {"batch_size": 97}, {"params": TYPED, "empty": "send"})
    return _bodies(tmp_path, "push", _typed_csv(tmp_path / "t.csv", 700), cfg)


def case_customer_ids(tmp_path: Path) -> list[str]:
    cfg = _config(
        tmp_path / "c.yaml",
        {"identifier": "customer_id"},
        {"id_column": "email", "status_column": "state", "params": TYPED[:3]},
    )
    return _bodies(tmp_path, "push", _typed_csv(tmp_path / "t.csv", 300), cfg, "--status", "MODIFIED")


def case_sync_full(tmp_path: Path) -> list[str]:
    cfg = _config(tmp_path / "c.yaml", {"batch_size": 250}, {"params": TYPED[:5]})
    data = tmp_path / "snap.csv"
    rows = _typed_csv(tmp_path / "t.csv", 600).read_text().splitlines()
    header = rows[0].split(",")
    keep = [i for i, h in enumerate(header) if h != "status"]
    data.write_text("\n".join(",".join(r.split(",")[i] for i in keep) for r in rows[:-2]) + "\n")
    return _bodies(tmp_path, "sync", data, cfg, "--full")


CASES = {name.removeprefix("case_"): fn for name, fn in globals().items() if name.startswith("case_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_request_bodies_are_byte_identical(name: str, tmp_path: Path) -> None:
    got = CASES[name](tmp_path)
    assert got, "no bodies"
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("CANOPYCLI_REGEN_GOLDEN") == "1":
        golden[name] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    assert got == golden.get(name), f"the bodies of {name} changed"
