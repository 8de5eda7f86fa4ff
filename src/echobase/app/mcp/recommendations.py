"""What to recommend: the products ordered most in the last days that this user has never
ordered. The ranking is shared by every user and costs a scan of recent orders, so it is
kept in memory and refreshed in the background; a request then costs one indexed query
(the products of the ranking, minus the user's own, through ``idx_orders_user_product``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import structlog
from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from echobase.app.db.models import Order, Product
from echobase.app.mcp.contract import RecommendedProduct

log = structlog.get_logger()

# How deep the shared ranking goes: enough that a user who ordered many of the favourites
# still gets a full list after their own are taken out.
RANKING_DEPTH = 50


def pick(
    ranking: Sequence[int], available: Mapping[int, RecommendedProduct], limit: int
) -> list[RecommendedProduct]:
    """The first ``limit`` products of the ranking that are still available, best first."""
    chosen = [available[product_id] for product_id in ranking if product_id in available]
    return chosen[:limit]


def as_recommended(product_id: int, name: str, cost: Decimal, sku: str) -> RecommendedProduct:
    return RecommendedProduct(id=product_id, name=name, cost=float(cost), sku=sku)


class Recommender:
    def __init__(self, engine: AsyncEngine, days: int, limit: int, refresh_seconds: float) -> None:
        self._engine = engine
        self._days = days
        self._limit = limit
        self._refresh_seconds = refresh_seconds
        self.ranking: tuple[int, ...] = ()
        self.ranked_at: float | None = None  # monotonic; None until the first ranking

    async def refresh(self) -> None:
        since = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=self._days)
        query = (
            select(Order.product_id, func.count().label("orders"))
            .where(Order.created_at >= since, Order.product_id.is_not(None))
            .group_by(Order.product_id)
            .order_by(func.count().desc(), Order.product_id)
            .limit(RANKING_DEPTH)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        self.ranking = tuple(int(row.product_id) for row in rows)
        self.ranked_at = time.monotonic()

    async def keep_fresh(self) -> None:
        failing = False
        while True:
            try:
                await self.refresh()
                if failing:
                    log.info("popular products ranked again")
                failing, delay = False, self._refresh_seconds
            except Exception as exc:  # keep answering from the last good ranking
                if not failing:
                    log.warning("ranking popular products failed", error=type(exc).__name__)
                failing, delay = True, min(2.0, self._refresh_seconds)
            await asyncio.sleep(delay)

    async def for_user(self, user_id: int) -> list[RecommendedProduct]:
        ranking = self.ranking
        if not ranking:
            return []
        ordered_before = exists().where(Order.user_id == user_id, Order.product_id == Product.id)
        query = select(Product.id, Product.name, Product.cost, Product.sku).where(
            Product.id.in_(ranking), ~ordered_before
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        available = {row.id: as_recommended(row.id, row.name, row.cost, row.sku) for row in rows}
        return pick(ranking, available, self._limit)
