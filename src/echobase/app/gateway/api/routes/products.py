from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from echobase.app.gateway.api.deps import Context, CurrentUser
from echobase.app.gateway.errors import unavailable
from echobase.app.gateway.schemas import ProductsPage, RecommendedList

router = APIRouter(prefix="/products", tags=["products"])


@router.get("", response_model=ProductsPage)
async def list_products(
    ctx: Context,
    _: CurrentUser,
    limit: int = Query(50, description="Clamped to 1..200"),
    offset: int = Query(0, description="Negative values count as 0"),
) -> dict[str, Any]:
    if not ctx.catalog.loaded:
        raise unavailable("Product catalogue not loaded yet; please retry")
    limit = min(max(limit, 1), 200)
    offset = max(offset, 0)
    return {
        "success": True,
        "products": [p.as_json() for p in ctx.catalog.page(limit, offset)],
        "pagination": {"limit": limit, "offset": offset},
    }


@router.get("/recommended", response_model=RecommendedList)
async def recommended_products(ctx: Context, user: CurrentUser) -> dict[str, Any]:
    """For the signed-in user; empty when there is nothing to recommend or the
    recommendations service does not answer in time (it never fails the page)."""
    products = await ctx.recommendations.for_user(user.user_id)
    return {"success": True, "recommendedProducts": products}
