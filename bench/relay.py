"""canopycli relay benchmark: intake, full-batch latency and memory, against baselines, in one run.

    python bench/relay.py                          # the figures in the README (10 s a load, 1M queued)
    python bench/relay.py --check                  # CI smoke test: accounting, not timing

- **Intake**: the real ``canopycli relay`` subprocess (``flush_interval: 1h``; full batches of 500
  flush normally, to an in-process ``Sandbox``), 8 client threads (one ``httpx.Client`` each)
  posting 100-record JSON arrays, then single events. The baseline is ``bench/http_floor.py``: a
  bare starlette app on uvicorn with the relay's settings that parses the body and answers 202,
  the cost floor of HTTP here. Figures: accepted-and-committed profiles/s, requests/s, p50/p99.
- **Full batch latency**: 5 x 100 events into an empty segment; the time from the 202 of the
  request that made the 500th until the sandbox has accepted the batch. 5 rounds.
- **Memory**: peak RSS (VmHWM) of a relay whose journal holds ``--queued`` events of a segment
  whose connector the sandbox refuses (401: the relay pauses it and keeps everything queued),
  after more posts, ``/v1/status`` and ``/metrics``; the baseline is the same relay, empty queue.

Every server is its own process (the sandbox and the clients share this one), measured on the
same machine in the same run; ratios are against the baseline measured alongside.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import _cpu  # noqa: E402

from canopycli.emulators.webhook import Sandbox  # noqa: E402
from canopycli.store import Store  # noqa: E402
from canopycli.store.queue import Append  # noqa: E402

RELAY_TOKEN = "bench-relay-token-7f3e9a1c5b"
SANDBOX_TOKEN = "bench-sandbox-token-2d8c4e6a"
CLIENTS = 8
ROUNDS = 5  # of the full-batch latency
POSTED_HELD = 20  # requests of 100 posted to the held segment in the memory runs
PREFILL_CHUNK = 50_000
BULK, LATENCY, HELD = "Bench", "Latency", "Held"

Body = Callable[[int, int], bytes]  # (client, request number) -> a request body


def relay_config(path: Path, endpoint: str) -> Path:
    """Two segments on a connector the sandbox takes, one on a connector it refuses (401)."""
    cfg = {
        "connectors": {
            "live": {"endpoint": endpoint, "token": SANDBOX_TOKEN, "identifier": "hashed_email", "daily_limit": None},
            "held": {"endpoint": endpoint, "token": "not-the-sandbox-token", "identifier": "hashed_email",
                     "daily_limit": None},
        },
        "segments": {
            BULK: {"connector": "live", "id_column": "email"},
            LATENCY: {"connector": "live", "id_column": "email"},
            HELD: {"connector": "held", "id_column": "email"},
        },
        "relay": {"tokens": [RELAY_TOKEN], "flush_interval": "1h"},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# --- processes ---------------------------------------------------------------------------


class Service:
    """A server subprocess that says ``listening on http://127.0.0.1:PORT`` on stderr; a context
    manager that stops it (SIGTERM, then SIGKILL) however the block ends."""

    def __init__(self, name: str, cmd: list[str]) -> None:
        self.name, self.cmd = name, cmd
        self.lines: list[str] = []
        self.url = ""
        self._ready = threading.Event()

    def __enter__(self) -> Service:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            if not self._ready.wait(60) or not self.url:
                raise SystemExit(f"{self.name} did not start:\n{''.join(self.lines)[-2000:]}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if not self.url and "listening on http://127.0.0.1:" in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
                self._ready.set()
        self._ready.set()  # it exited

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the process has had so far."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise SystemExit("no VmHWM in /proc (Linux only)")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def relay_cmd(config: Path, state: Path) -> list[str]:
    return [sys.executable, "-m", "canopycli", "relay", "-c", str(config), "--state-dir", str(state),
            "--listen", "127.0.0.1:0"]  # fmt: skip


def client(url: str) -> httpx.Client:
    """With TCP_NODELAY: httpx writes a request's headers and body apart, and without it the body
    waits for the server's delayed ACK (~40 ms a request, a client artefact the bench would measure)."""
    headers = {"Authorization": f"Bearer {RELAY_TOKEN}", "Content-Type": "application/json"}
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(base_url=url, headers=headers, timeout=30, transport=transport)


