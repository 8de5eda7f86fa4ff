"""Products held in process memory, so order intake does not need the database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from echobase.app.db.models import Product

log = structlog.get_logger()


@dataclass(frozen=True)
class CatalogProduct:
    id: int
    name: str
    cost: Decimal
    sku: str

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "cost": f"{self.cost:.2f}", "sku": self.sku}


class Catalog:
    def __init__(self, engine: AsyncEngine, refresh_seconds: float) -> None:
        self._engine = engine
        self._refresh_seconds = refresh_seconds
        self._by_id: dict[int, CatalogProduct] = {}
        self._sorted: list[CatalogProduct] = []
        self.loaded = False

    def get(self, product_id: int) -> CatalogProduct | None:
        return self._by_id.get(product_id)

    def page(self, limit: int, offset: int) -> list[CatalogProduct]:
        return self._sorted[offset : offset + limit]

    async def refresh(self) -> None:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(select(Product.id, Product.name, Product.cost, Product.sku))
            ).all()
        products = [CatalogProduct(r.id, r.name, Decimal(r.cost), r.sku) for r in rows]
        # Swap whole objects: readers never see a half-built catalogue.
        self._sorted = sorted(products, key=lambda p: (p.name.casefold(), p.id))
        self._by_id = {p.id: p for p in products}
        self.loaded = True

    async def keep_fresh(self) -> None:
        while True:
            try:
                await self.refresh()
                delay = self._refresh_seconds
            except Exception as exc:  # keep serving the last good catalogue
                log.warning("catalog refresh failed", error=type(exc).__name__)
                delay = min(2.0, self._refresh_seconds)
            await asyncio.sleep(delay)
