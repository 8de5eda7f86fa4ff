"""The services' AWS clients: async SQS, Secrets Manager from threads, one botocore loader; endpoint
URLs point them at moto locally."""

from __future__ import annotations

import functools
from typing import Any

from botocore.loaders import Loader

from echobase.app.core.config import ServiceSettings
from echobase.aws_endpoints import EndpointsOf

# What the services call, and what botocore calls to find credentials in AWS (a role's
# web identity, SSO): the endpoint data of the ~400 other services is dropped once read.
CALLED_SERVICES = frozenset({"sqs", "secretsmanager", "sts", "sso", "sso-oidc"})


@functools.cache
def botocore_data() -> Loader:
    """The process's one reader of botocore's data files, for each of its SDK sessions.

    A session parses the endpoint and service descriptions it needs into its own loader, and
    a service runs two sessions: aiobotocore's for SQS and a plain one for Secrets Manager
    (called from threads). Apart, that was 7.2 MiB parsed twice in every gateway and
    processor (tracemalloc, issue 19)."""
    return EndpointsOf(CALLED_SERVICES)


def sharing_botocore_data(session: Any) -> Any:
    session.register_component("data_loader", botocore_data())
    return session


@functools.cache
def secrets_session() -> Any:
    """The synchronous session that Secrets Manager clients are made from (one, as boto3's
    default session was; its clients are safe to use from any thread)."""
    import botocore.session

    return sharing_botocore_data(botocore.session.get_session())


def sqs_client(settings: ServiceSettings, read_timeout: float, max_connections: int) -> Any:
    """An async SQS client context manager (``async with sqs_client(...) as sqs``)."""
    # Here, not at the top: the MCP service reads secrets through this module and has no
    # use for aiobotocore and aiohttp (12 MiB).
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    return sharing_botocore_data(get_session()).create_client(
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
