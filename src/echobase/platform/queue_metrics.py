"""The queue server's ``/metrics``: each queue's depth by state and its oldest message's age.

Computed on each scrape from the messages moto holds in this process (every account and
region), so the figures are as fresh as the scrape and nothing runs between scrapes. The
states are those of SQS's ApproximateNumberOfMessages* attributes: delayed (not yet
deliverable), in flight (received, invisible until its visibility timeout ends) and visible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

METRICS_PATH = "/metrics"
STATES = ("visible", "in_flight", "delayed")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    visible: int = 0
    in_flight: int = 0
    delayed: int = 0
    oldest_age_seconds: float = 0.0

    def count(self, state: str) -> int:
        return int(getattr(self, state))


def message_state(message: Any, now_ms: float) -> str:
    """As moto decides for its ApproximateNumberOfMessages* counts."""
    if now_ms < message.delayed_until:
        return "delayed"
    if now_ms > message.visible_at:
        return "visible"
    return "in_flight"


def queue_depth(name: str, messages: Iterable[Any], now_ms: float) -> QueueDepth:
    counts = dict.fromkeys(STATES, 0)
    oldest: float | None = None
    for message in messages:
        counts[message_state(message, now_ms)] += 1
        sent = message.sent_timestamp
        if sent is not None and (oldest is None or sent < oldest):
            oldest = sent
    age = max(0.0, (now_ms - oldest) / 1000) if oldest is not None else 0.0
    return QueueDepth(name, oldest_age_seconds=age, **counts)


def combine(depths: Iterable[QueueDepth]) -> list[QueueDepth]:
    """One figure per queue name: a name used in several accounts or regions adds up."""
    by_name: dict[str, QueueDepth] = {}
    for depth in depths:
        seen = by_name.get(depth.queue)
        if seen is not None:
            depth = QueueDepth(
                depth.queue,
                seen.visible + depth.visible,
                seen.in_flight + depth.in_flight,
                seen.delayed + depth.delayed,
                max(seen.oldest_age_seconds, depth.oldest_age_seconds),
            )
        by_name[depth.queue] = depth
    return [by_name[name] for name in sorted(by_name)]


def metric_families(depths: Iterable[QueueDepth]) -> list[Metric]:
    messages = GaugeMetricFamily(
        "echobase_queue_messages", "Messages in the queue, by state", labels=["queue", "state"]
    )
    age = GaugeMetricFamily(
        "echobase_queue_oldest_message_age_seconds",
        "Age of the queue's oldest message (any state); 0 when the queue is empty",
        labels=["queue"],
    )
    for depth in depths:
        for state in STATES:
            messages.add_metric([depth.queue, state], depth.count(state))
        age.add_metric([depth.queue], depth.oldest_age_seconds)
    return [messages, age]


def moto_depths() -> list[QueueDepth]:
    """Every queue of this process's moto, read without taking its locks: copies of its
    containers, each made in one step under the GIL."""
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import sqs_backends

    now = unix_time_millis()
    depths = []
    for regions in list(sqs_backends.values()):
        for backend in list(regions.values()):
            for name, queue in list(backend.queues.items()):
                depths.append(queue_depth(name, list(queue._messages), now))
    return combine(depths)


class QueueCollector:
    def __init__(self, depths: Callable[[], list[QueueDepth]] = moto_depths) -> None:
        self.depths = depths

    def collect(self) -> Iterator[Metric]:
        yield from metric_families(self.depths())


class QueueMetrics:
    """WSGI middleware answering ``GET /metrics`` before moto, which would otherwise take
    any path for an AWS call (queue URLs are ``/<account>/<name>``, so none is this one)."""

    def __init__(self, app: WsgiApp, collector: QueueCollector | None = None) -> None:
        self.app = app
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector or QueueCollector())

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH or environ.get("REQUEST_METHOD") != "GET":
            return self.app(environ, start_response)
        encode, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        body = encode(self.registry)
        start_response(
            "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        )
        return [body]
