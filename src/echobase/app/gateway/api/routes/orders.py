from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from fastapi import APIRouter, Request
from opentelemetry import trace
from sqlalchemy import select

from echobase.app.core.metrics import ORDERS_ACCEPTED
from echobase.app.db.models import Order
from echobase.app.gateway.api.deps import Context, CurrentUser
from echobase.app.gateway.errors import ApiError, unavailable
from echobase.app.gateway.publisher import PublishError
from echobase.app.gateway.schemas import OrderRequest, OrdersList
from echobase.app.messages import build_order_message

router = APIRouter(prefix="/orders", tags=["orders"])
log = structlog.get_logger()


@router.post("", status_code=201)
async def submit_order(
    body: OrderRequest, request: Request, ctx: Context, user: CurrentUser
) -> dict[str, Any]:
    if not ctx.catalog.loaded:
        raise unavailable("Product catalogue not loaded yet; please retry")
    fault = ctx.settings.fault_order_error_ratio
    if fault and body.quantity > 1 and random.random() < fault:
        raise ApiError(500, "Internal Server Error", "Injected fault (fault_order_error_ratio)")
    product = ctx.catalog.get(body.productId)
    if product is None:
        raise ApiError(400, "Invalid product", f"Product with ID {body.productId} not found")
    total = (product.cost * body.quantity).quantize(Decimal("0.01"))
    if total > ctx.settings.max_order_total:
        raise ApiError(
            400,
            "Invalid order",
            f"Order total must not exceed {ctx.settings.max_order_total:,}",
        )
    correlation_id: str = request.state.correlation_id
    order = build_order_message(
        user_id=user.user_id,
        product_id=product.id,
        product_name=product.name,
        sku=product.sku,
        quantity=body.quantity,
        total_price=total,
        correlation_id=correlation_id,
    )
    trace.get_current_span().set_attribute("echobase.order_id", order["orderId"])
    try:
        message_id = await ctx.publisher.publish(
            json.dumps(order),
            {"CorrelationId": {"DataType": "String", "StringValue": correlation_id}},
        )
    except PublishError as exc:
        log.warning("order not queued", order_id=order["orderId"], reason=str(exc))
        raise unavailable("Order could not be queued; please retry") from None
    ORDERS_ACCEPTED.inc()
    log.info("order accepted", order_id=order["orderId"], message_id=message_id)
    del order["userId"], order["correlationId"]
    return {
        "success": True,
        "message": "Order submitted successfully",
        "messageId": message_id,
        "order": order,
    }


def _iso(value: datetime) -> str:
    return value.replace(tzinfo=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@router.get("", response_model=OrdersList)
async def list_orders(ctx: Context, user: CurrentUser) -> dict[str, Any]:
    query = (
        select(
            Order.id,
            Order.product_name,
            Order.sku,
            Order.quantity,
            Order.total_price,
            Order.order_status,
            Order.created_at,
        )
        .where(Order.user_id == user.user_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(1000)
    )
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    orders = [
        {
            "id": r.id,
            "productName": r.product_name,
            "sku": r.sku,
            "quantity": r.quantity,
            "totalPrice": f"{r.total_price:.2f}",
            "status": r.order_status,
            "createdAt": _iso(r.created_at),
        }
        for r in rows
    ]
    return {"success": True, "orders": orders, "count": len(orders)}
