"""The API gateway application: JWT auth, products, order intake onto the colour's queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware

from echobase import __version__
from echobase.app.core import metrics
from echobase.app.core.config import GatewaySettings, gateway_settings
from echobase.app.core.http_metrics import HttpMetricsMiddleware
from echobase.app.core.http_tracing import ServerSpanMiddleware
from echobase.app.core.logging import configure_logging
from echobase.app.core.serve import follow_server_process
from echobase.app.core.telemetry import FASTAPI_TELEMETRY_OFF, configure_tracing
from echobase.app.gateway.api.routes import auth, health, orders, products
from echobase.app.gateway.context import gateway_lifespan
from echobase.app.gateway.errors import install_error_handlers
from echobase.app.gateway.middleware import EdgeMiddleware, RateLimitMiddleware
from echobase.app.gateway.schemas import ERROR_RESPONSES

API_PREFIX = "/api/v1"


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    follow_server_process()  # in each uvicorn worker, which imports and calls this
    settings = settings or gateway_settings()
    configure_logging("api-gateway", settings.colour, settings.log_level, settings.release)
    tracing = configure_tracing("api-gateway", settings)
    if settings.fault_order_error_ratio:
        structlog.get_logger().warning(
            "fault injection is on: a share of multi-item orders answers 500",
            fault_order_error_ratio=settings.fault_order_error_ratio,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with gateway_lifespan(app, settings):
            yield
        tracing.shutdown()  # the last spans reach the store

    app = FastAPI(
        title="echobase API gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=FASTAPI_TELEMETRY_OFF,
    )
    api = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES)
    for module in (auth, products, orders):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    app.add_route(metrics.METRICS_PATH, metrics.metrics, include_in_schema=False)
    install_error_handlers(app)

    # Added innermost first: the edge runs before everything else but the request metrics,
    # and sees every answer.
    app.add_middleware(
        RateLimitMiddleware,
        limiter=lambda: getattr(getattr(app.state, "ctx", None), "limiter", None),
        prefix=API_PREFIX + "/",
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Authorization", "X-Correlation-ID"],
        expose_headers=["X-Correlation-ID", "RateLimit-Limit", "RateLimit-Remaining"],
    )
    app.add_middleware(
        EdgeMiddleware,
        allowed_origins=settings.allowed_origins,
        trusted_proxies=settings.trusted_proxies,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout_seconds,
    )
    # Outside the edge: its refusals and its last-resort 500 are counted as answered.
    app.add_middleware(HttpMetricsMiddleware)
    # Outermost: the request's span is current when the edge picks the answer's
    # X-Correlation-ID, which is the trace id, and when the metrics take it as an exemplar.
    # Health probes and scrapes are not traced.
    app.add_middleware(ServerSpanMiddleware, excluded_paths=(health.PATH, metrics.METRICS_PATH))
    return app
