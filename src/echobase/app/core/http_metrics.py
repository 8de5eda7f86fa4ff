"""Requests and their durations per route, as plain ASGI middleware for the gateway.

Labels stay bounded whatever clients send: ``route`` is the matched route's template
(``/api/v1/orders/{order_id}``, never the path itself) or ``unmatched``; an unknown method
is ``other``; ``status`` is the answer's three digits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

from echobase.app.core.exemplars import bucket_sample, trace_exemplar, worker_exemplars

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

UNMATCHED = "unmatched"
OTHER_METHOD = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DURATION_NAME = "echobase_http_request_duration_seconds"
# 5 ms (a health check) to 10 s (past the gateway's own timeouts to its dependencies).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter(
    "echobase_http_requests_total",
    "Requests answered, by matched route template, method and status",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    DURATION_NAME,
    "Time from a request's arrival to its answer's last byte, by matched route template",
    ["route", "method"],
    buckets=DURATION_BUCKETS,
)


def route_template(scope: Scope) -> str:
    """The template of the route that answered, read after the app ran.

    FastAPI 0.16x puts an included router's own, unprefixed route in ``scope["route"]``
    (``/orders``) and the template as the app matched it (``/api/v1/orders``) in its
    effective route context; older versions put a copy with the prefix in ``scope["route"]``.
    """
    fastapi_scope = scope.get("fastapi")
    context = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    for candidate in (context, scope.get("route")):
        template = getattr(candidate, "path_format", None) or getattr(candidate, "path", None)
        if isinstance(template, str) and template.startswith("/"):
            return template
    return UNMATCHED


class SentStatus:
    """An ASGI send that notes the status of the answer it passes on (None until sent)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self.send(message)


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


def observe(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    exemplar = trace_exemplar()
    HTTP_REQUEST_DURATION.labels(route, method).observe(seconds, exemplar)
    store = worker_exemplars()
    if exemplar is not None and store is not None:
        labels = {"route": route, "method": method}
        store.record(
            bucket_sample(DURATION_NAME, labels, DURATION_BUCKETS, seconds), exemplar, seconds
        )


class HttpMetricsMiddleware:
    """Outside the edge, so the edge's own refusals (403, 408, 413, 429) and its last-resort
    500 are counted with the status the client saw."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = SentStatus(send)
        try:
            await self.app(scope, receive, sent)
        finally:
            # Nothing sent (an exception, or an app returning without an answer): the server
            # answers 500 itself.
            seconds = time.perf_counter() - started
            status = sent.status or 500
            observe(route_template(scope), method_label(scope["method"]), status, seconds)
