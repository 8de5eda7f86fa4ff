"""The recommendations service as an MCP server (the official SDK, Streamable HTTP).

Stateless and answering plain JSON: every tool call stands alone, so any client may call
at any time, a restart loses nothing, and nginx can pass requests through unbuffered.
Every request to the MCP endpoint must carry the environment's API key (``X-API-Key``, or
``Authorization: Bearer``); ``/health`` and ``/metrics`` stay on the service's own port,
which the load balancer does not route to."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

import structlog
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import Counter, Histogram
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from echobase import __version__
from echobase.app.core.config import McpSettings, mcp_settings
from echobase.app.core.database import create_engine, reachable
from echobase.app.core.exposition import metrics_response
from echobase.app.core.logging import configure_logging
from echobase.app.core.names import MCP_PATH
from echobase.app.core.secrets import load_database_credentials, load_key
from echobase.app.core.serve import follow_server_process
from echobase.app.core.telemetry import configure_tracing
from echobase.app.db.models import Order
from echobase.app.mcp.contract import (
    ORDER_STATUS_TOOL,
    RECOMMENDED_PRODUCTS_TOOL,
    RecommendedProduct,
)
from echobase.app.mcp.recommendations import Recommender

log = structlog.get_logger()

TOOL_CALLS = Counter(
    "echobase_mcp_tool_calls_total", "MCP tool calls by tool and outcome", ["tool", "outcome"]
)
TOOL_SECONDS = Histogram("echobase_mcp_tool_seconds", "Time to answer one tool call", ["tool"])
REFUSED = Counter("echobase_mcp_refused_total", "MCP requests refused for their API key")

# Through the LB the Host header is the bare name ($host); on the own port it has the port.
TRANSPORT_SECURITY = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1", "localhost", "127.0.0.1:*", "localhost:*"],
    allowed_origins=["https://127.0.0.1:*", "https://localhost:*", "https://127.0.0.1"],
)

_T = TypeVar("_T")


@dataclass
class Held:
    """What the process holds once started: filled in by the lifespan."""

    api_key: bytes = b""
    engine: AsyncEngine | None = None
    recommender: Recommender | None = None


class OrderStatus(BaseModel):
    found: bool
    orderId: str
    status: str | None = None
    productName: str | None = None
    quantity: int | None = None
    totalPrice: float | None = None
    createdAt: str | None = None


def load_api_key(settings: McpSettings) -> bytes:
    return load_key(settings, settings.mcp_key_secret_name).encode()


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    key = headers.get(b"x-api-key")
    if key:
        return key.strip()
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() == b"bearer" and token.strip():
        return token.strip()
    return None


class RequireApiKey:
    """Refuses (401) any request to the wrapped app without the environment's key."""

    def __init__(self, app: ASGIApp, held: Held) -> None:
        self.app = app
        self.held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = presented_key(dict(scope["headers"]))
            problem = None
            if key is None:
                problem = "API key required (X-API-Key or Authorization: Bearer)"
            elif not self.held.api_key or not hmac.compare_digest(key, self.held.api_key):
                problem = "invalid API key"
            if problem is not None:
                REFUSED.inc()
                response = JSONResponse(
                    {"error": problem}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _timed(tool: str, answer: Callable[[], Awaitable[_T]]) -> _T:
    started = time.perf_counter()
    try:
        result = await answer()
    except Exception as exc:
        TOOL_CALLS.labels(tool, "error").inc()
        log.warning("tool failed", tool=tool, error=type(exc).__name__)
        raise
    finally:
        TOOL_SECONDS.labels(tool).observe(time.perf_counter() - started)
    TOOL_CALLS.labels(tool, "ok").inc()
    return result


def build_server(held: Held) -> MCPServer:
    server: MCPServer = MCPServer(
        "echobase-recommendations",
        version=__version__,
        instructions="Product recommendations and order status for echobase's users.",
    )

    @server.tool(name=RECOMMENDED_PRODUCTS_TOOL)
    async def get_recommended_products(userId: int) -> list[RecommendedProduct]:
        """Products this user may like: the most ordered lately that they never ordered."""

        async def answer() -> list[RecommendedProduct]:
            assert held.recommender is not None
            return await held.recommender.for_user(userId)

        return await _timed(RECOMMENDED_PRODUCTS_TOOL, answer)

    @server.tool(name=ORDER_STATUS_TOOL)
    async def get_order_status(userId: int, orderId: str) -> OrderStatus:
        """The status of one of this user's orders, by the orderId its placing answered.
        Read-only; an order still queued (or another user's) is reported as not found."""

        async def answer() -> OrderStatus:
            assert held.engine is not None
            query = select(
                Order.order_status,
                Order.product_name,
                Order.quantity,
                Order.total_price,
                Order.created_at,
            ).where(Order.order_uid == orderId[:36], Order.user_id == userId)
            async with held.engine.connect() as conn:
                row = (await conn.execute(query)).first()
            if row is None:
                return OrderStatus(found=False, orderId=orderId)
            created = row.created_at.replace(tzinfo=UTC).isoformat(timespec="milliseconds")
            return OrderStatus(
                found=True,
                orderId=orderId,
                status=row.order_status,
                productName=row.product_name,
                quantity=row.quantity,
                totalPrice=float(row.total_price),
                createdAt=created.replace("+00:00", "Z"),
            )

        return await _timed(ORDER_STATUS_TOOL, answer)

    return server


def create_app(settings: McpSettings | None = None) -> Starlette:
    follow_server_process()
    settings = settings or mcp_settings()
    # Before the SDK's server: it would otherwise install a handler of its own.
    configure_logging("mcp", "none", settings.log_level, settings.release)
    # The SDK's own server spans join the trace of the gateway's call (a login's).
    tracing = configure_tracing("mcp", settings)
    held = Held()
    server = build_server(held)
    mcp_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=TRANSPORT_SECURITY,
        host=settings.host,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        held.api_key = await run_in_threadpool(load_api_key, settings)
        credentials = await run_in_threadpool(load_database_credentials, settings)
        held.engine = create_engine(credentials, settings.db_pool_size)
        held.recommender = Recommender(
            held.engine,
            settings.recommendation_days,
            settings.recommendation_limit,
            settings.popular_refresh_seconds,
        )
        refresher = asyncio.create_task(held.recommender.keep_fresh())
        try:
            async with mcp_app.router.lifespan_context(mcp_app):
                log.info("mcp started", port=settings.port, path=MCP_PATH)
                yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await held.engine.dispose()
            tracing.shutdown()

    async def health(_: Request) -> JSONResponse:
        recommender = held.recommender
        database = held.engine is not None and await reachable(held.engine)
        ranked_at = recommender.ranked_at if recommender else None
        body: dict[str, Any] = {
            "status": "healthy" if database else "degraded",
            "version": __version__,
            "checks": {
                "database": {"status": "healthy" if database else "unhealthy"},
                "ranking": {
                    "products": len(recommender.ranking) if recommender else 0,
                    "ageSeconds": None
                    if ranked_at is None
                    else round(time.monotonic() - ranked_at, 1),
                },
            },
        }
        return JSONResponse(body, status_code=200 if database else 503)

    async def metrics(request: Request) -> Response:
        return metrics_response(request.headers.get("accept"))

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route(MCP_PATH, RequireApiKey(mcp_app, held), methods=["GET", "POST", "DELETE"]),
        ],
        lifespan=lifespan,
    )
