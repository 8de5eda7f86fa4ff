"""Users, products (with the seed catalogue), orders, rate-limit and lockout state.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from decimal import Decimal

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("CURRENT_TIMESTAMP(3)")
NOW_ON_UPDATE = sa.text("CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)")
# No ENCRYPTED= table option: the server's innodb_encrypt_tables decides, so these tables
# are created encrypted when the durable layer turns encryption at rest on.
TABLE_OPTIONS = {"mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4"}

SEED_PRODUCTS = [
    (1, "Quantum Stabilizer", "249.99", "QS-001"),
    (2, "Plasma Conduit", "89.50", "PC-042"),
    (3, "Neural Interface Module", "599.00", "NIM-007"),
    (4, "Gravity Dampener", "175.25", "GD-113"),
    (5, "Chrono Sync Unit", "324.75", "CSU-088"),
    (6, "Headphones", "79.99", "HP-101"),
    (7, "Keyboard", "49.99", "KB-202"),
    (8, "Laptop", "999.99", "LT-303"),
    (9, "Monitor", "349.99", "MN-404"),
    (10, "Mouse", "29.99", "MS-505"),
    (11, "Webcam", "59.99", "WC-606"),
]


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", DATETIME(fsp=3), server_default=NOW, nullable=False),
        sa.Column("updated_at", DATETIME(fsp=3), server_default=NOW_ON_UPDATE, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(50), nullable=False, unique=True),
        sa.Column("email", sa.String(255), nullable=False, unique=True),
        sa.Column("full_name", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        *_timestamps(),
        **TABLE_OPTIONS,
    )
    products = op.create_table(
        "products",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("cost", sa.Numeric(10, 2), nullable=False),
        sa.Column("sku", sa.String(50), nullable=False, unique=True),
        *_timestamps(),
        **TABLE_OPTIONS,
    )
    op.bulk_insert(
        products,
        [
            {"id": pid, "name": name, "cost": Decimal(cost), "sku": sku}
            for pid, name, cost, sku in SEED_PRODUCTS
        ],
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_uid", sa.String(36), nullable=False, unique=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_orders_user"),
            nullable=False,
        ),
        sa.Column(
            "product_id",
            sa.Integer,
            sa.ForeignKey("products.id", ondelete="SET NULL", name="fk_orders_product"),
            nullable=True,
        ),
        sa.Column("product_name", sa.String(255), nullable=False),
        sa.Column("sku", sa.String(50), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("total_price", sa.Numeric(10, 2), nullable=False),
        sa.Column("order_status", sa.String(20), nullable=False, server_default="pending"),
        *_timestamps(),
        **TABLE_OPTIONS,
    )
    op.create_index("idx_orders_user_id", "orders", ["user_id"])
    op.create_index("idx_orders_user_created", "orders", ["user_id", "created_at"])
    op.create_index("idx_orders_status", "orders", ["order_status"])
    op.create_index("idx_orders_created_at", "orders", ["created_at"])
    op.create_table(
        "rate_limit_windows",
        sa.Column("bucket", sa.String(128), primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hits", sa.Integer, nullable=False),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "login_failures",
        sa.Column("username", sa.String(50), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", sa.BigInteger, nullable=False),
        sa.Column("locked_until", sa.BigInteger, nullable=False, server_default="0"),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    for table in ("login_failures", "rate_limit_windows", "orders", "products", "users"):
        op.drop_table(table)
