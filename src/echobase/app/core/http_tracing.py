"""The server span of each HTTP request, as plain ASGI middleware.

Written by hand in place of OpenTelemetry's FastAPI/ASGI instrumentation, for its cost:
measured by ``bench/server_spans.py``, the instrumentation matched the path against every
route of the app once more per request (Starlette had already matched it) and decoded every
header for each header it looked up, ~0.2 ms of CPU per request on top of the span itself,
the larger part of what tracing took from the gateway's intake. This span carries what the
HTTP semantic conventions (stable, v1.2x) ask of a server span, read from what the app
already worked out: the route template after routing, the status as it was sent.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from echobase.app.core.http_metrics import (
    UNMATCHED,
    ASGIApp,
    Receive,
    Scope,
    Send,
    SentStatus,
    route_template,
)
from echobase.app.core.telemetry import tracer as echobase_tracer

# The headers a span reads; the rest are never decoded.
_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})


class _Headers(Getter[Mapping[str, str]]):
    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_HEADERS = _Headers()


def _decoded(value: bytes) -> str:
    return value.decode("latin-1")  # HTTP header values are ISO-8859-1 by definition


def request_attributes(scope: Scope) -> tuple[dict[str, Any], dict[str, str]]:
    """The span's attributes known before the app runs, and the trace context headers."""
    method = scope["method"]
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if scope.get("query_string"):
        attributes["url.query"] = _decoded(scope["query_string"])
    server, client = scope.get("server"), scope.get("client")
    if server:
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    if client:
        attributes["client.address"], attributes["client.port"] = client[0], client[1]
    propagated: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name in _PROPAGATED:
            propagated[name.decode("latin-1")] = _decoded(value)
        elif name == b"user-agent":
            attributes["user_agent.original"] = _decoded(value)
    return attributes, propagated


class ServerSpanMiddleware:
    """Outermost: the request's span is current for everything inside it (the edge takes the
    answer's X-Correlation-ID from it, the request metrics their exemplars). Requests to
    ``excluded_paths`` (health probes, scrapes) are not traced."""

    def __init__(
        self,
        app: ASGIApp,
        excluded_paths: Collection[str] = (),
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.app = app
        self.excluded_paths = frozenset(excluded_paths)
        self.tracer = tracer or echobase_tracer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.excluded_paths:
            await self.app(scope, receive, send)
            return
        attributes, propagated = request_attributes(scope)
        span = self.tracer.start_span(
            scope["method"],
            context=propagate.extract(propagated, getter=_HEADERS),
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        sent = SentStatus(send)
        try:
            await self.app(scope, receive, sent)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            raise
        finally:
            _finish(span, scope, sent.status)
            otel_context.detach(token)


def _finish(span: trace.Span, scope: Scope, status: int | None) -> None:
    route = route_template(scope)
    if route != UNMATCHED:
        span.set_attribute("http.route", route)
        span.update_name(f"{scope['method']} {route}")
    if status is None:  # nothing was sent: the server answers 500 itself
        span.set_status(Status(StatusCode.ERROR, "no answer"))
    else:
        span.set_attribute("http.response.status_code", status)
        # A server span is an error for 5xx only: a 4xx is the client's.
        if status >= 500:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
    span.end()