# --- load --------------------------------------------------------------------------------


def records(tag: str, n: int) -> list[dict[str, str]]:
    return [{"email": f"{tag}-{i}@example.com", "firstName": f"Name{i}", "city": "Utrecht"} for i in range(n)]


def array_body(tag: str) -> Body:
    return lambda c, i: orjson.dumps(records(f"{tag}-{c}-{i}", 100))


def single_body(tag: str) -> Body:
    return lambda c, i: orjson.dumps(records(f"{tag}-{c}-{i}", 1)[0])


@dataclass
class Load:
    name: str
    requests: int = 0
    profiles: int = 0  # accepted in the timed window
    accepted_total: int = 0  # ... and in the warm-up requests
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "name": self.name,
            "requests": self.requests,
            "profiles": self.profiles,
            "seconds": self.seconds,
            "requests_per_s": self.requests / self.seconds,
            "profiles_per_s": self.profiles / self.seconds,
            "p50_ms": 1000 * _pct(lat, 0.50),
            "p99_ms": 1000 * _pct(lat, 0.99),
            "server_cpu_pct": 100 * self.server_cpu_s / self.seconds,
            "errors": len(self.errors),
            "first_errors": self.errors[:5],
        }


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def load(name: str, server: Service, segment: str, seconds: float, body: Body) -> Load:
    """``CLIENTS`` threads post ``body``s for ``seconds`` (after one warm-up request each)."""
    url = server.url
    out = Load(name)
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS + 1, timeout=60)
    path = f"/v1/segments/{segment}/profiles"
    began: list[float] = []

    def post(http: httpx.Client, c: int, i: int) -> tuple[float, int, str | None]:
        t0 = time.perf_counter()
        r = http.post(path, content=body(c, i))
        took = time.perf_counter() - t0
        if r.status_code != 202:
            return took, 0, f"{r.status_code} {r.text[:200]}"
        return took, int(r.json()["accepted"]), None

    def worker(c: int) -> None:
        with client(url) as http:
            _, warm, error = post(http, c, 0)
            with lock:
                out.accepted_total += warm
                if error:
                    out.errors.append(error)
            start.wait()
            deadline = began[0] + seconds
            i = 1
            while time.perf_counter() < deadline:
                took, accepted, error = post(http, c, i)
                i += 1
                with lock:
                    out.requests += 1
                    out.profiles += accepted
                    out.accepted_total += accepted
                    out.latencies.append(took)
                    if error:
                        out.errors.append(error)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    began.append(time.perf_counter() + 0.01)
    start.wait()
    cpu = server.cpu_seconds()
    for t in threads:
        t.join(seconds + 120)
    out.seconds = time.perf_counter() - began[0]
    out.server_cpu_s = server.cpu_seconds() - cpu
    if any(t.is_alive() for t in threads):
        raise SystemExit(f"{name}: a client did not finish")
    return out


# --- the relay's own waits ---------------------------------------------------------------


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll ``check`` until it holds; the seconds it took. Bounded: ``SystemExit`` after ``timeout``."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if check():
            return time.perf_counter() - t0
        time.sleep(0.002)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


def queued(http: httpx.Client, *segments: str) -> int:
    status = http.get("/v1/status").json()["segments"]
    return sum(int(status[s]["queued"]) for s in segments)


def drain(http: httpx.Client, sandbox: Sandbox, expected: int) -> dict[str, int]:
    """Flush now; wait until the live segments are empty and the sandbox holds what was accepted."""
    http.post("/v1/flush")
    wait_for("the flush", lambda: queued(http, BULK, LATENCY) == 0 and sandbox.snapshot()["profiles"] >= expected, 120)
    return {
        "accepted": expected,
        "queued": queued(http, BULK, LATENCY),
        "sandbox_profiles": sandbox.snapshot()["profiles"],
    }


def _profiles_reach(sandbox: Sandbox, target: int) -> Callable[[], bool]:
    return lambda: int(sandbox.snapshot()["profiles"]) >= target


