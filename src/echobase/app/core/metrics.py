"""Prometheus exposition shared by both services (multi-process aware for uvicorn workers)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

ORDERS_ACCEPTED = Counter("echobase_orders_accepted_total", "Orders queued by the gateway")
ORDERS_STORED = Counter("echobase_orders_stored_total", "Orders written by the processor")
ORDERS_DEAD_LETTERED = Counter(
    "echobase_orders_dead_lettered_total", "Messages the processor sent to the DLQ"
)
ORDERS_DUPLICATES = Counter(
    "echobase_orders_duplicates_total", "Redelivered orders already stored, skipped"
)
BATCH_SECONDS = Histogram("echobase_processor_batch_seconds", "Time to store one received batch")

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
