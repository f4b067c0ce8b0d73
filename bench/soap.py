"""SOAP (real time) benchmark: profiles/s through the SOAP emulator at concurrency 1, 4 and 16,
and calls per profile for a first and a repeat push; the webhook push of the same profiles to the
same sandbox, in the same run, is the baseline.

    python bench/soap.py                 # 1,000 profiles
    python bench/soap.py --profiles 200 --check   # smoke test: accounting and call counts, not timing

Every push is the real CLI in its own process; the sandbox runs in this one, on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from canopycli.emulators.webhook import Sandbox

TOKEN = "bench-soap-token-0123456789abcdef"


def config(path: Path, sb: Sandbox, concurrency: int) -> Path:
    cfg = {
        "connectors": {
            "soap": {"api": "soap", "soap_url": sb.soap_url, "token": TOKEN, "identifier": "customer_id",
                     "concurrency": concurrency},
            "hook": {"endpoint": sb.endpoint, "token": TOKEN, "identifier": "customer_id", "daily_limit": None},
        },
        "segments": {
            "Soap": {"connector": "soap", "campaign": "Password reset", "id_column": "customer_id"},
            "Hook": {"connector": "hook", "id_column": "customer_id"},
        },
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg))
    return path


def profiles(path: Path, n: int, prefix: str) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "firstname", "plan"])
        for i in range(n):
            w.writerow([f"{prefix}{i}", f"Name{i}", "gold"])
    return path


def push(cfg: Path, segment: str, src: Path, state: Path, out: Path) -> tuple[float, dict[str, Any]]:
    env = {**os.environ, "CANOPYCLI_STATE_DIR": str(state)}
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "canopycli", "push", str(src), "-c", str(cfg), "-s", segment, "-q",
         "--report-json", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"push failed ({p.returncode}): {p.stderr}")
    return wall, json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=1000)
    ap.add_argument("--check", action="store_true", help="assert accounting and call counts only")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    n = args.profiles
    results: dict[str, Any] = {"profiles": n, "runs": []}
    with tempfile.TemporaryDirectory() as tmp, Sandbox(TOKEN, port=0, daily_limit=None) as sb:
        work = Path(tmp)
        base_wall, base = push(
            config(work / "c.yaml", sb, 4), "Hook", profiles(work / "h.csv", n, "h"), work / "s0", work / "h.json"
        )
        assert base["profiles_delivered"] == n
        results["webhook_baseline_s"] = round(base_wall, 3)
        for conc in (1, 4, 16):
            cfg = config(work / f"c{conc}.yaml", sb, conc)
            src = profiles(work / f"p{conc}.csv", n, f"c{conc}-")
            state = work / f"s{conc}"
            wall, first = push(cfg, "Soap", src, state, work / f"f{conc}.json")
            wall2, repeat = push(cfg, "Soap", src, state, work / f"r{conc}.json")
            for r in (first, repeat):
                assert r["profiles_delivered"] == n and r["faults"] == {}, r
            row = {
                "concurrency": conc,
                "first_profiles_per_s": round(n / wall, 1),
                "repeat_profiles_per_s": round(n / wall2, 1),
                "first_calls_per_profile": round(first["calls"] / n, 3),
                "repeat_calls_per_profile": round(repeat["calls"] / n, 3),
                "vs_webhook": round(wall / base_wall, 1),
            }
            assert row["repeat_calls_per_profile"] <= 2.0 + 1 / n and row["first_calls_per_profile"] <= 3.0 + 1 / n
            results["runs"].append(row)
    print(f"SOAP to the loopback emulator, {n:,} profiles (webhook push of the same: {base_wall:.2f} s)")
    print(
        f"{'concurrency':>11} {'first p/s':>10} {'repeat p/s':>11} {'calls/p first':>14} {'repeat':>7} {'x webhook':>10}"
    )
    for r in results["runs"]:
        print(
            f"{r['concurrency']:>11} {r['first_profiles_per_s']:>10} {r['repeat_profiles_per_s']:>11}"
            f" {r['first_calls_per_profile']:>14} {r['repeat_calls_per_profile']:>7} {r['vs_webhook']:>10}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
