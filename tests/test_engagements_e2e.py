"""End to end: the real CLI against the sandbox's webhook and Analytics Events API on loopback:
push -> engagements pull -> (report) -> a push that holds back the hard-bounced and complaining."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from canopycli.emulators.webhook import Sandbox
from canopycli.store import Store

from .conftest import emails, grep_token, report, run_cli, write_csv

pytestmark = pytest.mark.timeout(120)
SECRET = "client-SECRET-a9b8c7d6e5f4"
ROWS = 250


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


@pytest.fixture
def world(tmp_path: Path, sandbox: Callable[..., Sandbox]) -> dict[str, Any]:
    sb = sandbox(record=tmp_path / "rec.jsonl", client_secret=SECRET)
    cfg = {
        "connectors": {"main": {"endpoint": sb.endpoint, "token": "${CANOPY_TOKEN}", "identifier": "hashed_email"}},
        "segments": {"WelcomeFlow": {"connector": "main", "id_column": "email", "suppress": ["bounce", "complaint"]}},
        "engagements": {
            "client_id": sb.analytics.client_id,
            "client_secret": "${DT_CLIENT_SECRET}",
            "token_url": sb.analytics.token_url,
            "api_url": sb.analytics.api_url,
            "page_size": 50,
            "backoff": 0,
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    src = write_csv(tmp_path / "in.csv", emails(ROWS))
    return {"sb": sb, "cfg": path, "src": src, "tmp": tmp_path, "state": tmp_path / "state"}


def cli(world: dict[str, Any], *args: str, secret: str = SECRET) -> Any:
    return run_cli(*args, "-c", str(world["cfg"]), env={"DT_CLIENT_SECRET": secret})


def control(sb: Sandbox, **settings: Any) -> None:
    httpx.post(f"{sb.base_url}/_sandbox/analytics", json=settings, timeout=10).raise_for_status()


def stored(world: dict[str, Any]) -> list[tuple[str, ...]]:
    with Store(world["state"]) as store:
        return list(store.db.execute("SELECT uuid, metric, email_sha256 FROM engagements ORDER BY uuid"))


def expected_row(e: dict[str, Any]) -> tuple[str, str, str]:
    """What the store keeps of a served event: the address hashed (a digest kept as it is)."""
    who = e["customer_email_address"]
    return e["uuid"], e["metric"], who if len(who) == 64 and "@" not in who else sha(who.strip().lower())


def test_pull_is_exact_idempotent_incremental_and_keeps_no_secret_token_or_address(world: dict[str, Any]) -> None:
    sb = world["sb"]
    today = dt.datetime.now(dt.UTC).date()
    control(sb, events=[{"uuid": "x1", "metric": "opens", "metric_timestamp": f"{today}T00:00:01Z",
                         "customer_email_address": " Someone.Real@example.com"}])  # fmt: skip
    outs = [cli(world, "push", str(world["src"]), "--no-suppress")]
    served = sb.analytics.events()
    assert len(served) > ROWS  # a send each, and opens, clicks, bounces, complaints
    outs.append(p := cli(world, "engagements", "pull", "--json"))
    assert p.returncode == 0, p.stderr
    first = json.loads(p.stdout)
    assert first["received"] == first["new"] == len(served)
    assert stored(world) == sorted(expected_row(e) for e in served)
    outs.append(p := cli(world, "engagements", "pull", "--json"))
    again = json.loads(p.stdout)
    assert p.returncode == 0 and again["new"] == 0 and again["received"] == len(served)
    newest = max(e["metric_timestamp"][:10] for e in served if e["metric"] == "sends")
    since = {m["metric"]: m["since"] for m in again["metrics"]}["sends"]
    assert since == str(dt.date.fromisoformat(newest) - dt.timedelta(days=1))  # one day of overlap
    outs.append(p := cli(world, "engagements", "pull", "--metric", "clicks", "--json"))
    assert [m["metric"] for m in json.loads(p.stdout)["metrics"]] == ["clicks"]
    outs += [cli(world, "engagements", "suppressed"), cli(world, "validate-config", str(world["cfg"]))]
    text = "".join(p.stdout + p.stderr for p in outs)
    assert all(p.returncode == 0 for p in outs), text
    blob = b"".join(p.read_bytes() for p in world["state"].rglob("*") if p.is_file())
    tokens = list(sb.analytics.tokens)
    assert len(tokens) == 3  # one a pull: reused across its pages and metrics
    for secret in [SECRET, *tokens, "someone.real@example.com", "Someone.Real@example.com", "user1@example.com"]:
        assert secret not in text and secret.encode() not in blob
    assert not grep_token(text, blob)


def test_suppress_holds_back_exactly_the_hard_bounced_and_complaining_and_the_report_matches(
    world: dict[str, Any],
) -> None:
    sb = world["sb"]
    assert cli(world, "push", str(world["src"])).returncode == 0  # nothing stored yet: all go
    assert cli(world, "engagements", "pull").returncode == 0
    served = sb.analytics.events()
    # the report's figures are the emulator's events, exactly
    metrics = ("sends", "opens", "clicks", "bounces", "complaints")
    expected: dict[str, dict[str, Any]] = {}
    for e in served:
        row = expected.setdefault(e["campaign_id"], {m: 0 for m in metrics} | {"who": set()})
        row[e["metric"]] += 1
        row["who"].add(e["customer_email_address"])
    p = run_cli("engagements", "report", "--by", "campaign", "--json")  # the state folder only: no config
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert {r["key"]: tuple(r[m] for m in metrics) + (r["unique_profiles"],) for r in got["rows"]} == {
        cid: tuple(row[m] for m in metrics) + (len(row["who"]),) for cid, row in expected.items()
    }
    assert got["totals"]["unique_profiles"] == got["totals"]["sends"] == ROWS
    some = next(r for r in got["rows"] if r["sends"])
    assert some["open_rate"] == round(some["opens"] / some["sends"], 4)
    # the second push holds back the hard-bounced and complaining, and the counts add up
    held = {e["customer_email_address"] for e in served
            if e["metric"] == "complaints" or (e["metric"] == "bounces" and e["bounce_type"].lower() == "hard")}  # fmt: skip
    soft = {e["customer_email_address"] for e in served if e["metric"] == "bounces"} - held
    assert held and soft  # the sample has both
    before = sb.snapshot()["profiles"]
    rej = world["tmp"] / "rej.csv"
    p = cli(world, "push", str(world["src"]), "--report-json", str(world["tmp"] / "r.json"), "--rejects", str(rej))
    assert p.returncode == 0, p.stderr
    assert f"{len(held)} row(s) held back by the segment's suppress:" in p.stderr
    r = report(world["tmp"] / "r.json")
    assert r["rows_suppressed"] == len(held)
    assert r["rows_read"] == r["rows_suppressed"] + r["profiles_delivered"] == ROWS
    assert sb.snapshot()["profiles"] - before == ROWS - len(held)
    sent = [json.loads(line) for line in (world["tmp"] / "rec.jsonl").read_text().splitlines()]
    second = {c["customerId"] for body in sent[-1:] for c in body["campaigns"][0]["customers"]}
    assert not (second & held) and soft <= second
    assert rej.read_text().count("suppressed: ") == len(held)
    p = cli(world, "engagements", "suppressed", "--format", "json")
    assert json.loads(p.stdout)[0]["held_back"] == len(held)
    p = run_cli("engagements", "report")  # the table and the chart, for people
    assert p.returncode == 0 and "unique profiles" in p.stdout and "█" in p.stdout


def test_a_rejected_client_secret_is_exit_4_and_the_secret_is_never_shown(world: dict[str, Any]) -> None:
    p = cli(world, "engagements", "pull", secret="wrong-SECRET-000000")
    assert p.returncode == 4
    assert "client_secret" in p.stderr and "Traceback" not in p.stderr
    assert "wrong-SECRET-000000" not in p.stdout + p.stderr


def test_a_foreign_next_link_a_bad_page_or_persistent_429s_store_nothing_of_that_page(world: dict[str, Any]) -> None:
    sb = world["sb"]
    cli(world, "push", str(world["src"]))
    control(sb, foreign_next=1)
    p = cli(world, "engagements", "pull", "--metric", "sends")
    assert p.returncode == 1 and "only the configured API host" in p.stderr
    assert stored(world) == []  # the first page linked away: refused whole
    control(sb, bad_page=1)
    p = cli(world, "engagements", "pull", "--metric", "sends")
    assert p.returncode == 1 and '"uuid" is missing' in p.stderr and "nothing of that page was stored" in p.stderr
    assert stored(world) == []
    control(sb, fail_429=2, retry_after=0)
    p = cli(world, "engagements", "pull", "--metric", "sends")
    assert p.returncode == 0 and len(stored(world)) == ROWS  # two 429s are waited out
    control(sb, fail_429=10, retry_after=0)
    p = cli(world, "engagements", "pull", "--metric", "opens")
    assert p.returncode == 3 and "429" in p.stderr and "later" in p.stderr


def test_demo_engagements_shows_the_whole_loop(tmp_path: Path) -> None:
    p = run_cli("demo", "--engagements", "--report-json", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    r = report(tmp_path / "r.json")
    assert r["rows_suppressed"] > 0
    assert r["rows_read"] == (r["rows_rejected"] + r["rows_duplicate"] + r["rows_suppressed"]
                              + r["profiles_delivered"])  # fmt: skip
    assert "open rate" in p.stdout and f"Second push: {r['rows_suppressed']} profiles held back" in p.stdout
    assert "demo 4/4" in p.stderr
    p = run_cli("demo", "--engagements", "--soap")
    assert p.returncode == 2 and "pick one" in p.stderr
