"""Engagements benchmark: pull, report and suppression, each against a baseline of the same run.

    python bench/engagements.py              # 1,000,000 events, a 1,000,000-row dry run
    python bench/engagements.py --check      # small: accounting only, not timing (tests run this)

1. pull: ``canopycli engagements pull`` of N synthetic events (5 metrics, 30 days) from the
   sandbox's Analytics Events API (its own process, on 127.0.0.1), against a bare client in this
   process that fetches and parses the same pages without storing them (the HTTP floor).
2. report: ``engagements report`` over those N stored events, each --by, in this process and as
   the CLI, against a bare ``SELECT COUNT(*)`` of the same table. Target: under 2 s.
3. suppression: a dry run of an N-row CSV for a segment with ``suppress: [bounce, complaint]``
   and the pulled events plus a hard bounce or complaint for 5% of its rows stored, against the
   same dry run with ``--no-suppress``; interleaved A B A B A B, medians. Target: at most 1.10.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import change_file, email_of  # noqa: E402
from run import CONFIG, measure  # noqa: E402

from canopycli.engagements.report import BY, report  # noqa: E402
from canopycli.store import Store  # noqa: E402
from canopycli.store.engagements import Event  # noqa: E402

DAYS = 30
PAGE_SIZE = 5_000
SECRET = "bench-client-secret-0123456789"


def start_sandbox(env: dict[str, str], work: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = open(work / "sandbox.out", "w+b")  # noqa: SIM115 - lives as long as the sandbox
    proc = subprocess.Popen(
        [sys.executable, "-m", "canopycli", "sandbox", "--port", "0", "--daily-limit", "0", "--duration", "3600",
         "--client-secret", SECRET],
        stdout=log, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.seek(0)
        for line in log.read().decode().splitlines():
            if line.startswith("endpoint: "):
                return proc, line.split(" ", 1)[1].split("/app/")[0]
        time.sleep(0.05)
    raise SystemExit("the sandbox did not start")


def floor(base: str, today: dt.date) -> tuple[float, int]:
    """Fetch and parse every page of every metric, storing nothing: the HTTP floor."""
    t = time.perf_counter()
    n = 0
    with httpx.Client(timeout=60) as http:
        bearer = http.post(f"{base}/oauth2/token", auth=("canopycli-sandbox", SECRET),
                           data={"grant_type": "client_credentials"}).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {bearer}"}
        for metric in ("sends", "opens", "clicks", "bounces", "complaints"):
            params: dict[str, Any] | None = {
                "filter[date_from]": str(today - dt.timedelta(days=DAYS - 1)), "filter[date_to]": str(today),
                "filter[metric]": metric, "limit": PAGE_SIZE, "offset": 0,
            }  # fmt: skip
            url: str | None = f"{base}/analytics-events/events"
            while url:
                page = orjson.loads(http.get(url, params=params, headers=headers).content)
                n += len(page["data"])
                url, params = page["_links"]["next"], None
    return time.perf_counter() - t, n


def held_events(rows: int) -> list[Event]:
    """A hard bounce or a complaint for every 20th row of the input (5%)."""
    out = []
    for i in range(3, rows, 20):
        digest = hashlib.sha256(email_of(i).encode()).hexdigest()
        metric = "bounces" if i % 40 == 3 else "complaints"
        out.append(Event(f"held-{i}", metric, "2026-11-01T09:00:00+00:00", "2026-11-01", bounce_type="hard",
                         email_sha256=digest))  # fmt: skip
    return out


def run(events: int, rows: int, work: Path, repeats: int) -> dict[str, Any]:
    env = {**os.environ, "CANOPY_TOKEN": secrets.token_urlsafe(24), "CANOPYCLI_STATE_DIR": str(work / "state"),
           "DT_CLIENT_SECRET": SECRET}  # fmt: skip
    cli = [sys.executable, "-m", "canopycli"]
    today = dt.datetime.now(dt.UTC).date()
    out: dict[str, Any] = {"events": events, "rows": rows}
    sandbox, base = start_sandbox(env, work)
    try:
        httpx.post(f"{base}/_sandbox/analytics", json={"synthetic": events, "synthetic_days": DAYS,
                                                       "synthetic_day": str(today)}).raise_for_status()  # fmt: skip
        cfg = yaml.safe_load(CONFIG.format(endpoint=f"{base}/app/api/rest/public/v2/project/datahook/data-receiver/x"))
        cfg["segments"]["Bench"]["suppress"] = ["bounce", "complaint"]
        cfg["engagements"] = {"client_id": "canopycli-sandbox", "client_secret": "${DT_CLIENT_SECRET}",
                              "token_url": f"{base}/oauth2/token", "api_url": f"{base}/analytics-events",
                              "page_size": PAGE_SIZE}  # fmt: skip
        config = work / "bench.yaml"
        config.write_text(yaml.safe_dump(cfg))
        floor_s, fetched = floor(base, today)
        since = str(today - dt.timedelta(days=DAYS - 1))
        pull = measure("engagements pull", [*cli, "engagements", "pull", "-c", str(config), "-q", "--json",
                                            "--since", since], env, work)  # fmt: skip
        pulled = json.loads((work / "engagements pull.out").read_text())
        out["pull"] = {"floor_s": floor_s, "floor_events": fetched, "pull_s": pull["wall_s"],
                       "peak_rss_mb": pull["peak_rss_mb"], "received": pulled["received"], "new": pulled["new"],
                       "events_per_s": pulled["received"] / pull["wall_s"], "ratio": pull["wall_s"] / floor_s}  # fmt: skip
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)

    # 2. the report over what was pulled
    with Store(work / "state") as store:
        t = time.perf_counter()
        stored = store.db.execute("SELECT COUNT(*) FROM engagements").fetchone()[0]
        count_s = time.perf_counter() - t
        timings = {}
        for by in BY:
            t = time.perf_counter()
            figures = report(store, since=today - dt.timedelta(days=DAYS - 1), until=today, by=by)
            timings[by] = time.perf_counter() - t
            assert figures["totals"]["sends"] + figures["totals"]["opens"] <= stored
    cli_report = measure("engagements report", [*cli, "engagements", "report", "--json", "--since", since], env, work)
    out["report"] = {"stored": stored, "count_s": count_s, "by_s": timings, "cli_s": cli_report["wall_s"],
                     "slowest_s": max(timings.values())}  # fmt: skip

    # 3. suppression in a dry run
    data = work / "segment.csv"
    change_file(data, rows)
    extra = held_events(rows)
    with Store(work / "state") as store:
        store.engagements.store(extra)
    runs: dict[str, list[float]] = {"suppress": [], "no-suppress": []}
    reports: dict[str, Any] = {}
    for i in range(repeats):
        for name in ("suppress", "no-suppress") if i % 2 == 0 else ("no-suppress", "suppress"):
            rj = work / f"dry-{name}.json"
            cmd = [*cli, "push", str(data), "-c", str(config), "-q", "--dry-run", "--report-json", str(rj)]
            runs[name].append(measure(f"dry run {name}", cmd + (["--no-suppress"] if name == "no-suppress" else []),
                                      env, work)["wall_s"])  # fmt: skip
            reports[name] = json.loads(rj.read_text())
    med = {k: statistics.median(v) for k, v in runs.items()}
    out["suppression"] = {"runs_s": runs, "median_s": med, "ratio": med["suppress"] / med["no-suppress"],
                          "rows_suppressed": reports["suppress"]["rows_suppressed"], "expected_held": len(extra)}  # fmt: skip
    with Store(work / "state") as store:
        out["suppression"]["held_ids_stored"] = store.engagements.held_back("email_sha256", ["bounce", "complaint"])[0]
    out["accounting"] = {
        "pull": out["pull"]["received"] == events == out["pull"]["floor_events"] and out["pull"]["new"] == events,
        "report": stored == events,
        "suppression": reports["suppress"]["rows_suppressed"] == len(extra)
        and reports["no-suppress"]["rows_suppressed"] == 0,
    }
    return out


def table(out: dict[str, Any]) -> str:
    p, r, s = out["pull"], out["report"], out["suppression"]
    lines = [
        "| measure | figure | baseline (same run) | ratio |",
        "| --- | --- | --- | --- |",
        f"| pull {p['received']:,} events (store, dedupe by uuid) | {p['pull_s']:.1f} s, {p['events_per_s']:,.0f} events/s,"
        f" peak RSS {p['peak_rss_mb']:.0f} MB | fetch + parse only: {p['floor_s']:.1f} s | {p['ratio']:.2f} |",
    ]
    for by, sec in r["by_s"].items():
        lines.append(f"| report --by {by} over {r['stored']:,} events | {sec:.2f} s | COUNT(*): {r['count_s']:.3f} s |"
                     f" {sec / max(r['count_s'], 1e-9):.0f} |")  # fmt: skip
    lines.append(f"| `engagements report --json` (the CLI, start to end) | {r['cli_s']:.2f} s | | |")
    lines.append(
        f"| dry run of {out['rows']:,} rows with suppress: ({s['rows_suppressed']:,} held; {s['held_ids_stored']:,} ids"
        f" held back in the store) | {s['median_s']['suppress']:.2f} s | --no-suppress: {s['median_s']['no-suppress']:.2f} s |"
        f" {s['ratio']:.3f} |"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="small sizes; check the accounting, not the timing")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if args.check:
        args.events, args.rows, args.repeats = 5_000, 5_000, 1
    with tempfile.TemporaryDirectory(prefix="canopycli-bench-eng-") as tmp:
        out = run(args.events, args.rows, Path(tmp), args.repeats)
    print(table(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    bad = [k for k, ok in out["accounting"].items() if not ok]
    if bad:
        raise SystemExit(f"accounting failed: {', '.join(bad)}")
    if not args.check:
        print(
            f"\nreport under 2 s: {out['report']['slowest_s'] < 2}; suppression <= 1.10: {out['suppression']['ratio'] <= 1.10}"
        )


if __name__ == "__main__":
    main()
