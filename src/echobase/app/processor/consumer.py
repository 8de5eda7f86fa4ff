"""The order processor's loop: receive a batch, store it exactly once, then delete it.

Rules that keep every order:
- a message is deleted only after the transaction holding its row committed;
- the insert is idempotent on order_uid, so a redelivery never makes a second row;
- while the database is down the batch in hand is held (its visibility extended) instead of
  being received again and again, which would push good orders into the DLQ;
- a message that can never be stored goes to the DLQ with its reason.

Each message's handling is a span in the trace of the request that published it (the W3C
context travels in its attributes): receive, every insert attempt, the delete or the move to
the DLQ. A batch shares one statement per step, so each message's trace records that step
with the statement's own times.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from echobase.app.core.config import ProcessorSettings
from echobase.app.core.database import is_outage, reachable
from echobase.app.core.exemplars import trace_exemplar
from echobase.app.core.metrics import (
    BATCH_SECONDS,
    ORDER_PROCESSING_SECONDS,
    ORDERS_DEAD_LETTERED,
    ORDERS_DUPLICATES,
    ORDERS_STORED,
)
from echobase.app.core.telemetry import context_from_attributes, span_ids, tracer
from echobase.app.db.models import Order
from echobase.app.messages import InvalidMessageError, OrderMessage, parse_order

log = structlog.get_logger()

_INSERT = insert(Order.__table__)
# A redelivered order hits the unique order_uid and changes nothing.
_UPSERT = _INSERT.on_duplicate_key_update(order_uid=_INSERT.inserted.order_uid)
# Which of a batch are stored already (redeliveries): the upsert's row count cannot say, as
# the driver counts a matched row like an inserted one (CLIENT_FOUND_ROWS).
_STORED_ALREADY = select(Order.order_uid).where(
    Order.order_uid.in_(bindparam("uids", expanding=True))
)


_DATABASE = {"db.system.name": "mariadb", "db.collection.name": "orders"}


@dataclass(frozen=True)
class Received:
    message_id: str
    receipt: str
    order: OrderMessage
    span: Span  # this message's processing, in the trace of the request that sent it
    receive_count: int
    message: dict[str, Any]  # as received: what the DLQ gets, attributes and all

    @property
    def sent_at(self) -> float | None:
        """When the queue accepted it (its SentTimestamp, epoch seconds)."""
        try:
            return int(self.message["Attributes"]["SentTimestamp"]) / 1000
        except (KeyError, TypeError, ValueError):
            return None


def _step(
    parents: Sequence[Span],
    name: str,
    kind: SpanKind,
    started: int,
    attributes: dict[str, Any],
    error: str | None = None,
) -> None:
    """One step shared by a batch, recorded in each message's trace with its real times."""
    ended = time.time_ns()
    for parent in parents:
        span = tracer().start_span(
            name,
            context=trace.set_span_in_context(parent),
            kind=kind,
            attributes=attributes,
            start_time=started,
        )
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=ended)


def _finish(span: Span, error: str | None = None) -> None:
    if error is not None:
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


