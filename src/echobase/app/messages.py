"""The order message: what the gateway puts on the queue and the processor may store.

Both sides use this module, so the format is written down once."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator


class OrderMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    orderId: uuid.UUID
    userId: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
    productId: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
    productName: Annotated[str, Field(min_length=1, max_length=255)]
    sku: Annotated[str, Field(min_length=1, max_length=50)]
    quantity: Annotated[StrictInt, Field(ge=1, le=10_000)]
    totalPrice: Annotated[Decimal, Field(ge=0, le=1_000_000, decimal_places=2)]
    correlationId: Annotated[str, Field(max_length=128)] = ""
    timestamp: datetime

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp needs a time zone")
        return value.astimezone(UTC)

    def row(self) -> dict[str, Any]:
        created = self.timestamp.replace(tzinfo=None)
        return {
            "order_uid": str(self.orderId),
            "user_id": self.userId,
            "product_id": self.productId,
            "product_name": self.productName,
            "sku": self.sku,
            "quantity": self.quantity,
            "total_price": self.totalPrice,
            "order_status": "completed",
            "created_at": created,
            "updated_at": created,
        }


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_order_message(
    *,
    user_id: int,
    product_id: int,
    product_name: str,
    sku: str,
    quantity: int,
    total_price: Decimal,
    correlation_id: str,
    order_id: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The JSON body of one order message (keys as the processor expects them)."""
    return {
        "orderId": order_id or str(uuid.uuid4()),
        "userId": user_id,
        "productId": product_id,
        "productName": product_name,
        "sku": sku,
        "quantity": quantity,
        "totalPrice": f"{total_price:.2f}",
        "correlationId": correlation_id,
        "timestamp": timestamp or utc_now_iso(),
    }


class InvalidMessageError(ValueError):
    """The message can never become an order; the reason names fields, not values."""


def parse_order(body: str) -> OrderMessage:
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidMessageError("body is not JSON") from None
    try:
        return OrderMessage.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
        raise InvalidMessageError("invalid fields: " + ", ".join(fields)) from None
