"""The relay's Prometheus metrics, in a registry of its own (one per relay, so tests can run many).

Labels are segment keys, routes and status codes: never a token, an identifier or an address.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# What became of an event: queued on intake or refused; then sent in an acknowledged batch,
# superseded by a later event for the same identifier, suppressed as an echo of the baseline,
# in a batch that failed for good, or left unsent.
EVENT_OUTCOMES = ("accepted", "rejected", "delivered", "superseded", "suppressed", "held", "failed")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "canopycli_relay_http_requests",
            "Inbound HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "canopycli_relay_http_request_seconds",
            "Time to answer an inbound request (a 202 waits for the queue commit)",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.events = Counter(
            "canopycli_relay_events",
            "Profile events by segment and what became of them",
            ["segment", "outcome"],
            registry=r,
        )
        self.queued = Gauge("canopycli_relay_queued", "Events waiting in the queue", ["segment"], registry=r)
        self.oldest_age = Gauge(
            "canopycli_relay_oldest_age_seconds", "Age of the oldest queued event", ["segment"], registry=r
        )
        self.deployteq_requests = Counter(
            "canopycli_relay_deployteq_requests",
            "Requests sent to the Deployteq webhook, by segment and outcome",
            ["segment", "outcome"],
            registry=r,
        )
        self.flushes = Counter("canopycli_relay_flushes", "Flush runs by segment", ["segment"], registry=r)
        self.healthy = Gauge("canopycli_relay_healthy", "1 when /healthz answers 200", registry=r)

    def event(self, segment: str, outcome: str, n: int = 1) -> None:
        if n:
            self.events.labels(segment, outcome).inc(n)

    def set_queue(self, segment: str, queued: int, oldest_age_s: float | None) -> None:
        self.queued.labels(segment).set(queued)
        self.oldest_age.labels(segment).set(oldest_age_s or 0.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
