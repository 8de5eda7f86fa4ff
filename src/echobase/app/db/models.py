"""Tables of the shared database. Alembic migrations are the source of the schema;
these models mirror them for queries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Millisecond timestamps: "newest first" must not tie for orders placed in the same second.
NOW = text("CURRENT_TIMESTAMP(3)")
NOW_ON_UPDATE = text("CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)")


class Base(DeclarativeBase):
    pass


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(
        DATETIME(fsp=3), server_default=NOW, nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DATETIME(fsp=3), server_default=NOW_ON_UPDATE, nullable=False
    )


class User(Timestamped, Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(50), unique=True, nullable=False)
    email: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    full_name: Mapped[str] = mapped_column(String(255), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)


class Product(Timestamped, Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    cost: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    sku: Mapped[str] = mapped_column(String(50), unique=True, nullable=False)


class Order(Timestamped, Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_uid: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("products.id", ondelete="SET NULL"), nullable=True
    )
    product_name: Mapped[str] = mapped_column(String(255), nullable=False)
    sku: Mapped[str] = mapped_column(String(50), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    total_price: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    order_status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="pending")

    __table_args__ = (
        Index("idx_orders_user_id", "user_id"),
        Index("idx_orders_user_created", "user_id", "created_at"),
        # "Has this user ordered that product?" from the index alone (recommendations).
        Index("idx_orders_user_product", "user_id", "product_id"),
        Index("idx_orders_status", "order_status"),
        Index("idx_orders_created_at", "created_at"),
    )


class RateLimitWindow(Base):
    """Requests per client and fixed window, shared by every gateway worker of both colours."""

    __tablename__ = "rate_limit_windows"
    bucket: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, nullable=False)


class LoginFailure(Base):
    """Consecutive failed logins per username, for the lockout."""

    __tablename__ = "login_failures"
    username: Mapped[str] = mapped_column(String(50), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False)
    last_failure_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    locked_until: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
