"""The report's figures, exactly, for every --by; the JSON contract; --campaign; the export."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.cli.engagements import bar_chart
from canopycli.engagements.report import report
from canopycli.errors import UsageError
from canopycli.store import Store
from canopycli.store.engagements import Event

D1, D2, D3 = "2026-11-01", "2026-11-02", "2026-11-03"


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def ev(uuid: str, metric: str, day: str, who: str | None, campaign: str | None = "c1", **more: str) -> Event:
    name = {"c1": "Welcome", "c2": "Newsletter"}.get(campaign or "")
    ident = {"email_sha256": sha(who)} if who and "@" in who else {"external_id": who} if who else {}
    return Event(uuid, metric, f"{day}T10:00:00+00:00", day, campaign_id=campaign, campaign_name=name, **ident, **more)  # type: ignore[arg-type]


EVENTS = [
    ev("s1", "sends", D1, "a@x.test"), ev("s2", "sends", D1, "b@x.test"), ev("s3", "sends", D2, "c@x.test"),
    ev("s4", "sends", D2, "d@x.test", "c2"), ev("s5", "sends", D2, "42", "c2"),  # a customer id
    ev("o1", "opens", D1, "a@x.test"), ev("o2", "opens", D2, "a@x.test"),  # a opens twice: one profile
    ev("o3", "opens", D2, "d@x.test", "c2"), ev("o4", "opens", D2, None),  # no identifier: counted, not unique
    ev("k1", "clicks", D2, "a@x.test", link="https://e.x/1", link_description="One"),
    ev("k2", "clicks", D2, "d@x.test", "c2", link="https://e.x/1", link_description="One"),
    ev("k3", "clicks", D2, "a@x.test", link="https://e.x/2"),
    ev("b1", "bounces", D1, "b@x.test", bounce_type="HARD", bounce_category="unknown user"),
    ev("b2", "bounces", D2, "c@x.test", bounce_type="soft", bounce_category="mailbox full"),
    ev("p1", "complaints", D2, "42", "c2"),
    ev("z1", "sends", D3, "late@x.test"), ev("z0", "sends", "2026-10-31", "early@x.test"),  # outside the range
]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Store:
    root = tmp_path / "state"
    root.mkdir()
    with Store(root) as s:
        s.engagements.store(EVENTS)
    return Store(root)


def counts(row: dict[str, object]) -> tuple[object, ...]:
    return tuple(row[k] for k in ("sends", "opens", "clicks", "bounces", "complaints", "unique_profiles"))


def test_by_type_and_the_totals(store: Store) -> None:
    r = report(store, since=dt.date(2026, 11, 1), until=dt.date(2026, 11, 2))
    assert set(r) >= {"since", "until", "by", "totals", "rows"} and (r["since"], r["until"], r["by"]) == (
        D1,
        D2,
        "type",
    )
    assert counts(r["totals"]) == (5, 4, 3, 2, 1, 5)  # profiles a, b, c, d, 42
    assert {row["key"]: counts(row) for row in r["rows"]} == {
        "sends": (5, 0, 0, 0, 0, 5),
        "opens": (0, 4, 0, 0, 0, 2),
        "clicks": (0, 0, 3, 0, 0, 2),
        "bounces": (0, 0, 0, 2, 0, 2),
        "complaints": (0, 0, 0, 0, 1, 1),
    }
    assert r["bounces_by_category"] == [{"category": "mailbox full", "type": "soft", "count": 1},
                                        {"category": "unknown user", "type": "hard", "count": 1}]  # fmt: skip


def test_until_is_inclusive_and_by_day_lists_every_day(store: Store) -> None:
    r = report(store, since=dt.date(2026, 10, 31), until=dt.date(2026, 11, 4), by="day")
    assert [(row["key"], counts(row)) for row in r["rows"]] == [
        ("2026-10-31", (1, 0, 0, 0, 0, 1)),
        (D1, (2, 1, 0, 1, 0, 2)),
        (D2, (3, 3, 3, 1, 1, 4)),  # c, d, 42, a
        (D3, (1, 0, 0, 0, 0, 1)),
        ("2026-11-04", (0, 0, 0, 0, 0, 0)),
    ]


def test_by_campaign_with_rates_against_receives(store: Store) -> None:
    r = report(store, since=dt.date(2026, 11, 1), until=dt.date(2026, 11, 2), by="campaign")
    rows = {row["key"]: row for row in r["rows"]}
    assert counts(rows["c1"]) == (3, 3, 2, 2, 0, 3) and counts(rows["c2"]) == (2, 1, 1, 0, 1, 2)
    assert (rows["c1"]["campaign_name"], rows["c1"]["open_rate"], rows["c1"]["click_rate"]) == ("Welcome", 1.0, 0.6667)
    assert (rows["c2"]["open_rate"], rows["c2"]["click_rate"]) == (0.5, 0.5)


def test_by_link_counts_clicks_most_first(store: Store) -> None:
    r = report(store, since=dt.date(2026, 11, 1), until=dt.date(2026, 11, 2), by="link")
    assert [(row["key"], row["link_description"], row["clicks"], row["unique_profiles"]) for row in r["rows"]] == [
        ("https://e.x/1", "One", 2, 2),
        ("https://e.x/2", None, 1, 1),
    ]


@pytest.mark.parametrize("campaign", ["c2", "Newsletter", "newsletter "])
def test_campaign_by_id_or_name(store: Store, campaign: str) -> None:
    r = report(store, since=dt.date(2026, 11, 1), until=dt.date(2026, 11, 2), campaign=campaign)
    assert counts(r["totals"]) == (2, 1, 1, 0, 1, 2)


def test_an_unknown_campaign_or_by_or_range_is_a_usage_error(store: Store) -> None:
    with pytest.raises(UsageError) as err:
        report(store, since=dt.date(2026, 11, 1), until=dt.date(2026, 11, 2), campaign="Newsleter")
    assert "Did you mean 'Newsletter'" in str(err.value)
    with pytest.raises(UsageError, match="--by takes"):
        report(store, since=dt.date(2026, 11, 1), until=dt.date(2026, 11, 2), by="week")
    with pytest.raises(UsageError, match="after --until"):
        report(store, since=dt.date(2026, 11, 3), until=dt.date(2026, 11, 2))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_the_cli_prints_the_json_contract_and_a_table_with_a_bar_per_day(store: Store, tmp_path: Path) -> None:
    r = invoke("engagements", "report", "--since", D1, "--until", D2, "--by", "campaign", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert list(got)[:5] == ["since", "until", "by", "totals", "rows"]
    assert list(got["totals"]) == ["sends", "opens", "clicks", "bounces", "complaints", "unique_profiles"]
    assert all(
        {"key", "sends", "opens", "clicks", "bounces", "complaints", "unique_profiles"} <= set(r) for r in got["rows"]
    )
    r = invoke("engagements", "report", "--since", D1, "--until", D2)
    assert r.exit_code == 0 and "unique profiles" in r.stdout and "mailbox full" in r.stdout
    assert "2026-11-02 ████████████████████" in r.stdout  # the busiest day: a full bar
    for bad in (["--since", "yesterday"], ["--by", "week"], ["--campaign", "nope"]):
        r = invoke("engagements", "report", *bad)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output


def test_an_empty_store_says_what_to_run() -> None:
    r = invoke("engagements", "report")
    assert r.exit_code == 0 and "engagements pull" in r.stderr and r.stdout == ""
    r = invoke("engagements", "report", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["totals"]["sends"] == 0


def test_bar_chart_scales_to_the_busiest_day() -> None:
    days = [{"key": "d1", "sends": 8, "opens": 0, "clicks": 0, "bounces": 0, "complaints": 0},
            {"key": "d2", "sends": 1, "opens": 1, "clicks": 0, "bounces": 0, "complaints": 0}]  # fmt: skip
    one, two = bar_chart(days, width=4)
    assert one.startswith("d1 ████ ") and two.startswith("d2 █    ")


def test_export_csv_and_jsonl_round_trip(store: Store, tmp_path: Path) -> None:
    r = invoke("engagements", "export", str(tmp_path / "all.csv"))
    assert r.exit_code == 0 and f"exported {len(EVENTS)} engagement" in r.stderr
    with open(tmp_path / "all.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(row["uuid"] for row in rows) == sorted(e.uuid for e in EVENTS)
    assert rows[0].keys() == set(Event._fields) and "a@x.test" not in (tmp_path / "all.csv").read_text()
    r = invoke("engagements", "export", str(tmp_path / "b.jsonl.gz"), "--metric", "bounces", "--since", D2)
    assert r.exit_code == 0
    lines = [json.loads(line) for line in gzip.decompress((tmp_path / "b.jsonl.gz").read_bytes()).splitlines()]
    assert lines == [EVENTS[13]._asdict()]
    r = invoke("engagements", "export", str(tmp_path / "x.txt"))
    assert r.exit_code == 2 and ".csv, .jsonl or .ndjson" in r.output and not (tmp_path / "x.txt").exists()
    r = invoke("engagements", "export", str(tmp_path / "no" / "x.csv"))
    assert r.exit_code == 2 and "does not exist" in r.output


def test_export_to_a_reader_that_goes_away_stops_quietly(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "state"
    root.mkdir()
    with Store(root) as s:
        s.engagements.store([ev(f"e{i}", "opens", D1, f"p{i}@x.test") for i in range(5000)])
    proc = subprocess.Popen([sys.executable, "-m", "canopycli", "engagements", "export", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().startswith(b'{"uuid":')
    proc.stdout.close()  # `| head -1`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"Error" not in err and b"Traceback" not in err
