"""Async AWS clients of the services; endpoint URLs point them at moto locally."""

from __future__ import annotations

from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from echobase.app.core.config import ServiceSettings


def sqs_client(settings: ServiceSettings, read_timeout: float, max_connections: int) -> Any:
    """An async SQS client context manager (``async with sqs_client(...) as sqs``)."""
    return get_session().create_client(
        "sqs",
        region_name=settings.aws_region,
        endpoint_url=settings.sqs_endpoint_url,
        config=AioConfig(
            connect_timeout=2,
            read_timeout=read_timeout,
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=max_connections,
        ),
    )
