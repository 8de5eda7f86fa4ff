"""The order processor's loop: receive a batch, store it exactly once, then delete it.

Rules that keep every order:
- a message is deleted only after the transaction holding its row committed;
- the insert is idempotent on order_uid, so a redelivery never makes a second row;
- while the database is down the batch in hand is held (its visibility extended) instead of
  being received again and again, which would push good orders into the DLQ;
- a message that can never be stored goes to the DLQ with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from echobase.app.core.config import ProcessorSettings
from echobase.app.core.database import is_outage, reachable
from echobase.app.core.metrics import BATCH_SECONDS, ORDERS_DEAD_LETTERED, ORDERS_STORED
from echobase.app.db.models import Order
from echobase.app.messages import InvalidMessageError, OrderMessage, parse_order

log = structlog.get_logger()

_INSERT = insert(Order.__table__)
# A redelivered order hits the unique order_uid and changes nothing.
_UPSERT = _INSERT.on_duplicate_key_update(order_uid=_INSERT.inserted.order_uid)


@dataclass(frozen=True)
class Received:
    message_id: str
    receipt: str
    order: OrderMessage


class OrderConsumer:
    def __init__(
        self, settings: ProcessorSettings, sqs: Any, engine: AsyncEngine, dlq_url: str
    ) -> None:
        self.settings, self.sqs, self.engine, self.dlq_url = settings, sqs, engine, dlq_url
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
                AttributeNames=["ApproximateReceiveCount"],
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
            try:
                order = parse_order(message.get("Body", ""))
            except InvalidMessageError as exc:
                await self._dead_letter(message, str(exc))
                continue
            valid.append(Received(message["MessageId"], message["ReceiptHandle"], order))
        if valid:
            await self._store(valid)
        BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _store(self, batch: list[Received]) -> None:
        delay = 0.5
        extended_at = time.monotonic()
        while True:
            try:
                await self._insert([r.order for r in batch])
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
                await self._insert([item.order])
                stored.append(item)
            except Exception as exc:
                # Left in the queue: redelivered after the visibility timeout and, after
                # maxReceiveCount attempts, moved to the DLQ by the redrive policy.
                log.warning(
                    "order not stored; will retry",
                    message_id=item.message_id,
                    order_id=str(item.order.orderId),
                    error=type(exc).__name__,
                )
        await self._delete(stored)

    async def _insert(self, orders: list[OrderMessage]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(_UPSERT, [o.row() for o in orders])

    # --- queue operations --------------------------------------------------------------

    async def _delete(self, batch: list[Received]) -> None:
        if not batch:
            return
        entries = [{"Id": str(i), "ReceiptHandle": r.receipt} for i, r in enumerate(batch)]
        try:
            result = await self.sqs.delete_message_batch(
                QueueUrl=self.settings.sqs_queue_url, Entries=entries
            )
            failed = len(result.get("Failed", []))
        except Exception as exc:
            # The rows are committed; a redelivery is harmless thanks to order_uid.
            log.warning("delete failed; messages will be redelivered", error=type(exc).__name__)
            failed = len(batch)
        self.processed += len(batch) - failed
        ORDERS_STORED.inc(len(batch) - failed)

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

    async def _dead_letter(self, message: dict[str, Any], reason: str) -> None:
        log.warning("invalid message to DLQ", message_id=message.get("MessageId"), reason=reason)
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
            return
        self.dead_lettered += 1
        ORDERS_DEAD_LETTERED.inc()
