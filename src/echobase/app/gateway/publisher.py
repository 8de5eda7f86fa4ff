"""Order messages onto the colour's queue, batched naturally.

One SendMessage per order spends most of its CPU in the SDK and in the queue server per
call, not per message. Requests therefore hand their message to a publisher: each sender
takes whatever is waiting (up to SQS's batch limit of 10) and sends it as one
SendMessageBatch. Under light load a batch is one message and nothing waits; under heavy load
batches fill up and the per-order cost drops. Every request still learns the fate of its own
message: its MessageId, or an error, before the gateway answers 201.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry.trace import SpanKind, Status, StatusCode

from echobase.app.core.telemetry import inject_into_attributes, tracer

log = structlog.get_logger()

SQS_BATCH_LIMIT = 10


class PublishError(RuntimeError):
    """The queue did not take the message; the reason is safe to log, not to show."""


@dataclass
class _Pending:
    body: str
    attributes: dict[str, Any]
    done: asyncio.Future[str]


class OrderPublisher:
    def __init__(self, sqs: Any, queue_url: str, senders: int = 4) -> None:
        self._sqs, self._queue_url, self._senders = sqs, queue_url, senders
        self._queue_name = queue_url.rsplit("/", 1)[-1]
        self._waiting: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._sender()) for _ in range(self._senders)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._waiting.empty():  # nobody will send these now
            item = self._waiting.get_nowait()
            if not item.done.done():
                item.done.set_exception(PublishError("gateway stopping"))

    async def publish(self, body: str, attributes: dict[str, Any]) -> str:
        """Queue one message; return its MessageId once SQS has accepted it. The message
        carries the trace context of its own send span, the parent of the consumer's work."""
        with tracer().start_as_current_span(
            f"send {self._queue_name}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "aws_sqs",
                "messaging.operation.type": "send",
                "messaging.operation.name": "SendMessageBatch",
                "messaging.destination.name": self._queue_name,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            attributes = dict(attributes)
            inject_into_attributes(attributes)
            done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            await self._waiting.put(_Pending(body, attributes, done))
            try:
                message_id = await done
            except PublishError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                span.set_attribute("error.type", str(exc))
                raise
            span.set_attribute("messaging.message.id", message_id)
            return message_id

    async def _sender(self) -> None:
        while True:
            batch = [await self._waiting.get()]
            while len(batch) < SQS_BATCH_LIMIT and not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            await self._send(batch)

    async def _send(self, batch: list[_Pending]) -> None:
        entries = [
            {"Id": str(i), "MessageBody": p.body, "MessageAttributes": p.attributes}
            for i, p in enumerate(batch)
        ]
        try:
            result = await self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        except Exception as exc:
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(PublishError(type(exc).__name__))
            return
        for ok in result.get("Successful", []):
            pending = batch[int(ok["Id"])]
            if not pending.done.done():
                pending.done.set_result(str(ok["MessageId"]))
        for failed in result.get("Failed", []):
            pending = batch[int(failed["Id"])]
            if not pending.done.done():
                pending.done.set_exception(PublishError(str(failed.get("Code", "Failed"))))
        for pending in batch:  # an entry SQS did not mention is not acknowledged
            if not pending.done.done():
                pending.done.set_exception(PublishError("no result for entry"))
