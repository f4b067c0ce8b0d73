"""The relay benchmark as a smoke test: at a small size it must run and account for every event.

Timing is never asserted here (shared, noisy machines); bench/relay.py reports it as ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_relay_bench_accounting(tmp_path: Path) -> None:
    out = tmp_path / "relay.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "relay.py"), "--check", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    data = json.loads(out.read_text())
    names = [r["name"] for r in data["intake"]]
    assert names == ["http floor: 100-record arrays", "relay: 100-record arrays", "http floor: single events",
                     "relay: single events"]  # fmt: skip
    for when, a in data["accounting"].items():
        assert a["accepted"] > 0 and a["accepted"] == a["queued"] + a["sandbox_profiles"], when
    assert [m["queued_after"] for m in data["memory"]] == [2_000, 12_000]
    assert len(data["batch_latency"]["rounds_s"]) == 5
    assert all(m["peak_rss_mb"] > 0 for m in data["memory"])
    assert "| relay: 100-record arrays |" in p.stdout