def batch_latency(http: httpx.Client, sandbox: Sandbox) -> list[float]:
    """Per round: 5 x 100 new events; from the 202 that made the 500th to the sandbox's acceptance."""
    rounds = []
    for r in range(ROUNDS):
        before = sandbox.snapshot()["profiles"]
        for i in range(5):
            got = http.post(f"/v1/segments/{LATENCY}/profiles", content=orjson.dumps(records(f"lat-{r}-{i}", 100)))
            if got.status_code != 202 or got.json()["accepted"] != 100:
                raise SystemExit(f"latency round {r}: {got.status_code} {got.text[:200]}")
        rounds.append(wait_for("the full batch", _profiles_reach(sandbox, before + 500), 30))
    return rounds


# --- memory ------------------------------------------------------------------------------


def prefill(state: Path, n: int) -> float:
    """``n`` events of the held segment straight into the journal's queue; the seconds it took."""
    t0 = time.perf_counter()
    with Store(state, "intake") as store:
        for start in range(0, n, PREFILL_CHUNK):
            rows = [(hashlib.sha256(b"held-%d" % i).hexdigest(), "NEW", b"[]")
                    for i in range(start, min(n, start + PREFILL_CHUNK))]  # fmt: skip
            store.queue.append([Append(HELD, rows)])
    return time.perf_counter() - t0


def memory(name: str, config: Path, state: Path, n: int) -> dict[str, Any]:
    """Peak RSS of a relay with ``n`` held events queued, after posts, /v1/status and /metrics."""
    state.mkdir(mode=0o700)
    filled = prefill(state, n) if n else 0.0
    with Service(name, relay_cmd(config, state)) as relay, client(relay.url) as http:
        for i in range(POSTED_HELD):
            r = http.post(f"/v1/segments/{HELD}/profiles", content=orjson.dumps(records(f"held-post-{i}", 100)))
            if r.status_code != 202:
                raise SystemExit(f"{name}: {r.status_code} {r.text[:200]}")
        # The flusher tried the held connector, was refused (401) and paused it: /healthz says so.
        wait_for("the held connector's pause", lambda: http.get("/healthz").status_code == 503, 120)
        held = queued(http, HELD)
        metrics = http.get("/metrics")
        metrics.raise_for_status()
        return {"name": name, "queued": n, "queued_after": held, "expected_queued": n + 100 * POSTED_HELD,
                "prefill_s": filled, "peak_rss_mb": relay.peak_rss_mb()}  # fmt: skip


# --- the run -----------------------------------------------------------------------------


def run(seconds: float, n_queued: int, work: Path, check: bool) -> dict[str, Any]:
    floor_cmd = [sys.executable, str(HERE / "http_floor.py")]
    intake: list[dict[str, Any]] = []
    accounting: dict[str, Any] = {}
    with Service("http floor", floor_cmd) as floor:
        intake.append(load("http floor: 100-record arrays", floor, BULK, seconds, array_body("f")).figures())
        intake.append(load("http floor: single events", floor, BULK, seconds, single_body("f1")).figures())

    sandbox = Sandbox(SANDBOX_TOKEN, daily_limit=None).start()
    try:
        config = relay_config(work / "relay.yaml", sandbox.endpoint)
        state = work / "state-intake"
        state.mkdir(mode=0o700)
        with Service("relay", relay_cmd(config, state)) as relay, client(relay.url) as http:
            bulk = load("relay: 100-record arrays", relay, BULK, seconds, array_body("b"))
            single = load("relay: single events", relay, BULK, seconds, single_body("s"))
            intake[1:1] = [bulk.figures()]
            intake.append(single.figures())
            accepted = bulk.accepted_total + single.accepted_total
            accounting["after the loads"] = drain(http, sandbox, accepted)
            rounds = batch_latency(http, sandbox)
            accounting["after the latency rounds"] = drain(http, sandbox, accepted + ROUNDS * 500)
            under_load = relay.peak_rss_mb()
        mem = [
            memory("relay, empty queue (baseline)", config, work / "state-empty", 0),
            memory(f"relay, {n_queued:,} queued", config, work / "state-full", n_queued),
        ]
    finally:
        sandbox.stop()

    floor_bulk, relay_bulk, floor_single, relay_single = intake
    for floor_r, relay_r in ((floor_bulk, relay_bulk), (floor_single, relay_single)):
        floor_r["ratio"] = 1.0
        relay_r["ratio"] = relay_r["requests_per_s"] / floor_r["requests_per_s"]
        relay_r["p99_ratio"] = relay_r["p99_ms"] / floor_r["p99_ms"]
    mem[0]["ratio"] = 1.0
    mem[1]["ratio"] = mem[1]["peak_rss_mb"] / mem[0]["peak_rss_mb"]
    out: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "seconds": seconds,
        "clients": CLIENTS,
        "machine": {
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },  # fmt: skip
        "intake": intake,
        "batch_latency": {"rounds_s": rounds, "median_s": statistics.median(rounds), "max_s": max(rounds)},
        "memory": mem,
        "relay_peak_rss_under_load_mb": under_load,
        "accounting": accounting,
    }
    out["targets"] = {
        ">= 5,000 profiles/s in 100-record arrays": relay_bulk["profiles_per_s"] >= 5000,
        "p99 < 100 ms with 100-record arrays": relay_bulk["p99_ms"] < 100,
        ">= 500 single-event requests/s": relay_single["requests_per_s"] >= 500,
        "p99 < 100 ms with single events": relay_single["p99_ms"] < 100,
        "a full batch leaves < 1 s after the 500th event's 202 (every round)": max(rounds) < 1.0,
        f"peak RSS <= 150 MB with {n_queued:,} queued": mem[1]["peak_rss_mb"] <= 150,
    }
    if check:
        _check_accounting(out)
    return out


