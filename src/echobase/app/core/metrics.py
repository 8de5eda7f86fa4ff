"""The order services' own metrics, and the ``/metrics`` endpoint the gateway and the
processor share (see ``exposition`` for the format and the multi-worker merge). Plain
Starlette: the processor serves it without FastAPI."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response

from echobase.app.core.exemplars import trace_exemplar
from echobase.app.core.exposition import metrics_response
from echobase.app.core.names import METRICS_PATH as METRICS_PATH  # its home before names

ORDERS_ACCEPTED = Counter("echobase_orders_accepted_total", "Orders queued by the gateway")
ORDERS_STORED = Counter("echobase_orders_stored_total", "Orders written by the processor")
ORDERS_DEAD_LETTERED = Counter(
    "echobase_orders_dead_lettered_total", "Messages the processor sent to the DLQ"
)
ORDERS_DUPLICATES = Counter(
    "echobase_orders_duplicates_total",
    "Redelivered orders the processor found already stored and skipped",
)
BATCH_SECONDS = Histogram("echobase_processor_batch_seconds", "Time to store one received batch")
ORDER_PROCESSING_SECONDS = Histogram(
    "echobase_order_processing_seconds",
    "From the queue's SentTimestamp to the order's row committed",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def observe_with_trace(histogram: Histogram, seconds: float) -> None:
    """Observe, with the current sampled span's trace id as the bucket's exemplar.

    Meant for the single-process processor: in multiprocess mode prometheus_client drops
    exemplars, and ``http_metrics`` shows how a gateway worker keeps them instead."""
    histogram.observe(seconds, trace_exemplar())


def metrics(request: Request) -> Response:
    return metrics_response(request.headers.get("accept"))
