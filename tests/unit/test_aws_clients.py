"""A service's SDK clients read botocore's data once: its Secrets Manager clients (from
threads) and its SQS client (aiobotocore) share one loader, so the endpoint and service
descriptions are parsed once per process, not once per session (issue 19's memory)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

from botocore.config import Config

from echobase.app.core.aws import CALLED_SERVICES, botocore_data, sharing_botocore_data, sqs_client
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


def test_endpoint_data_keeps_the_called_services_only_and_resolves_as_before(monkeypatch) -> None:
    """AWS's own endpoints (no endpoint URL, as in production) come out the same from the
    filtered data as from botocore's unfiltered loader, in ordinary, FIPS and China regions:
    the data still counts as botocore's own, so the endpoint rule sets decide, not the
    legacy entries (with data of its own, botocore would hand them the legacy answer)."""
    import botocore.session
    from botocore.loaders import Loader

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "echobase-local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "echobase-local")
    plain = botocore.session.get_session()
    plain.register_component("data_loader", Loader())
    ours = sharing_botocore_data(botocore.session.get_session())
    cases = [
        ("sqs", "us-east-1", {}),
        ("sqs", "eu-west-3", {}),
        ("secretsmanager", "us-gov-west-1", {"use_fips_endpoint": True}),
        ("secretsmanager", "cn-north-1", {}),
        ("sts", "us-east-1", {}),
    ]
    for service, region, options in cases:
        made = [
            session.create_client(service, region_name=region, config=Config(**options))
            for session in (plain, ours)
        ]
        assert made[0].meta.endpoint_url == made[1].meta.endpoint_url, (service, region)
    assert ours._get_internal_component("endpoint_resolver").uses_builtin_data
    kept = set()
    for partition in botocore_data().load_data("endpoints")["partitions"]:
        kept |= set(partition["services"])
    assert kept and kept <= CALLED_SERVICES
    assert (
        "ec2"
        in plain.get_component("data_loader").load_data("endpoints")["partitions"][0]["services"]
    )
