"""The relay's queue and flusher, in process: latest wins, echo suppression, the flush rule, what
Deployteq's answers do, and recovery of batches a killed relay left in flight (unit tests:
Deployteq is an ``httpx.MockTransport``)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from canopycli.config import Resolved, parse_config, resolve
from canopycli.errors import StateError
from canopycli.pipeline.drive import Wiring
from canopycli.relay import intake as intake_module
from canopycli.relay.core import Item, ShuttingDown
from canopycli.relay.flusher import Flusher
from canopycli.relay.intake import Intake
from canopycli.relay.metrics import Metrics
from canopycli.store import Store
from canopycli.store.engagements import Event
from canopycli.store.queue import Append

from .conftest import TOKEN

CONFIG = f"""
connectors:
  main: {{endpoint: "https://deployteq.test/hook", token: "{TOKEN}", identifier: customer_id, batch_size: 3,
          retries: 0, backoff: 0}}
segments:
  S: {{connector: main, id_column: id}}
relay:
  tokens: ["relay-token-0123456789abcdef"]
  flush_interval: 60s
"""


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


class Deployteq:
    """Answers each request with the next status (default 200) and keeps every body."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200, json={})

    def customers(self) -> list[tuple[str, str, list[Any]]]:
        return [
            (c["customerId"], c["r42Status"], c["params"]) for b in self.bodies for c in b["campaigns"][0]["customers"]
        ]


@pytest.fixture
def setup(tmp_path: Path) -> Callable[..., tuple[Flusher, Store, Deployteq, list[float]]]:
    def make(statuses: list[int] | None = None, config: str = CONFIG) -> tuple[Flusher, Store, Deployteq, list[float]]:
        cfg = parse_config(config)
        resolved: dict[str, Resolved] = {k: resolve(cfg, k, "c.yaml") for k in cfg.segments}
        assert cfg.relay is not None
        far = Deployteq(statuses)
        clock = [1_000_000.0]
        root = tmp_path / "state"
        root.mkdir(exist_ok=True)
        wiring = Wiring(transport=httpx.MockTransport(far), sleep=lambda s: None)
        fl = Flusher(root, "c.yaml", resolved, cfg.relay, Metrics(), wiring, clock=lambda: clock[0])
        store = Store(root, "flusher")
        fl.load(store)
        return fl, store, far, clock

    return make


def add(fl: Flusher, store: Store, at: float, *events: tuple[str, str, dict[str, Any]]) -> None:
    rows = [(cid, status, orjson.dumps([{"name": k, "type": "string", "value": v} for k, v in p.items()]))
            for cid, status, p in events]  # fmt: skip
    made = store.queue.append([Append("S", rows)], now=at)
    fl.committed("S", made[0], at)


def test_a_full_batch_leaves_at_once_and_a_partial_one_waits_for_the_clock(setup: Callable[..., Any]) -> None:
    fl, store, far, clock = setup()
    add(fl, store, clock[0], *[(f"c{i}", "NEW", {"n": str(i)}) for i in range(4)])
    fl._cycle(store)
    assert [c[0] for c in far.customers()] == ["c0", "c1", "c2"]  # one full batch of 3; c3 waits
    assert fl.status()["segments"]["S"]["queued"] == 1
    clock[0] += 59
    fl._cycle(store)
    assert len(far.bodies) == 1
    clock[0] += 2  # the oldest waiting event is now older than flush_interval
    fl._cycle(store)
    assert [c[0] for c in far.customers()] == ["c0", "c1", "c2", "c3"]
    assert store.queue.stats() == {}
    runs = [r for r in store.runs.recent() if r.command == "relay"]
    assert sorted(r.rows_read for r in runs) == [1, 3] and {r.exit_code for r in runs} == {0}


def test_latest_event_per_identifier_wins_and_the_rest_are_counted_superseded(setup: Callable[..., Any]) -> None:
    fl, store, far, clock = setup()
    add(fl, store, clock[0], ("a", "NEW", {"v": "1"}), ("b", "NEW", {"v": "1"}))
    add(fl, store, clock[0] + 1, ("a", "MODIFIED", {"v": "2"}), ("a", "MODIFIED", {"v": "3"}))
    fl.request_flush("S")
    fl._cycle(store)
    # a: NEW then MODIFIED before Deployteq saw it -> sent once, as NEW, with the latest params
    assert sorted(far.customers()) == [("a", "NEW", [{"name": "v", "type": "string", "value": "3"}]),
                                       ("b", "NEW", [{"name": "v", "type": "string", "value": "1"}])]  # fmt: skip
    run = store.runs.last()
    assert (run.rows_read, run.rows_duplicate) == (4, 2)


