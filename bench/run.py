"""canopycli benchmark: throughput and peak memory against a naive baseline, in one run.

    python bench/run.py --rows 1000000                 # the table in the README
    python bench/run.py --rows 20000 --check           # CI smoke test: accounting, not timing
    python bench/run.py --rows 1000000 --flat 5000000  # also: is memory flat from 1M to 5M rows?

Every measurement is a separate process (wall time; peak RSS from wait4's rusage), on the same
machine in the same run, and is reported as a ratio to the naive baseline measured alongside.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import change_file, snapshot  # noqa: E402

CONFIG = """
connectors:
  bench:
    endpoint: {endpoint}
    token: ${{CANOPY_TOKEN}}
    identifier: hashed_email
    daily_limit: null
    concurrency: 4
segments:
  Bench:
    connector: bench
    id_column: email
    params:
      - {{name: firstName, column: first_name}}
      - {{name: city}}
      - {{name: gender, type: gender}}
      - {{name: newsletter, type: optin}}
      - {{name: birthDate, column: birth_date, type: date}}
      - {{name: tier, type: option}}
      - {{name: score, type: integer}}
"""


def measure(name: str, cmd: list[str], env: dict[str, str], work: Path) -> dict[str, Any]:
    """Run ``cmd``; wall seconds and peak RSS (MB) of that process alone."""
    out, err = work / f"{name}.out", work / f"{name}.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=o, stderr=e, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(f"{name} exited {code}:\n{err.read_text()[-2000:]}\n")
        raise SystemExit(1)
    return {"name": name, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def start_sandbox(env: dict[str, str], work: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = open(work / "sandbox.out", "w+b")  # noqa: SIM115 - lives as long as the sandbox
    p = subprocess.Popen(
        [sys.executable, "-m", "canopycli", "sandbox", "--port", "0", "--daily-limit", "0", "--duration", "3600"],
        stdout=log, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.seek(0)
        first = log.readline().decode()
        if first.startswith("endpoint: "):
            return p, first.split(" ", 1)[1].strip()
        time.sleep(0.05)
    p.kill()
    raise SystemExit("the sandbox did not start")


def stats(endpoint: str) -> dict[str, Any]:
    import httpx

    base = endpoint.split("/app/")[0]
    return dict(httpx.get(base + "/_sandbox/stats", timeout=10).json())


def run(rows: int, work: Path, check: bool, flat: int | None, skip_sync: bool) -> dict[str, Any]:
    env = {**os.environ, "CANOPY_TOKEN": secrets.token_urlsafe(24), "CANOPYCLI_STATE_DIR": str(work / "state")}
    cli = [sys.executable, "-m", "canopycli"]
    data = work / "segment.csv"
    expected = change_file(data, rows)
    results: list[dict[str, Any]] = []

    naive = measure("naive baseline (stdlib loop)", [sys.executable, str(HERE / "naive.py"), str(data)], env, work)
    results.append(naive)

    sandbox, endpoint = start_sandbox(env, work)
    try:
        cfg = work / "bench.yaml"
        cfg.write_text(CONFIG.format(endpoint=endpoint))
        dry_json, push_json = work / "dry.json", work / "push.json"
        results.append(
            measure(
                "push --dry-run",
                [*cli, "push", str(data), "-c", str(cfg), "-q", "--dry-run", "--report-json", str(dry_json)],
                env,
                work,
            )
        )
        results.append(
            measure(
                "push to the sandbox",
                [*cli, "push", str(data), "-c", str(cfg), "-q", "--report-json", str(push_json)],
                env,
                work,
            )
        )
        dry, push = json.loads(dry_json.read_text()), json.loads(push_json.read_text())
        accounting = {"expected": {"rows": expected.rows, "invalid": expected.invalid, "duplicate": expected.duplicate, "valid": expected.valid},
                      "dry_run": _counts(dry), "push": _counts(push)}  # fmt: skip
        accounting["push"]["sandbox_profiles"] = stats(endpoint)["profiles"]
        if not skip_sync:
            v0, v1 = work / "snap0.csv", work / "snap1.csv"
            snapshot(v0, rows, 0)
            snapshot(v1, rows, 1)
            base = measure(
                "sync --full (builds the baseline)", [*cli, "sync", str(v0), "-c", str(cfg), "-q", "--full"], env, work
            )
            base["rows"] = rows
            sync_json = work / "sync.json"
            sync = measure(
                "sync 1% changes vs baseline",
                [*cli, "sync", str(v1), "-c", str(cfg), "-q", "--report-json", str(sync_json)],
                env,
                work,
            )
            results += [base, sync]
            accounting["sync"] = _counts(json.loads(sync_json.read_text()))
        flat_result = None
        if flat:
            big = work / "big.csv"
            change_file(big, flat)
            flat_result = measure(
                f"push --dry-run at {flat:,} rows",
                [*cli, "push", str(big), "-c", str(cfg), "-q", "--dry-run"],
                env,
                work,
            )
            flat_push = measure(f"push at {flat:,} rows", [*cli, "push", str(big), "-c", str(cfg), "-q"], env, work)
            big.unlink()
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)

    for r in results:
        r.setdefault("rows", rows)
        r["rows_per_s"] = r["rows"] / r["wall_s"]
        r["ratio"] = r["wall_s"] / naive["wall_s"]
    out: dict[str, Any] = {
        "rows": rows,
        "machine": {
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "results": results,
        "accounting": accounting,
    }
    by = {r["name"]: r for r in results}
    out["targets"] = {
        "dry run <= 1.0x naive": by["push --dry-run"]["ratio"] <= 1.0,
        "push <= 1.5x naive": by["push to the sandbox"]["ratio"] <= 1.5,
        "dry run peak RSS <= 150 MB": by["push --dry-run"]["peak_rss_mb"] <= 150,
        "push peak RSS <= 150 MB": by["push to the sandbox"]["peak_rss_mb"] <= 150,
    }
    if not skip_sync:
        out["targets"]["sync peak RSS < 300 MB"] = by["sync 1% changes vs baseline"]["peak_rss_mb"] < 300
    if flat_result is not None:
        out["flat"] = {"dry_run": [by["push --dry-run"]["peak_rss_mb"], flat_result["peak_rss_mb"]],
                       "push": [by["push to the sandbox"]["peak_rss_mb"], flat_push["peak_rss_mb"]]}  # fmt: skip
        out["targets"][f"dry run RSS flat 1x -> {flat // rows}x rows (within 10%)"] = (
            flat_result["peak_rss_mb"] <= 1.1 * by["push --dry-run"]["peak_rss_mb"]
        )
        out["targets"][f"push RSS flat 1x -> {flat // rows}x rows (within 10%)"] = (
            flat_push["peak_rss_mb"] <= 1.1 * by["push to the sandbox"]["peak_rss_mb"]
        )
    if check:
        _check_accounting(accounting, rows, skip_sync)
    return out


def _counts(report: dict[str, Any]) -> dict[str, Any]:
    keys = ["rows_read", "rows_rejected", "rows_duplicate", "profiles_delivered", "profiles_failed", "profiles_not_sent", "profiles_unchanged",
            "removals_delivered", "requests", "exit_code"]  # fmt: skip
    return {k: report[k] for k in keys if k in report}


def _check_accounting(acc: dict[str, Any], rows: int, skip_sync: bool) -> None:
    """Behaviour, not timing: every row accounted for, the same way in every mode."""
    e, dry, push = acc["expected"], acc["dry_run"], acc["push"]
    for r in (dry, push):
        assert r["rows_read"] == e["rows"], r
        assert (r["rows_rejected"], r["rows_duplicate"]) == (e["invalid"], e["duplicate"]), (r, e)
    assert dry["profiles_not_sent"] == e["valid"] and dry["exit_code"] == 0
    assert push["profiles_delivered"] == push["sandbox_profiles"] == e["valid"] and push["exit_code"] == 0
    if not skip_sync:
        s = acc["sync"]
        changed, gone, new = (
            rows // 1000 * 4 + min(rows % 1000, 4),
            rows // 1000 * 3 + max(0, min(rows % 1000, 7) - 4),
            rows * 3 // 1000,
        )
        assert (s["profiles_delivered"], s["removals_delivered"]) == (changed + new, gone), (s, changed, gone, new)
        assert s["profiles_unchanged"] + s["profiles_delivered"] == s["rows_read"] and s["exit_code"] == 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(out: dict[str, Any]) -> str:
    lines = [
        f"{out['rows']:,} rows on {out['machine']['cpu']} ({out['machine']['cores']} cores), Python {out['machine']['python']}",
        "",
        "| measurement | wall s | rows/s | peak RSS MB | x naive |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in out["results"]:
        lines.append(
            f"| {r['name']} | {r['wall_s']:.2f} | {r['rows_per_s']:,.0f} | {r['peak_rss_mb']:.0f} | {r['ratio']:.2f} |"
        )
    lines.append("")
    for name, ok in out["targets"].items():
        lines.append(f"- {'PASS' if ok else 'MISS'}: {name}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path, default=HERE / "out" / "results.json", help="where to write the results")
    ap.add_argument("--check", action="store_true", help="assert the accounting (CI smoke test)")
    ap.add_argument("--flat", type=int, default=None, metavar="ROWS", help="also measure peak RSS at this many rows")
    ap.add_argument("--skip-sync", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="canopycli-bench-"))
    try:
        out = run(args.rows, work, args.check, args.flat, args.skip_sync)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))
    print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
