"""Typed param values through the real CLI: the exact wire value, and `out of range` rejects."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .conftest import report, run_cli, write_config, write_csv

PARAMS = [{"name": "score", "type": "number"}, {"name": "level", "type": "integer"}, {"name": "born", "type": "date"}]


def wire_params(out: Path) -> dict[str, list[dict]]:
    """customerId -> params, from the dry-run request bodies, as their exact JSON text says."""
    got: dict[str, list[dict]] = {}
    for f in sorted(out.glob("*.json")):
        body = json.loads(f.read_bytes())
        for c in body["campaigns"][0]["customers"]:
            got[c["customerId"]] = c["params"]
    return got


def test_number_params_on_the_wire_and_out_of_range_rows_rejected(tmp_path: Path) -> None:
    rows = [
        ("u1@example.com", "1e3", "12.0", "2024-02-29"),
        ("u2@example.com", "1e400", "1", "2024-01-01"),  # was sent as null
        ("u3@example.com", " 12 ", "-0", ""),
        ("u4@example.com", "9007199254740992", "1", ""),  # 2^53
        ("u5@example.com", "12.50", "9007199254740991", ""),
        ("u6@example.com", "\u0663", "1", ""),  # Arabic-Indic 3: was sent as 3
        ("u7@example.com", "-0.0", "99999999999999999999", ""),  # was sent as 99999999999999999999
        ("u8@example.com", "7", "1", "2024-W01-1"),  # an ISO week date: was sent as 2024-01-01
    ]
    data = write_csv(tmp_path / "s.csv", [dict(zip(("email", "score", "level", "born"), r, strict=True)) for r in rows])
    cfg = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9/hook", segment={"params": PARAMS})
    out, rej = tmp_path / "bodies", tmp_path / "rejects.csv"
    p = run_cli(
        "push", str(data), "-c", str(cfg), "--dry-run", "--out", str(out), "--rejects", str(rej),
        "--report-json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "This is a bug" not in p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["rows_rejected"], r["profiles_not_sent"]) == (8, 5, 3)
    reasons = {int(row["line"]): row["reason"] for row in csv.DictReader(rej.read_text(encoding="utf-8").splitlines())}
    assert reasons == {
        3: "score: is out of range (a number must be finite, with magnitude below 2^53 = 9,007,199,254,740,992)",
        5: "score: is out of range (a number must be finite, with magnitude below 2^53 = 9,007,199,254,740,992)",
        7: "score: is not a number (ASCII digits, . as the decimal point, optional exponent like 1e3; no thousands separators)",
        8: "level: is out of range (a number must be finite, with magnitude below 2^53 = 9,007,199,254,740,992)",
        9: "born: is not a date as YYYY-MM-DD (ASCII digits, a day that exists)",
    }
    bodies = b"".join(f.read_bytes() for f in sorted(out.glob("*.json")))
    # the exact JSON text on the wire: 1e3 is the float 1000.0, 12.0 as an integer is 12, -0 is 0
    assert (
        b'"params":[{"name":"score","type":"number","value":1000.0},{"name":"level","type":"number","value":12},'
        b'{"name":"born","type":"date","value":"2024-02-29"}]' in bodies
    )
    assert (
        b'"params":[{"name":"score","type":"number","value":12},{"name":"level","type":"number","value":0}]' in bodies
    )
    assert (
        b'"params":[{"name":"score","type":"number","value":12.5},'
        b'{"name":"level","type":"number","value":9007199254740991}]' in bodies
    )
    assert b"null" not in bodies and b"Infinity" not in bodies and b"NaN" not in bodies
    assert len(wire_params(out)) == 3


def test_jsonl_numbers_past_2_53_reject_the_row_and_the_rest_goes(tmp_path: Path) -> None:
    lines = [
        '{"email": "u1@example.com", "n": 3, "f": 0.25}',
        '{"email": "u2@example.com", "n": 18446744073709551616}',  # orjson reads it as a float
        '{"email": "u3@example.com", "n": 9007199254740993}',
        '{"email": "u4@example.com", "n": -9007199254740991}',
        '{"email": "u5@example.com", "n": 1e400}',  # not JSON a parser can hold: the line is rejected
    ]
    data = tmp_path / "s.jsonl"
    data.write_text("\n".join(lines) + "\n")
    cfg = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9/hook")
    out, rej = tmp_path / "bodies", tmp_path / "rejects.csv"
    p = run_cli(
        "push", str(data), "-c", str(cfg), "--dry-run", "--out", str(out), "--rejects", str(rej),
        "--report-json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert (r["rows_read"], r["rows_rejected"], r["profiles_not_sent"]) == (5, 3, 2)
    reasons = {int(row["line"]): row["reason"] for row in csv.DictReader(rej.read_text(encoding="utf-8").splitlines())}
    assert (
        reasons[2]
        == reasons[3]
        == ("n: is out of range (a number must be finite, with magnitude below 2^53 = 9,007,199,254,740,992)")
    )
    assert "infinity" in reasons[5]
    bodies = b"".join(f.read_bytes() for f in sorted(out.glob("*.json")))
    assert b'{"name":"n","type":"number","value":3},{"name":"f","type":"number","value":0.25}' in bodies
    assert b'{"name":"n","type":"number","value":-9007199254740991}' in bodies
