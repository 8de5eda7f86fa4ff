"""What the recommendations service and its callers agree on: tool names and answer shapes.
Light (pydantic only), so a gateway imports it without the server's dependencies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

# The newest revision with the initialize handshake that the service's SDK speaks; the
# gateway asks for it and refuses a service that answers another.
MCP_PROTOCOL_VERSION = "2025-11-25"
RECOMMENDED_PRODUCTS_TOOL = "getRecommendedProducts"
ORDER_STATUS_TOOL = "getOrderStatus"


class RecommendedProduct(BaseModel):
    id: int
    name: str
    cost: float  # a JSON number, as the reference answers it
    sku: str


def recommended_from_result(structured: Any, limit: int) -> list[dict[str, Any]]:
    """The products of a ``getRecommendedProducts`` result's structured content
    (``{"result": [...]}``), checked one by one: a malformed entry is left out, never
    passed on to a browser."""
    items = structured.get("result") if isinstance(structured, dict) else None
    if not isinstance(items, list):
        raise ValueError("the tool's result holds no list")
    products = []
    for item in items[:limit]:
        try:
            products.append(RecommendedProduct.model_validate(item).model_dump())
        except ValidationError:
            continue
    return products