def test_an_echo_of_what_deployteq_acknowledged_is_dropped(setup: Callable[..., Any]) -> None:
    fl, store, far, clock = setup()
    add(fl, store, clock[0], ("a", "NEW", {"v": "1"}), ("b", "NEW", {"v": "1"}))
    fl.request_flush("S")
    fl._cycle(store)
    assert len(far.bodies) == 1
    # the same change comes back from the other system, plus a real change and a removal
    add(fl, store, clock[0], ("a", "MODIFIED", {"v": "1"}), ("b", "MODIFIED", {"v": "2"}), ("c", "REMOVED", {}))
    fl.request_flush("S")
    fl._cycle(store)
    assert [(c[0], c[1]) for c in far.customers()[2:]] == [("b", "MODIFIED"), ("c", "REMOVED")]
    assert store.runs.last().profiles_unchanged == 1
    # the removal echoes back: dropped, because its removal was acknowledged
    add(fl, store, clock[0], ("c", "REMOVED", {}))
    fl.request_flush("S")
    fl._cycle(store)
    assert len(far.bodies) == 2
    # but a NEW for a removed id, then its removal again, both go
    add(fl, store, clock[0], ("c", "NEW", {"v": "9"}))
    fl.request_flush("S")
    fl._cycle(store)
    add(fl, store, clock[0], ("c", "REMOVED", {}))
    fl.request_flush("S")
    fl._cycle(store)
    assert [(c[0], c[1]) for c in far.customers()[4:]] == [("c", "NEW"), ("c", "REMOVED")]


def test_a_failed_batch_is_sent_again_with_its_uuid_before_anything_newer(setup: Callable[..., Any]) -> None:
    fl, store, far, clock = setup(statuses=[500])
    add(fl, store, clock[0], ("a", "NEW", {"v": "1"}))
    fl.request_flush("S")
    fl._cycle(store)
    assert len(far.bodies) == 1 and fl.status()["segments"]["S"]["last_error"]
    add(fl, store, clock[0], ("a", "MODIFIED", {"v": "2"}))  # a newer change waits behind the failed batch
    clock[0] += 10
    fl._cycle(store)
    assert [b["uuid"] for b in far.bodies][0] == far.bodies[1]["uuid"]
    assert [c[2][0]["value"] for c in far.customers()] == ["1", "1"]
    fl.request_flush("S")
    fl._cycle(store)
    assert far.customers()[-1][:2] == ("a", "MODIFIED") and store.queue.stats() == {}
    assert fl.status()["segments"]["S"]["last_error"] is None


def test_a_permanent_refusal_fails_the_batch_for_good(setup: Callable[..., Any]) -> None:
    fl, store, far, clock = setup(statuses=[400])
    add(fl, store, clock[0], ("a", "NEW", {"v": "1"}))
    fl.request_flush("S")
    fl._cycle(store)
    assert store.queue.stats() == {}  # accounted as failed in the journal, not resent forever
    run = store.runs.last()
    assert [b.state for b in store.runs.batches(run.id)] == ["failed"] and run.exit_code == 1
    clock[0] += 600
    fl._cycle(store)
    assert len(far.bodies) == 1


def test_401_pauses_the_connector_and_health_says_why(setup: Callable[..., Any]) -> None:
    fl, store, far, clock = setup(statuses=[401])
    add(fl, store, clock[0], ("a", "NEW", {"v": "1"}))
    fl.request_flush("S")
    fl._cycle(store)
    assert "401" in (fl.health() or "") and TOKEN not in (fl.health() or "")
    add(fl, store, clock[0], ("b", "NEW", {"v": "1"}))
    clock[0] += 30
    fl.request_flush("S")
    fl._cycle(store)
    assert len(far.bodies) == 1  # paused: no request until the probe a minute later
    clock[0] += 31
    fl._cycle(store)
    assert far.bodies[0]["uuid"] == far.bodies[1]["uuid"]  # the probe is the resend
    assert fl.health() is None
    assert [c[0] for c in far.customers()] == ["a", "a", "b"]  # then the flush asked for while paused


def test_a_spent_daily_budget_pauses_until_the_next_utc_day(setup: Callable[..., Any]) -> None:
    fl, store, far, clock = setup(config=CONFIG.replace("backoff: 0}", "backoff: 0, daily_limit: 1}"))
    add(fl, store, clock[0], *[(f"c{i}", "NEW", {}) for i in range(6)])
    fl._cycle(store)
    assert len(far.bodies) == 1
    assert "spent" in fl.status()["segments"]["S"]["last_error"]
    assert fl.status()["segments"]["S"]["queued"] == 3


