"""Batched order publishing against the real queue server: every caller learns its own
message's fate."""

from __future__ import annotations

import asyncio
import json

import pytest

from echobase.app.core.aws import sqs_client
from echobase.app.core.config import GatewaySettings
from echobase.app.gateway.publisher import OrderPublisher, PublishError
from echobase.platform.devstack import EMULATOR_AWS_ENV


@pytest.fixture
def settings(backing, monkeypatch) -> GatewaySettings:
    for name, value in EMULATOR_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return GatewaySettings(sqs_endpoint_url=backing.stack.aws_url)


async def publish_all(settings, queue_url: str, count: int, senders: int) -> list:
    async with sqs_client(settings, 5, 16) as sqs:
        publisher = OrderPublisher(sqs, queue_url, senders=senders)
        publisher.start()
        try:
            attrs = {"CorrelationId": {"DataType": "String", "StringValue": "c"}}
            return await asyncio.gather(
                *(publisher.publish(json.dumps({"n": n}), attrs) for n in range(count)),
                return_exceptions=True,
            )
        finally:
            await publisher.stop()


def test_concurrent_publishes_are_batched_and_each_acknowledged(backing, settings):
    queues = backing.new_queues()
    ids = asyncio.run(publish_all(settings, queues.queue_url, 95, senders=2))
    assert all(isinstance(i, str) for i in ids)
    assert len(set(ids)) == 95
    sqs = backing.stack.client("sqs")
    seen: dict[str, int] = {}
    while len(seen) < 95:
        got = sqs.receive_message(
            QueueUrl=queues.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        )
        messages = got.get("Messages", [])
        assert messages, f"only {len(seen)} of 95 messages arrived"
        for m in messages:
            seen[m["MessageId"]] = json.loads(m["Body"])["n"]
            assert m["MessageAttributes"]["CorrelationId"]["StringValue"] == "c"
    assert set(seen) == set(ids)
    # Each caller got the id of *its* message, not a neighbour's in the batch.
    assert [seen[i] for i in ids] == list(range(95))


def test_every_caller_fails_when_the_queue_refuses(backing, settings):
    missing = backing.stack.aws_url + "/123456789012/no-such-queue"
    results = asyncio.run(publish_all(settings, missing, 12, senders=2))
    assert all(isinstance(r, PublishError) for r in results)
