"""The benchmark as a smoke test: at a small size it must run and account for every row.

Timing is never asserted here (shared, noisy machines); bench/run.py reports it as ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_accounting_at_20000_rows(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--rows", "20000", "--check", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    data = json.loads(out.read_text())
    names = [r["name"] for r in data["results"]]
    assert names[:3] == ["naive baseline (stdlib loop)", "push --dry-run", "push to the sandbox"]
    acc = data["accounting"]
    assert acc["push"]["profiles_delivered"] == acc["expected"]["valid"] == acc["push"]["sandbox_profiles"]
    assert acc["sync"]["profiles_delivered"] > 0 and acc["sync"]["removals_delivered"] > 0
    assert all(r["wall_s"] > 0 and r["peak_rss_mb"] > 0 for r in data["results"])
    assert "| push --dry-run |" in p.stdout
