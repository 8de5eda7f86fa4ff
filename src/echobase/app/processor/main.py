"""The order processor process: the consumer loop plus /health and /metrics on its own port.

Two fixed endpoints need no request validation or OpenAPI: plain Starlette (FastAPI's base)
serves them, and the processor does not import FastAPI (5.1 MiB less on import, issue 19)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from echobase.app.core import metrics
from echobase.app.core.aws import sqs_client
from echobase.app.core.config import ProcessorSettings, processor_settings
from echobase.app.core.database import create_engine
from echobase.app.core.logging import configure_logging
from echobase.app.core.secrets import load_database_credentials
from echobase.app.core.telemetry import configure_tracing
from echobase.app.processor.consumer import OrderConsumer

log = structlog.get_logger()


async def dead_letter_queue(sqs: Any, settings: ProcessorSettings) -> tuple[str, int | None]:
    """The DLQ (from settings, else from the queue's redrive policy) and the policy's
    maxReceiveCount (None when the policy cannot be read)."""
    try:
        attrs = await sqs.get_queue_attributes(
            QueueUrl=settings.sqs_queue_url, AttributeNames=["RedrivePolicy"]
        )
        policy = json.loads(attrs["Attributes"]["RedrivePolicy"])
    except Exception:
        if not settings.sqs_dlq_url:
            raise
        return settings.sqs_dlq_url, None
    limit = int(policy["maxReceiveCount"]) if "maxReceiveCount" in policy else None
    if settings.sqs_dlq_url:
        return settings.sqs_dlq_url, limit
    arn = policy["deadLetterTargetArn"]
    url = (await sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1]))["QueueUrl"]
    return str(url), limit


def create_app(settings: ProcessorSettings | None = None) -> Starlette:
    settings = settings or processor_settings()
    configure_logging("order-processor", settings.colour, settings.log_level, settings.release)
    tracing = configure_tracing("order-processor", settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        credentials = await run_in_threadpool(load_database_credentials, settings)
        engine = create_engine(credentials, settings.db_pool_size)
        # Long polls hold the connection for up to 20 s: the read timeout must exceed that.
        async with sqs_client(settings, settings.wait_time_seconds + 10, 16) as sqs:
            dlq_url, max_receive_count = await dead_letter_queue(sqs, settings)
            consumer = OrderConsumer(settings, sqs, engine, dlq_url, max_receive_count)
            app.state.consumer = consumer
            pollers = [asyncio.create_task(consumer.run()) for _ in range(settings.pollers)]
            log.info("processor started", queue=settings.sqs_queue_url, pollers=settings.pollers)
            try:
                yield
            finally:
                consumer.stop()
                await asyncio.gather(*pollers, return_exceptions=True)
                await engine.dispose()
                log.info("processor stopped", processed=consumer.processed)
                tracing.shutdown()  # the last spans reach the store

    async def health(request: Request) -> JSONResponse:
        consumer: OrderConsumer = request.app.state.consumer
        healthy = consumer.healthy()
        last = consumer.last_poll_at
        body = {
            "status": "healthy" if healthy else "degraded",
            "colour": settings.colour,
            "version": settings.release,
            "lastPollAt": (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)) if last else None
            ),
            "processedCount": consumer.processed,
            "deadLetteredCount": consumer.dead_lettered,
            "databaseAvailable": not consumer.database_down,
            "queueAvailable": consumer.queue_error is None,
            "queueError": consumer.queue_error,
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    return Starlette(
        routes=[Route("/health", health), Route(metrics.METRICS_PATH, metrics.metrics)],
        lifespan=lifespan,
    )
