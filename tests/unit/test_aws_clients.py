"""A service's SDK clients read botocore's data once: its Secrets Manager clients (from
threads) and its SQS client (aiobotocore) share one loader, so the endpoint and service
descriptions are parsed once per process, not once per session (issue 19's memory)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

from echobase.app.core.aws import botocore_data, sqs_client
from echobase.app.core.secrets import secrets_client

SETTINGS: Any = SimpleNamespace(
    aws_region="us-east-1",
    secrets_endpoint_url="http://127.0.0.1:9",
    sqs_endpoint_url="http://127.0.0.1:9",
)


def test_secrets_and_sqs_clients_share_one_loader(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "echobase-local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "echobase-local")

    async def loaders() -> list[Any]:
        async with sqs_client(SETTINGS, 5, 4) as sqs:
            return [sqs._loader, secrets_client(SETTINGS)._loader, secrets_client(SETTINGS)._loader]

    assert all(loader is botocore_data() for loader in asyncio.run(loaders()))


def test_reading_a_secret_imports_no_more_sdk_than_botocore() -> None:
    """The MCP service only reads secrets: aiobotocore and aiohttp (12 MiB) are the SQS
    client's, and boto3 adds nothing over botocore (2.9 MiB)."""
    probe = (
        "import sys, types, echobase.app.mcp.server\n"
        "from echobase.app.core.secrets import secrets_client\n"
        "secrets_client(types.SimpleNamespace(aws_region='us-east-1',"
        " secrets_endpoint_url='http://127.0.0.1:9'))\n"
        "print(sorted({'boto3', 'aiobotocore', 'aiohttp'} & set(sys.modules)))"
    )
    env = {"AWS_ACCESS_KEY_ID": "echobase-local", "AWS_SECRET_ACCESS_KEY": "echobase-local"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.stdout.strip() == "[]", done.stderr
