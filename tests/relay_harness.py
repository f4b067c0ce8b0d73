"""The real ``canopycli relay`` in a subprocess, for end-to-end tests and the benchmark."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

RELAY_TOKEN = "relay-SECRET-5d4c3b2a1f0e9d8c7b6a"


def relay_config(path: Path, endpoint: str, token: str, **relay: Any) -> Path:
    """Three segments (one selected by an External ID) on one connector, and a relay block."""
    cfg = {
        "connectors": {
            "main": {"endpoint": endpoint, "token": token, "identifier": "hashed_email", "backoff": 0.05},
        },
        "segments": {
            "WelcomeFlow": {"connector": "main", "id_column": "email"},
            "Engine": {"connector": "main", "id_column": "email", "external_id": "2582431"},
            "Copernica": {"connector": "main", "id_column": "email", "name": "CopernicaSync"},
        },
        "relay": {"tokens": [RELAY_TOKEN], "flush_interval": "2s", **relay},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class Relay:
    """One relay process; ``stop()`` (SIGTERM) or ``kill()`` (SIGKILL)."""

    def __init__(self, config: Path, state: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "canopycli", "relay", "-c", str(config), "--state-dir", str(state),
             "--listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
        )  # fmt: skip
        self.err_lines: list[str] = []
        self.url = self._wait_for_url()
        self._drain = threading.Thread(target=self._read_err, daemon=True)
        self._drain.start()
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {RELAY_TOKEN}"}, timeout=30)
        self.stdout = ""

    def _wait_for_url(self) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode()
            if not line:
                raise AssertionError(f"the relay exited: {self.proc.wait(5)}; {''.join(self.err_lines)}")
            self.err_lines.append(line)
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if m:
                return m.group(1)
        raise AssertionError("the relay did not say where it listens")

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.err_lines.append(raw.decode(errors="replace"))

    @property
    def stderr(self) -> str:
        return "".join(self.err_lines)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, json=body, **kwargs) if body is not None else self.client.post(path, **kwargs)

    def status(self) -> dict[str, Any]:
        return dict(self.client.get("/v1/status").json()["segments"])

    def wait_until(self, check: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out; relay stderr:\n{self.stderr}")

    def stop(self, timeout: float = 30) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read().decode()
        self._close()
        return rc

    def kill(self) -> None:
        self.client.close()
        self.proc.kill()
        self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        self._drain.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def profiles(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [{"email": f"user{i}@example.com", "firstName": f"Name{i}", **extra} for i in range(start, start + n)]


def recorded(path: Path) -> Iterator[dict[str, Any]]:
    """Every customer the sandbox accepted, with the uuid of its batch."""
    import json

    if not path.exists():
        return
    for line in path.read_text().splitlines():
        body = json.loads(line)
        for campaign in body["campaigns"]:
            for c in campaign["customers"]:
                yield {**c, "uuid": body["uuid"], "segmentName": campaign["segmentName"]}