def test_batches_a_killed_relay_left_in_flight_are_rebuilt_with_their_uuids(setup: Callable[..., Any]) -> None:
    fl, store, far, clock = setup()
    add(fl, store, clock[0], *[(f"c{i}", "NEW", {"n": str(i)}) for i in range(3)])
    # a flush took the rows and journaled the batch, then the process died before the answer
    from canopycli.pipeline.queued import FlushStage, plan, relay_settings
    from canopycli.pipeline.report import Report

    r = fl.segments["S"].resolved
    planned = plan(store, "main/S", store.queue.waiting("S", 10))
    stage = FlushStage(store, r, planned, Report("relay", "S", "main", "relay:S"))
    run_id = store.runs.start(
        command="relay", config_path="c.yaml", connector="main", segment="S", segment_name="S",
        endpoint=r.connector.endpoint, input="relay:S", input_sha256=None, settings=relay_settings(r),
    )  # fmt: skip
    stage.begin(run_id)
    batch = next(stage.batches())
    store.runs.add_batch(run_id, batch)
    # a new process starts
    fl2, store2, far2, _ = setup()
    fl2._cycle(store2)
    assert [b["uuid"] for b in far2.bodies] == [batch.uuid]
    assert store2.queue.stats() == {}
    assert store2.runs.get(run_id).status == "finished"


def accept_within(intake: Intake, items: list[Item], seconds: float = 5.0) -> object:
    """What ``accept`` returned or raised, or "hung" if it did neither within ``seconds``."""
    got: list[object] = []

    def call() -> None:
        try:
            got.append(intake.accept(items))
        except Exception as e:  # noqa: BLE001 - the test looks at it
            got.append(e)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    return got[0] if got else "hung"


def test_an_intake_whose_writer_stopped_refuses_requests_instead_of_leaving_them_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = parse_config(CONFIG)
    resolved = {k: resolve(cfg, k, "c.yaml") for k in cfg.segments}

    def unopenable(*args: Any, **kwargs: Any) -> Store:
        raise StateError("the journal cannot be opened: disk I/O error")

    monkeypatch.setattr(intake_module, "Store", unopenable)
    intake = Intake(tmp_path, resolved, Metrics(), lambda *a: None)
    intake.thread.join(5)
    for _ in range(2):  # not only the first: every later request too
        got = accept_within(intake, [Item(0, "S", {"id": "1"})])
        assert isinstance(got, StateError) and "cannot be opened" in got.message
    intake.close()  # returns: nothing waits on the stopped writer
    assert isinstance(accept_within(intake, [Item(0, "S", {"id": "1"})]), StateError)


def test_a_request_after_the_intake_closed_is_refused_not_left_waiting(tmp_path: Path) -> None:
    cfg = parse_config(CONFIG)
    resolved = {k: resolve(cfg, k, "c.yaml") for k in cfg.segments}
    intake = Intake(tmp_path, resolved, Metrics(), lambda *a: None)
    assert accept_within(intake, [Item(0, "S", {"id": "1"})]).accepted == 1  # type: ignore[attr-defined]
    intake.close()
    assert isinstance(accept_within(intake, [Item(0, "S", {"id": "2"})]), ShuttingDown)


def test_a_segment_with_suppress_holds_back_new_and_modified_but_not_removed(setup: Callable[..., Any]) -> None:
    fl, store, far, clock = setup(config=CONFIG.replace("id_column: id}", "id_column: id, suppress: [complaint]}"))
    store.engagements.store([Event("e1", "complaints", "2026-11-01T09:00:00+00:00", "2026-11-01", external_id="a"),
                             Event("e2", "complaints", "2026-11-01T09:00:00+00:00", "2026-11-01", external_id="c"),
                             Event("e3", "bounces", "2026-11-01T09:00:00+00:00", "2026-11-01", bounce_type="hard",
                                   external_id="b")])  # fmt: skip
    add(fl, store, clock[0], ("a", "NEW", {"v": "1"}), ("a", "MODIFIED", {"v": "2"}), ("b", "NEW", {"v": "1"}),
        ("c", "REMOVED", {}))  # fmt: skip
    fl.request_flush("S")
    fl._cycle(store)
    # a complained: held (its two events merged into one, counted superseded); b's bounce is not in
    # this segment's suppress:; c's removal still goes
    assert [(c[0], c[1]) for c in far.customers()] == [("b", "NEW"), ("c", "REMOVED")]
    run = store.runs.last()
    assert (run.rows_read, run.rows_suppressed, run.rows_duplicate, run.exit_code) == (4, 1, 1, 0)
    assert store.queue.stats() == {}  # a held event does not wait for ever


def test_engagements_are_stored_by_the_intake_writer_and_counted_once(tmp_path: Path) -> None:
    cfg = parse_config(CONFIG)
    intake = Intake(tmp_path, {k: resolve(cfg, k, "c.yaml") for k in cfg.segments}, Metrics(), lambda *a: None)
    events = [Event(f"u{i}", "opens", "2026-11-01T09:00:00+00:00", "2026-11-01", external_id=str(i)) for i in range(3)]
    try:
        assert intake.record(events) == 3
        assert intake.record(events[1:] + [events[0]._replace(uuid="u9")]) == 1  # the uuids already stored: once
    finally:
        intake.close()
    with Store(tmp_path) as store:
        assert store.engagements.count() == 4
