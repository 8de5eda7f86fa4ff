"""``/metrics`` in the format the scraper asks for, for every service.

Prometheus asks for OpenMetrics when its exemplar storage is on, and exemplars exist only in
OpenMetrics; other scrapers get the classic text format. In multiprocess mode (the gateway's
uvicorn workers) the registry is the merge of every worker's files, exemplars included."""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.responses import Response

from echobase.app.core.exemplars import MULTIPROC_DIR, ExemplarMultiProcessCollector


def registry() -> CollectorRegistry:
    directory = os.environ.get(MULTIPROC_DIR)
    if not directory:
        return REGISTRY
    merged = CollectorRegistry()
    merged.register(ExemplarMultiProcessCollector(directory))
    return merged


def metrics_response(accept: str | None) -> Response:
    encode, content_type = choose_encoder(accept or "")
    return Response(encode(registry()), headers={"Content-Type": content_type})
