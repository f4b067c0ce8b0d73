from __future__ import annotations

import hashlib

import orjson

from canopycli.deployteq.webhook import Encoder
from canopycli.emulators.webhook import validate_body
from canopycli.model import Profile, Reject
from canopycli.pipeline.batch import batches
from canopycli.pipeline.dedupe import Seen


def prof(i: int, pad: int = 0) -> Profile:
    cid = f"{i:064x}"
    return Profile(
        i, cid, {"customerId": cid, "r42Status": "NEW", "params": [{"name": "p", "type": "string", "value": "x" * pad}]}
    )


def enc(max_bytes: int = 6_000_000) -> Encoder:
    return Encoder("https://h/x", "WelcomeFlow", "HASHED_EMAIL", max_bytes)


def test_body_is_exactly_the_documented_shape() -> None:
    [b], rej = enc().encode([prof(1), prof(2)], 0)
    body = orjson.loads(b.body)
    assert not rej
    assert list(body) == ["uuid", "customerType", "campaigns"]
    assert body["customerType"] == "HASHED_EMAIL"
    assert body["campaigns"] == [{"segmentName": "WelcomeFlow", "customers": [prof(1).customer, prof(2).customer]}]
    assert validate_body(body) is None
    assert body["uuid"] == b.uuid


def test_uuid_is_deterministic_and_depends_on_content_segment_and_endpoint() -> None:
    [a], _ = enc().encode([prof(1)], 0)
    [a2], _ = enc().encode([prof(1)], 5)
    [b], _ = enc().encode([prof(2)], 0)
    [c], _ = Encoder("https://h/x", "Other", "HASHED_EMAIL", 6_000_000).encode([prof(1)], 0)
    [d], _ = Encoder("https://h/y", "WelcomeFlow", "HASHED_EMAIL", 6_000_000).encode([prof(1)], 0)
    assert a.uuid == a2.uuid
    assert len({a.uuid, b.uuid, c.uuid, d.uuid}) == 4


def test_batches_of_at_most_batch_size() -> None:
    got = list(batches((prof(i) for i in range(1234)), enc(), 500, lambda r: None))
    assert [b.profiles for b in got] == [500, 500, 234]
    assert [b.index for b in got] == [0, 1, 2]
    assert got[2].lines[0] == 1000


def test_oversized_body_is_split_and_a_giant_profile_rejected() -> None:
    rejects: list[Reject] = []
    profiles = [prof(i, pad=300) for i in range(10)] + [prof(99, pad=5000)]
    got = list(batches(iter(profiles), enc(max_bytes=2000), 500, rejects.append))
    assert all(len(b.body) <= 2000 for b in got)
    assert sum(b.profiles for b in got) == 10
    assert [b.index for b in got] == list(range(len(got)))
    assert len(rejects) == 1 and rejects[0].line == 99 and "request limit" in rejects[0].reason


def test_seen_keeps_the_first_line() -> None:
    s = Seen()
    assert s.first_line("a", 2) is None
    assert s.first_line("b", 3) is None
    assert s.first_line("a", 9) == 2


def test_seen_grows_and_keeps_every_first_line() -> None:
    s = Seen(expected=10)
    ids = [f"customer-{i}" for i in range(200_000)]
    assert all(s.first_line(cid, n) is None for n, cid in enumerate(ids, 2))
    assert [s.first_line(ids[i], 10**6) for i in (0, 77_777, 199_999)] == [2, 77_779, 200_001]
    long_id = "x" * 64  # a customer_id as long as a digest, but not one
    assert s.first_line(long_id, 5) is None and s.first_line(long_id, 6) == 5


def test_seen_with_digests_spills_and_finds_them_again() -> None:
    s = Seen(expected=10, max_slots=1 << 12, hex_ids=True)
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(10_000)]  # half have the top bit set
    assert all(s.first_line(cid, n) is None for n, cid in enumerate(ids, 2))
    assert s._disk is not None
    assert [s.first_line(ids[i], 10**6) for i in range(0, 10_000, 997)] == [i + 2 for i in range(0, 10_000, 997)]
    s.close()


def test_seen_spills_to_disk_past_its_memory_cap() -> None:
    s = Seen(expected=10, max_slots=1 << 12)  # at most 4096 slots in memory
    ids = [f"customer-{i}" for i in range(20_000)]
    assert all(s.first_line(cid, n) is None for n, cid in enumerate(ids, 2))
    assert len(s._keys) == 1 << 12 and s._disk is not None
    assert [s.first_line(ids[i], 10**6) for i in (0, 5_000, 19_999)] == [2, 5_002, 20_001]
    s.close()
