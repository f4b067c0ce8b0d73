"""The engagements benchmark as a smoke test: at a small size it must run and account for every
event and row. Timing is never asserted here (shared, noisy machines); bench/engagements.py
reports it as ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_engagements_bench_accounting(tmp_path: Path) -> None:
    out = tmp_path / "eng.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "engagements.py"), "--check", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["accounting"] == {"pull": True, "report": True, "suppression": True}
    assert data["pull"]["received"] == data["pull"]["new"] == 5_000
    assert set(data["report"]["by_s"]) == {"type", "campaign", "day", "link"}
    assert data["suppression"]["rows_suppressed"] == data["suppression"]["expected_held"] == 250
    assert "| pull 5,000 events" in p.stdout
