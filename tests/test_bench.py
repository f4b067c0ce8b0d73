"""The benchmarks as smoke tests: at a small size each must run and account for every row, event
and profile.

Timing is never asserted here (shared, noisy machines); the scripts in bench/ report it as ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_bench(
    tmp_path: Path, script: str, *args: str, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """``bench/SCRIPT --check --json FILE ARGS``: the process, and the figures it wrote."""
    out = tmp_path / "results.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--check", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return p, json.loads(out.read_text())


def test_bench_accounting_at_20000_rows(tmp_path: Path) -> None:
    p, data = run_bench(tmp_path, "run.py", "--rows", "20000")
    names = [r["name"] for r in data["results"]]
    assert names[:3] == ["naive baseline (stdlib loop)", "push --dry-run", "push to the sandbox"]
    acc = data["accounting"]
    assert acc["push"]["profiles_delivered"] == acc["expected"]["valid"] == acc["push"]["sandbox_profiles"]
    assert acc["sync"]["profiles_delivered"] > 0 and acc["sync"]["removals_delivered"] > 0
    assert all(r["wall_s"] > 0 and r["peak_rss_mb"] > 0 for r in data["results"])
    assert "| push --dry-run |" in p.stdout


def test_relay_bench_accounting(tmp_path: Path) -> None:
    p, data = run_bench(tmp_path, "relay.py", timeout=120)
    names = [r["name"] for r in data["intake"]]
    assert names == ["http floor: 100-record arrays", "relay: 100-record arrays", "http floor: single events",
                     "relay: single events"]  # fmt: skip
    for when, a in data["accounting"].items():
        assert a["accepted"] > 0 and a["accepted"] == a["queued"] + a["sandbox_profiles"], when
    assert [m["queued_after"] for m in data["memory"]] == [2_000, 12_000]
    assert len(data["batch_latency"]["rounds_s"]) == 5
    assert all(m["peak_rss_mb"] > 0 for m in data["memory"])
    assert "| relay: 100-record arrays |" in p.stdout


def test_engagements_bench_accounting(tmp_path: Path) -> None:
    p, data = run_bench(tmp_path, "engagements.py", timeout=180)
    assert data["accounting"] == {"pull": True, "report": True, "suppression": True}
    assert data["pull"]["received"] == data["pull"]["new"] == 5_000
    assert set(data["report"]["by_s"]) == {"type", "campaign", "day", "link"}
    assert data["suppression"]["rows_suppressed"] == data["suppression"]["expected_held"] == 250
    assert "| pull 5,000 events" in p.stdout
