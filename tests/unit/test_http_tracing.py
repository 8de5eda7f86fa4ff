"""The gateway's server span (core/http_tracing), through a real FastAPI app in process:
names and attributes as the HTTP semantic conventions ask, the caller's trace continued,
5xx and exceptions as errors, and no span for excluded paths."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from echobase.app.core.http_tracing import ServerSpanMiddleware

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def traced_app() -> tuple[FastAPI, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    app = FastAPI()
    api = APIRouter(prefix="/api/v1")

    @api.post("/orders/{order_id}", status_code=201)
    async def order(order_id: int) -> dict[str, str]:
        current = trace.get_current_span().get_span_context()
        return {"trace_id": f"{current.trace_id:032x}"}

    @api.get("/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    @api.get("/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse({}, status_code=503)

    app.include_router(api)
    app.add_api_route("/health", lambda: {"status": "healthy"})
    app.add_middleware(
        ServerSpanMiddleware, excluded_paths=("/health",), tracer=provider.get_tracer("t")
    )
    return app, memory


def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw:8080") as http:
            return await http.request(method, path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


def only_span(memory: InMemorySpanExporter) -> ReadableSpan:
    (span,) = memory.get_finished_spans()
    return span


def test_a_request_is_one_server_span_named_by_its_route_template() -> None:
    app, memory = traced_app()
    answer = call(app, "POST", "/api/v1/orders/7?x=1", headers={"User-Agent": "shopper/1"})
    assert answer.status_code == 201
    span = only_span(memory)
    assert span.name == "POST /api/v1/orders/{order_id}" and span.kind is SpanKind.SERVER
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "url.path": "/api/v1/orders/7",
        "url.query": "x=1",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "server.address": "gw",
        "server.port": 8080,
        "client.address": "127.0.0.1",
        "client.port": 123,
        "user_agent.original": "shopper/1",
        "http.route": "/api/v1/orders/{order_id}",
        "http.response.status_code": 201,
    }
    assert span.status.status_code is StatusCode.UNSET
    # The span is current inside the app: the edge and the metrics read it there.
    assert answer.json()["trace_id"] == f"{span.context.trace_id:032x}"


def test_the_callers_trace_context_is_continued() -> None:
    app, memory = traced_app()
    call(
        app,
        "POST",
        "/api/v1/orders/1",
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    span = only_span(memory)
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID


def test_a_5xx_answer_is_an_error_and_a_4xx_is_not() -> None:
    app, memory = traced_app()
    assert call(app, "GET", "/api/v1/unavailable").status_code == 503
    assert call(app, "POST", "/api/v1/orders/not-a-number").status_code == 422
    unavailable, invalid = memory.get_finished_spans()
    assert unavailable.status.status_code is StatusCode.ERROR
    assert (unavailable.attributes or {})["error.type"] == "503"
    assert invalid.status.status_code is StatusCode.UNSET
    assert (invalid.attributes or {})["http.response.status_code"] == 422


def test_an_exception_is_recorded_on_the_span() -> None:
    app, memory = traced_app()
    assert call(app, "GET", "/api/v1/broken").status_code == 500
    span = only_span(memory)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "RuntimeError"
    assert [event.name for event in span.events] == ["exception"]


@pytest.mark.parametrize("path", ["/nowhere", "/health"])
def test_unmatched_paths_have_no_route_and_excluded_ones_no_span(path: str) -> None:
    app, memory = traced_app()
    call(app, "GET", path)
    spans = memory.get_finished_spans()
    if path == "/health":
        assert spans == ()
    else:
        (span,) = spans
        assert span.name == "GET" and "http.route" not in (span.attributes or {})
