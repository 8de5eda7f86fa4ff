"""Request and answer bodies: the API contract, in one place."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator

from echobase.app.mcp.contract import RecommendedProduct

USERNAME_PATTERN = r"^[A-Za-z0-9_]{3,50}$"
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_FULL_NAME_EXTRA = frozenset(" -'.")


def _has_password_classes(value: str) -> bool:
    return (
        len(value) >= 8
        and any(c.isupper() for c in value)
        and any(c.islower() for c in value)
        and any(c.isdigit() for c in value)
    )


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    username: Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]
    email: Annotated[str, StringConstraints(max_length=255)]
    fullName: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    password: Annotated[str, StringConstraints(min_length=8)]

    @field_validator("email", mode="before")
    @classmethod
    def _normalise_email(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str) -> str:
        if not _EMAIL.match(value) or ".." in value:
            raise ValueError("invalid email")
        return value

    @field_validator("fullName")
    @classmethod
    def _check_full_name(cls, value: str) -> str:
        if not value.strip() or not all(
            c.isalpha() or c.isdigit() or c in _FULL_NAME_EXTRA for c in value
        ):
            raise ValueError("invalid full name")
        return value

    @field_validator("password")
    @classmethod
    def _check_password(cls, value: str) -> str:
        if not _has_password_classes(value):
            raise ValueError("weak password")
        return value


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    username: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    password: Annotated[str, StringConstraints(min_length=1)]


class OrderRequest(BaseModel):
    # Clients may send a price; it is ignored, the server computes the total.
    model_config = ConfigDict(extra="ignore")

    productId: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
    quantity: Annotated[StrictInt, Field(ge=1, le=10_000)]


# Answer models. Declared, FastAPI serialises the answer in pydantic-core (Rust) instead of
# walking it with jsonable_encoder: in-process, 45 instead of 355 us for a page of 50
# products (bench/live.py's 11-product catalogue showed no difference beyond noise).
class ProductOut(BaseModel):
    id: int
    name: str
    cost: str  # two decimals, as text: money is never a float
    sku: str


class Pagination(BaseModel):
    limit: int
    offset: int


class ProductsPage(BaseModel):
    success: bool
    products: list[ProductOut]
    pagination: Pagination


class RecommendedList(BaseModel):
    success: bool
    # The reference's shape: cost is a JSON number here (see app/mcp/contract.py).
    recommendedProducts: list[RecommendedProduct]


class OrderRow(BaseModel):
    id: int
    productName: str
    sku: str
    quantity: int
    totalPrice: str
    status: str
    createdAt: str


class OrdersList(BaseModel):
    success: bool
    orders: list[OrderRow]
    count: int


class ErrorBody(BaseModel):
    """Every error answer: a short name, and a message or the fields that failed."""

    error: str
    message: str | None = None
    details: list[dict[str, str]] | None = None


_ERROR = {"model": ErrorBody}
# What any API route may answer besides its success: bad input (400, never FastAPI's 422),
# no or bad session (401), CSRF (403), too large (413), rate limit (429), dependency down
# (503). "4XX" also keeps FastAPI from documenting a 422 that never happens; found by
# schemathesis (undocumented 400s).
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    "4XX": {**_ERROR, "description": "Refused: bad input, no session, CSRF, limits"},
    503: {**_ERROR, "description": "A dependency (database, queue) is unavailable"},
}
