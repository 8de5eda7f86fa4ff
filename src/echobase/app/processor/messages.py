"""What an order message must look like before it may become a row."""

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
