"""The colour's order queue and its dead-letter queue, created idempotently."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ORDER_QUEUE = "order-processing-queue"
DEAD_LETTER_QUEUE = "order-processing-dlq"
MAX_RECEIVE_COUNT = 3


@dataclass(frozen=True)
class QueueUrls:
    queue_url: str
    dlq_url: str


def order_queue_attributes(dlq_arn: str, visibility_timeout: int) -> dict[str, str]:
    return {
        "VisibilityTimeout": str(visibility_timeout),
        "ReceiveMessageWaitTimeSeconds": "20",
        "MessageRetentionPeriod": str(4 * 24 * 3600),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        ),
    }


def ensure_queues(
    sqs: Any,
    queue_name: str = ORDER_QUEUE,
    dlq_name: str = DEAD_LETTER_QUEUE,
    visibility_timeout: int = 30,
) -> QueueUrls:
    """Create both queues or bring existing ones to the wanted attributes; safe to repeat."""
    dlq_url = sqs.create_queue(
        QueueName=dlq_name, Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    # Create bare, then set: CreateQueue on an existing queue with other attributes fails.
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url, Attributes=order_queue_attributes(dlq_arn, visibility_timeout)
    )
    return QueueUrls(queue_url, dlq_url)