def _check_accounting(out: dict[str, Any]) -> None:
    """Behaviour, not timing: every accepted profile is queued or at the sandbox, nothing refused."""
    for r in out["intake"]:
        assert r["errors"] == 0 and r["requests"] > 0, r
    for when, a in out["accounting"].items():
        assert a["accepted"] == a["queued"] + a["sandbox_profiles"], (when, a)
    for m in out["memory"]:
        assert m["queued_after"] == m["expected_queued"], m


def table(out: dict[str, Any]) -> str:
    m = out["machine"]
    lines = [
        f"{out['date']}: {m['cpu']} ({m['cores']} cores), Python {m['python']}; {out['clients']} clients,"
        f" {out['seconds']:g} s a load",
        "",
        "| intake | requests/s | profiles/s | p50 ms | p99 ms | server CPU % | x floor (req/s) | x floor (p99) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in out["intake"]:
        lines.append(
            f"| {r['name']} | {r['requests_per_s']:,.0f} | {r['profiles_per_s']:,.0f} | {r['p50_ms']:.1f}"
            f" | {r['p99_ms']:.1f} | {r['server_cpu_pct']:.0f} | {r['ratio']:.2f} | {r.get('p99_ratio', 1.0):.2f} |"
        )
    bl = out["batch_latency"]
    rounds = ", ".join(f"{s * 1000:.0f}" for s in bl["rounds_s"])
    lines += ["", f"full batch: 500th event's 202 -> sandbox accepted: median {bl['median_s'] * 1000:.0f} ms,"
              f" max {bl['max_s'] * 1000:.0f} ms ({rounds} ms)", "",
              "| memory | queued | peak RSS MB | x empty |", "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for r in out["memory"]:
        lines.append(f"| {r['name']} | {r['queued_after']:,} | {r['peak_rss_mb']:.0f} | {r['ratio']:.2f} |")
    lines += ["", f"relay peak RSS after the intake loads: {out['relay_peak_rss_under_load_mb']:.0f} MB", ""]
    for name, ok in out["targets"].items():
        lines.append(f"- {'PASS' if ok else 'MISS'}: {name}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=None, help="of each load (default 10; --check: 0.5)")
    ap.add_argument("--queued", type=int, default=None, help="events queued for the memory run (default 1,000,000;"
                    " --check: 10,000)")  # fmt: skip
    ap.add_argument("--json", type=Path, default=HERE / "out" / "relay.json", help="where to write the results")
    ap.add_argument("--check", action="store_true", help="a small run asserting the accounting (CI smoke test)")
    ap.add_argument("--keep", action="store_true", help="keep the state folders")
    args = ap.parse_args()
    seconds = args.seconds if args.seconds is not None else (0.5 if args.check else 10.0)
    n_queued = args.queued if args.queued is not None else (10_000 if args.check else 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="canopycli-bench-relay-"))
    try:
        out = run(seconds, n_queued, work, args.check)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))
    print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
