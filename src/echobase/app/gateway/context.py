"""Everything a gateway process holds for its lifetime, built once at start-up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.concurrency import run_in_threadpool

from echobase.app.core.aws import sqs_client
from echobase.app.core.config import GatewaySettings
from echobase.app.core.database import create_engine
from echobase.app.core.secrets import load_database_credentials, load_jwt_key
from echobase.app.gateway.catalog import Catalog
from echobase.app.gateway.health import HealthChecker
from echobase.app.gateway.publisher import OrderPublisher
from echobase.app.gateway.ratelimit import LoginLockout, RateLimiter
from echobase.app.gateway.recommendations import RecommendationsClient

log = structlog.get_logger()


@dataclass
class GatewayContext:
    settings: GatewaySettings
    engine: AsyncEngine
    sqs: Any
    jwt_key: str
    catalog: Catalog
    health: HealthChecker
    limiter: RateLimiter
    lockout: LoginLockout
    publisher: OrderPublisher
    recommendations: RecommendationsClient


@contextlib.asynccontextmanager
async def gateway_lifespan(app: FastAPI, settings: GatewaySettings) -> AsyncIterator[None]:
    credentials = await run_in_threadpool(load_database_credentials, settings)
    jwt_key = await run_in_threadpool(load_jwt_key, settings)
    engine = create_engine(credentials, settings.db_pool_size)
    counters = create_engine(credentials, settings.db_pool_size, autocommit=True)
    # Statements (never their parameters) as spans of the request that runs them. The
    # instrumentation declares SQLAlchemy < 2.1 and otherwise instruments nothing, logging
    # one error; the engine events it hooks are unchanged in 2.1 (test_observability checks
    # the spans), so its version check is skipped.
    SQLAlchemyInstrumentor().instrument(
        engines=[engine.sync_engine, counters.sync_engine], skip_dep_check=True
    )
    catalog = Catalog(engine, settings.catalog_refresh_seconds)
    async with contextlib.AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(sqs_client(settings, 5, 64))
        stack.push_async_callback(engine.dispose)
        stack.push_async_callback(counters.dispose)
        app.state.ctx = GatewayContext(
            settings=settings,
            engine=engine,
            sqs=sqs,
            jwt_key=jwt_key,
            catalog=catalog,
            health=HealthChecker(
                engine, sqs, settings.sqs_queue_url, settings.health_cache_seconds
            ),
            limiter=RateLimiter(
                counters,
                settings.rate_limit_window_seconds,
                settings.rate_limit_max,
                connections=settings.db_pool_size,
            ),
            lockout=LoginLockout(
                engine, settings.login_max_failures, settings.login_lockout_seconds
            ),
            publisher=OrderPublisher(sqs, settings.sqs_queue_url, settings.sqs_senders),
            recommendations=RecommendationsClient(settings),
        )
        stack.push_async_callback(app.state.ctx.limiter.close)  # before counters.dispose
        app.state.ctx.publisher.start()
        stack.push_async_callback(app.state.ctx.publisher.stop)
        app.state.ctx.recommendations.start()
        stack.push_async_callback(app.state.ctx.recommendations.stop)
        refresher = asyncio.create_task(catalog.keep_fresh())
        log.info("gateway started", port=settings.port, release=settings.release)
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