class OrderConsumer:
    def __init__(
        self,
        settings: ProcessorSettings,
        sqs: Any,
        engine: AsyncEngine,
        dlq_url: str,
        max_receive_count: int | None = None,
    ) -> None:
        self.settings, self.sqs, self.engine, self.dlq_url = settings, sqs, engine, dlq_url
        # The redrive policy's limit: on its last delivery, an order that cannot be stored
        # is moved to the DLQ here, with its reason, rather than silently by the queue.
        self.max_receive_count = max_receive_count
        self.queue_name = settings.sqs_queue_url.rsplit("/", 1)[-1]
        self.processed = 0
        self.dead_lettered = 0
        self.last_poll_at: float | None = None  # wall clock, for humans
        self.last_poll_monotonic: float | None = None
        self.database_down = False
        self.queue_error: str | None = None  # why the last receive failed, until one works
        self._stopping = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def healthy(self) -> bool:
        window = 2 * max(self.settings.wait_time_seconds, 1)
        return (
            self.last_poll_monotonic is not None
            and time.monotonic() - self.last_poll_monotonic <= window
            and not self.database_down
            and self.queue_error is None
        )

    async def run(self) -> None:
        backoff = 0.5
        # The first poll returns at once, so health can say "polling" without a 20 s wait.
        wait_time = 0
        while not self.stopping:
            try:
                messages = await self._receive(wait_time)
            except Exception as exc:
                log.warning("receive failed", error=type(exc).__name__)
                self.queue_error = type(exc).__name__
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.settings.max_backoff_seconds)
                continue
            if messages is None:  # stopped while waiting
                break
            backoff = 0.5
            self.queue_error = None
            wait_time = self.settings.wait_time_seconds
            self.last_poll_at, self.last_poll_monotonic = time.time(), time.monotonic()
            if messages:
                # Not cancelled by a stop: the batch in hand is finished first.
                await self.handle_batch(messages)

    async def _receive(self, wait_time: int) -> list[dict[str, Any]] | None:
        receive = asyncio.ensure_future(
            self.sqs.receive_message(
                QueueUrl=self.settings.sqs_queue_url,
                MaxNumberOfMessages=self.settings.batch_size,
                WaitTimeSeconds=wait_time,
                AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                MessageAttributeNames=["All"],
            )
        )
        stop = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if receive not in done:
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receive
            return None
        return list(receive.result().get("Messages", []))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # --- one batch -----------------------------------------------------------------

    async def handle_batch(self, messages: Sequence[dict[str, Any]]) -> None:
        started = time.perf_counter()
        valid: list[Received] = []
        for message in messages:
            span = self._begin(message, len(messages))
            try:
                order = parse_order(message.get("Body", ""))
            except InvalidMessageError as exc:
                await self._dead_letter(message, str(exc), span)
                continue
            span.set_attribute("echobase.order_id", str(order.orderId))
            valid.append(
                Received(
                    message["MessageId"],
                    message["ReceiptHandle"],
                    order,
                    span,
                    _receive_count(message),
                    dict(message),
                )
            )
        if valid:
            await self._store(valid)
        BATCH_SECONDS.observe(time.perf_counter() - started)

    def _begin(self, message: dict[str, Any], batch_size: int) -> Span:
        """This message's process span, child of the send span that published it, from the
        moment the receive returned it (the receive's own start is a long poll's, which may
        precede the message). The receive and, later, the delete are events on it (a span
        each cost as much again as the rest of the trace here)."""
        span = tracer().start_span(
            f"process {self.queue_name}",
            context=context_from_attributes(message.get("MessageAttributes")),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "aws_sqs",
                "messaging.operation.type": "process",
                "messaging.destination.name": self.queue_name,
                "messaging.message.id": str(message.get("MessageId", "")),
                "messaging.batch.message_count": batch_size,
                "echobase.receive_count": _receive_count(message),
            },
        )
        span.add_event("received")
        return span

    async def _store(self, batch: list[Received]) -> None:
        delay = 0.5
        extended_at = time.monotonic()
        while True:
            try:
                await self._insert(batch)
            except Exception as exc:
                # An operational error while the database answers a ping is about this
                # batch (or transient, like a deadlock): retry row by row, never hold forever.
                if not is_outage(exc) or await reachable(self.engine):
                    await self._store_one_by_one(batch)
                    return
                if not self.database_down:
                    log.warning("database unavailable; holding batch", size=len(batch))
                self.database_down = True
                if self.stopping:
                    # Cannot finish this batch: hand it back now rather than in 30 s.
                    await self._release(batch)
                    return
                if time.monotonic() - extended_at > self.settings.visibility_timeout_seconds / 3:
                    await self._extend(batch)
                    extended_at = time.monotonic()
                await self._sleep(delay)
                delay = min(delay * 2, self.settings.max_backoff_seconds)
                continue
            if self.database_down:
                log.info("database back; batch stored", size=len(batch))
            self.database_down = False
            await self._delete(batch)
            return

    async def _store_one_by_one(self, batch: list[Received]) -> None:
        stored: list[Received] = []
        for item in batch:
            try:
                await self._insert([item])
            except Exception as exc:
                reason = type(exc).__name__
                if self.max_receive_count and item.receive_count >= self.max_receive_count:
                    await self._dead_letter_order(item, f"not stored: {reason}")
                    continue
                # Left in the queue: redelivered after the visibility timeout, and moved to
                # the DLQ on its last delivery (above) or by the redrive policy.
                log.warning(
                    "order not stored; will retry",
                    message_id=item.message_id,
                    order_id=str(item.order.orderId),
                    receive_count=item.receive_count,
                    error=reason,
                    **span_ids(item.span),
                )
                _finish(item.span, f"not stored: {reason}")
                continue
            stored.append(item)
        await self._delete(stored)

    async def _insert(self, batch: list[Received]) -> None:
        started = time.time_ns()
        error: str | None = None
        try:
            async with self.engine.begin() as conn:
                uids = [str(r.order.orderId) for r in batch]
                stored = set((await conn.execute(_STORED_ALREADY, {"uids": uids})).scalars())
                await conn.execute(_UPSERT, [r.order.row() for r in batch])
            # Stored before, or earlier in this very batch (one message received twice).
            duplicates, seen = 0, stored
            for item in batch:
                uid = str(item.order.orderId)
                item.span.set_attribute("echobase.duplicate", uid in seen)
                duplicates += uid in seen
                seen.add(uid)
            if duplicates:
                ORDERS_DUPLICATES.inc(duplicates)
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            statement = {
                **_DATABASE,
                "db.operation.name": "INSERT",
                "db.query.summary": "INSERT orders",
                "db.operation.batch.size": len(batch),
            }
            _step(
                [r.span for r in batch], "INSERT orders", SpanKind.CLIENT, started, statement, error
            )

    # --- queue operations --------------------------------------------------------------

    async def _delete(self, batch: list[Received]) -> None:
        if not batch:
            return
        entries = [{"Id": str(i), "ReceiptHandle": r.receipt} for i, r in enumerate(batch)]
        try:
            result = await self.sqs.delete_message_batch(
                QueueUrl=self.settings.sqs_queue_url, Entries=entries
            )
            failed = {int(f["Id"]) for f in result.get("Failed", [])}
            error = None
        except Exception as exc:
            # The rows are committed; a redelivery is harmless thanks to order_uid.
            log.warning("delete failed; messages will be redelivered", error=type(exc).__name__)
            failed = set(range(len(batch)))
            error = type(exc).__name__
        settled = time.time_ns()
        for index, item in enumerate(batch):
            deleted = index not in failed
            if deleted:
                item.span.add_event("deleted", timestamp=settled)
                if item.sent_at is not None:  # the queue took it -> its row is committed
                    ORDER_PROCESSING_SECONDS.observe(
                        max(settled / 1e9 - item.sent_at, 0.0), trace_exemplar(item.span)
                    )
            else:
                attributes = {"error.type": error or "DeleteMessageBatch entry failed"}
                item.span.add_event("delete failed", attributes, timestamp=settled)
            log.info(
                "order stored",
                order_id=str(item.order.orderId),
                message_id=item.message_id,
                receive_count=item.receive_count,
                deleted=deleted,
                **span_ids(item.span),
            )
            item.span.end()
        self.processed += len(batch) - len(failed)
        ORDERS_STORED.inc(len(batch) - len(failed))

    async def _change_visibility(self, batch: list[Received], seconds: int) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": r.receipt, "VisibilityTimeout": seconds}
            for i, r in enumerate(batch)
        ]
        try:
            await self.sqs.change_message_visibility_batch(
                QueueUrl=self.settings.sqs_queue_url, Entries=entries
            )
        except Exception as exc:
            log.warning("visibility change failed", error=type(exc).__name__)

    async def _extend(self, batch: list[Received]) -> None:
        await self._change_visibility(batch, self.settings.visibility_timeout_seconds)

    async def _release(self, batch: list[Received]) -> None:
        await self._change_visibility(batch, 0)
        for item in batch:
            item.span.add_event("handed back to the queue: processor stopping")
            _finish(item.span, "not stored: processor stopping")

    async def _dead_letter_order(self, item: Received, reason: str) -> None:
        await self._dead_letter(item.message, reason, item.span)

    async def _dead_letter(self, message: dict[str, Any], reason: str, span: Span) -> None:
        log.warning(
            "message to DLQ", message_id=message.get("MessageId"), reason=reason, **span_ids(span)
        )
        attributes = {
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue")}
            for name, value in (message.get("MessageAttributes") or {}).items()
            if "StringValue" in value
        }
        attributes["FailureReason"] = {"DataType": "String", "StringValue": reason[:256]}
        attributes["SourceMessageId"] = {
            "DataType": "String",
            "StringValue": str(message.get("MessageId", "unknown")),
        }
        dlq = self.dlq_url.rsplit("/", 1)[-1]
        started = time.time_ns()
        move = {
            "messaging.system": "aws_sqs",
            "messaging.destination.name": dlq,
            "messaging.operation.type": "send",
            "messaging.operation.name": "SendMessage",
            "echobase.failure_reason": reason[:256],
        }
        try:
            await self.sqs.send_message(
                QueueUrl=self.dlq_url,
                MessageBody=message.get("Body") or "(empty)",
                MessageAttributes=attributes,
            )
            await self.sqs.delete_message(
                QueueUrl=self.settings.sqs_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except Exception as exc:
            # Not deleted: the redrive policy still moves it to the DLQ after 3 receives.
            log.warning("DLQ send failed", error=type(exc).__name__)
            _step([span], f"send {dlq}", SpanKind.PRODUCER, started, move, type(exc).__name__)
            _finish(span, reason)
            return
        _step([span], f"send {dlq}", SpanKind.PRODUCER, started, move)
        _finish(span, reason)
        self.dead_lettered += 1
        ORDERS_DEAD_LETTERED.inc()


def _receive_count(message: dict[str, Any]) -> int:
    try:
        return int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1
