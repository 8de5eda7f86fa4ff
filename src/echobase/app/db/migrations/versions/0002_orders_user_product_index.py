"""Index orders by (user_id, product_id): recommendations leave out what a user has ordered
by reading this index alone, one lookup per candidate product.

An expand-only change: the release still live keeps working while it is built. InnoDB
builds it online (ALGORITHM=INPLACE, LOCK=NONE), so orders keep being stored meanwhile.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLAlchemy's create_index has no ALGORITHM/LOCK options: the DDL is written out.
    op.execute(
        "CREATE INDEX idx_orders_user_product ON orders (user_id, product_id) "
        "ALGORITHM=INPLACE LOCK=NONE"
    )


def downgrade() -> None:
    op.drop_index("idx_orders_user_product", table_name="orders")
