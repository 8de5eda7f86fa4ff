"""Expand/contract checking of pending migration SQL (pure, no database)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from echobase.app.db.migrate import (
    MIGRATIONS_DIR,
    admin_socket_url,
    models_schema,
    pending_revisions,
)
from echobase.platform.contract import (
    Change,
    contract_violations,
    destructive_statements,
    pending_violations,
)
from tests_support import SHIPPED_HEAD, TEST_STEP, revision_script

LIVE = {
    "orders": ["id", "order_uid", "user_id", "sku", "quantity", "order_status"],
    "users": ["id", "username", "full_name"],
    "login_failures": ["username", "failures"],
    "rate_limit_windows": ["bucket", "window_start", "hits"],
}


def kinds(sql: str) -> list[tuple[str, str, str | None, str | None]]:
    return [(c.kind, c.table, c.column, c.new_name) for c in destructive_statements(sql)]


# --- what alembic emits for MariaDB (taken from `migrate pending` offline output) ----------

ALEMBIC_OUTPUT = """\
-- Running upgrade 0001 -> 0002

ALTER TABLE orders DROP COLUMN order_status;

ALTER TABLE orders ADD COLUMN note VARCHAR(20);

ALTER TABLE orders CHANGE sku stock_code VARCHAR(50) NOT NULL;

ALTER TABLE orders MODIFY quantity BIGINT NOT NULL;

ALTER TABLE orders ALTER COLUMN sku SET DEFAULT 'x';

ALTER TABLE login_failures RENAME TO lockouts;

DROP TABLE rate_limit_windows;

DROP INDEX idx_orders_status ON orders;

ALTER TABLE orders DROP FOREIGN KEY fk_orders_user;

ALTER TABLE orders DROP INDEX order_uid;

CREATE INDEX idx_orders_note ON orders (note);

UPDATE orders SET note = 'DROP TABLE users; -- ok' WHERE id = 1;

UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0001';
"""


def test_alembic_output_shapes():
    assert kinds(ALEMBIC_OUTPUT) == [
        ("drop_column", "orders", "order_status", None),
        ("rename_column", "orders", "sku", "stock_code"),
        ("modify_column", "orders", "quantity", None),
        ("rename_table", "login_failures", None, "lockouts"),
        ("drop_table", "rate_limit_windows", None, None),
    ]


def test_statement_text_is_the_one_statement_without_its_semicolon():
    changes = destructive_statements(ALEMBIC_OUTPUT)
    assert changes[0].statement == "ALTER TABLE orders DROP COLUMN order_status"
    assert changes[4].statement == "DROP TABLE rate_limit_windows"


# --- drops ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE orders",
        "drop table orders;",
        "DROP TABLE IF EXISTS `orders`",
        "DROP TABLE `echobase`.`orders` CASCADE",
        "Drop\n  Table\torders",
        "DROP /* why */ TABLE orders",
    ],
)
def test_drop_table(sql):
    assert kinds(sql) == [("drop_table", "orders", None, None)]


def test_drop_several_tables_in_one_statement():
    assert kinds("DROP TABLE IF EXISTS a, `b`, db.c") == [
        ("drop_table", "a", None, None),
        ("drop_table", "b", None, None),
        ("drop_table", "c", None, None),
    ]


def test_drop_temporary_table_is_not_a_contract():
    assert kinds("DROP TEMPORARY TABLE IF EXISTS orders") == []


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE orders DROP COLUMN order_status",
        "ALTER TABLE orders DROP order_status",
        "ALTER TABLE `orders` DROP COLUMN `order_status`",
        "alter table orders drop column if exists order_status",
        "ALTER TABLE orders DROP IF EXISTS order_status",
        "ALTER ONLINE TABLE IF EXISTS orders DROP COLUMN order_status",
        "ALTER TABLE orders NOWAIT DROP COLUMN order_status",
    ],
)
def test_drop_column(sql):
    assert kinds(sql) == [("drop_column", "orders", "order_status", None)]


def test_multi_clause_alter():
    sql = """
        ALTER TABLE orders
            ADD COLUMN status_code SMALLINT NULL,
            DROP COLUMN order_status,
            DROP sku,
            MODIFY COLUMN total_price DECIMAL(12, 2) NOT NULL,
            DROP INDEX idx_orders_status,
            ADD INDEX idx_status_code (status_code, created_at)
    """
    assert kinds(sql) == [
        ("drop_column", "orders", "order_status", None),
        ("drop_column", "orders", "sku", None),
        ("modify_column", "orders", "total_price", None),
    ]


def test_a_backticked_keyword_is_a_column_name():
    assert kinds("ALTER TABLE t DROP `index`, DROP `key`") == [
        ("drop_column", "t", "index", None),
        ("drop_column", "t", "key", None),
    ]


def test_quoted_identifiers_with_odd_characters():
    assert kinds("ALTER TABLE `my table` DROP COLUMN `a``b; c`") == [
        ("drop_column", "my table", "a`b; c", None)
    ]


# --- renames and redefinitions ---------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE orders RENAME TO orders_v2",
        "ALTER TABLE orders RENAME AS orders_v2",
        "ALTER TABLE orders RENAME orders_v2",
        "RENAME TABLE orders TO orders_v2",
        "RENAME TABLE `orders` TO `echobase`.`orders_v2`",
    ],
)
def test_rename_table(sql):
    assert kinds(sql) == [("rename_table", "orders", None, "orders_v2")]


def test_rename_several_tables_swaps():
    assert kinds("RENAME TABLE orders TO orders_old, orders_new TO orders") == [
        ("rename_table", "orders", None, "orders_old"),
        ("rename_table", "orders_new", None, "orders"),
    ]


def test_rename_column_and_change():
    assert kinds(
        "ALTER TABLE orders RENAME COLUMN sku TO stock_code;"
        "ALTER TABLE orders CHANGE COLUMN quantity qty INT NOT NULL;"
        "ALTER TABLE orders CHANGE `order_status` `order_status` VARCHAR(40) NOT NULL"
    ) == [
        ("rename_column", "orders", "sku", "stock_code"),
        ("rename_column", "orders", "quantity", "qty"),
        ("modify_column", "orders", "order_status", None),
    ]


def test_renaming_an_index_is_not_a_contract():
    assert kinds("ALTER TABLE orders RENAME INDEX a TO b, RENAME KEY c TO d") == []


def test_create_or_replace_table_drops_the_existing_one():
    assert kinds("CREATE OR REPLACE TABLE orders (id INT)") == [
        ("drop_table", "orders", None, None)
    ]


# --- no false positives ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE orders ADD COLUMN note VARCHAR(20)",
        "ALTER TABLE orders ADD note VARCHAR(20) DEFAULT 'drop column x'",
        "CREATE TABLE drops (id INT, `drop` INT)",
        "CREATE INDEX idx_drop ON orders (order_status)",
        "CREATE UNIQUE INDEX uq ON orders (order_uid)",
        "DROP INDEX idx_orders_status ON orders",
        "ALTER TABLE orders DROP INDEX idx_orders_status",
        "ALTER TABLE orders DROP KEY order_uid",
        "ALTER TABLE orders DROP PRIMARY KEY, ADD PRIMARY KEY (id)",
        "ALTER TABLE orders DROP FOREIGN KEY fk_orders_user",
        "ALTER TABLE orders DROP CONSTRAINT ck_quantity",
        "ALTER TABLE orders DROP CHECK ck_quantity",
        "ALTER TABLE orders ALTER COLUMN sku DROP DEFAULT",
        "ALTER TABLE orders ALTER sku SET DEFAULT 'x'",
        "ALTER TABLE orders ENGINE=InnoDB, ALGORITHM=INPLACE, LOCK=NONE",
        "UPDATE orders SET note = 'DROP TABLE users' WHERE id = 1",
        "UPDATE orders SET note = 'x''; DROP TABLE users; --' WHERE id = 1",
        'UPDATE orders SET note = "a\\"; DROP TABLE users; #" WHERE id = 1',
        "INSERT INTO notes (body) VALUES ('ALTER TABLE orders DROP COLUMN sku')",
        "DELETE FROM orders WHERE sku = 'RENAME TABLE orders TO x'",
        "DROP VIEW IF EXISTS v_orders",
        "DROP TRIGGER tr",
        "ALTER USER root@localhost IDENTIFIED VIA unix_socket",
        "SELECT 1",
        "",
        ";;",
    ],
)
def test_not_destructive(sql):
    assert kinds(sql) == []


@pytest.mark.parametrize(
    "sql",
    [
        "-- DROP TABLE orders\nSELECT 1",
        "# DROP TABLE orders\nSELECT 1",
        "/* DROP TABLE orders; */ SELECT 1",
        "/* multi\n line\n ALTER TABLE orders DROP COLUMN sku */",
        "SELECT 1 -- ; DROP TABLE orders",
    ],
)
def test_comments_hide_statements(sql):
    assert kinds(sql) == []


def test_comments_between_tokens_and_after_statements():
    sql = """
        -- Running upgrade 0001 -> 0002
        ALTER TABLE orders -- the old status
            DROP /* the column */ COLUMN order_status; # gone
        /* trailing */
    """
    assert kinds(sql) == [("drop_column", "orders", "order_status", None)]


def test_executable_comments_run():
    """The server runs what /*! ... */ holds, so the check must see it too."""
    assert kinds("/*!50700 ALTER TABLE orders DROP COLUMN sku */") == [
        ("drop_column", "orders", "sku", None)
    ]
    assert kinds("/*M!100500 DROP TABLE orders */; SELECT 1") == [
        ("drop_table", "orders", None, None)
    ]


def test_semicolon_inside_strings_does_not_split():
    sql = "INSERT INTO t VALUES ('a;DROP TABLE orders'); ALTER TABLE orders DROP sku"
    changes = destructive_statements(sql)
    assert [(c.kind, c.column) for c in changes] == [("drop_column", "sku")]
    assert changes[0].statement == "ALTER TABLE orders DROP sku"


def test_parentheses_do_not_split_clauses():
    sql = "ALTER TABLE t MODIFY c DECIMAL(10, 2) NOT NULL, DROP d"
    assert kinds(sql) == [("modify_column", "t", "c", None), ("drop_column", "t", "d", None)]


def test_revision_is_carried():
    (change,) = destructive_statements("DROP TABLE orders", revision="0007")
    assert change == Change("drop_table", "orders", None, "DROP TABLE orders", None, "0007")


# --- violations ---------------------------------------------------------------------------------


def test_violations_name_what_the_live_release_uses():
    changes = destructive_statements(ALEMBIC_OUTPUT, revision="0002")
    assert contract_violations(changes, LIVE) == [
        "revision 0002 drops column orders.order_status, which the live release still uses",
        "revision 0002 renames column orders.sku to stock_code, which the live release still uses",
        "revision 0002 redefines column orders.quantity, which the live release still uses"
        " (a narrower type or a new NOT NULL breaks it)",
        "revision 0002 renames table login_failures to lockouts, which the live release still uses",
        "revision 0002 drops table rate_limit_windows, which the live release still uses",
    ]


def test_revision_may_be_given_beside_the_change():
    changes = destructive_statements("DROP TABLE orders; DROP TABLE scratch")
    assert contract_violations([("0004", c) for c in changes], LIVE) == [
        "revision 0004 drops table orders, which the live release still uses"
    ]


def test_what_the_live_release_does_not_know_may_go():
    sql = """
        DROP TABLE scratch;
        ALTER TABLE orders DROP COLUMN note, CHANGE draft draft2 INT, MODIFY extra BIGINT;
        RENAME TABLE staging TO staging_old;
    """
    assert contract_violations(destructive_statements(sql, "0003"), LIVE) == []


def test_names_compare_case_insensitively():
    changes = destructive_statements("ALTER TABLE ORDERS DROP COLUMN Order_Status")
    assert contract_violations(changes, LIVE) == [
        "drops column orders.Order_Status, which the live release still uses"
    ]


def test_the_real_models_are_the_live_schema():
    changes = destructive_statements("ALTER TABLE orders DROP COLUMN order_status", "0002")
    assert contract_violations(changes, models_schema()) == [
        "revision 0002 drops column orders.order_status, which the live release still uses"
    ]


# --- through alembic's own offline SQL (no database: the current revision is given) ------------


def _with_revision(tmp_path: Path, body: str) -> Path:
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / f"{TEST_STEP}_test.py").write_text(
        revision_script("Test step", body)
    )
    return migrations


def _pending(migrations: Path) -> list[dict[str, str]]:
    url = admin_socket_url("/nonexistent.sock", "nobody", "nodb")
    return [dict(r) for r in pending_revisions(url, migrations, current={SHIPPED_HEAD})]


def test_alembic_contract_migration_is_caught(tmp_path):
    migrations = _with_revision(
        tmp_path,
        """
        op.drop_column("orders", "order_status")
        with op.batch_alter_table("users") as batch:
            batch.alter_column("full_name", new_column_name="display_name",
                               existing_type=sa.String(255), existing_nullable=False)
        op.rename_table("login_failures", "lockouts")
        """,
    )
    (pending,) = _pending(migrations)
    assert pending["revision"] == TEST_STEP
    assert pending_violations([pending], models_schema()) == [
        f"revision {TEST_STEP} drops column orders.order_status, which the live release still uses",
        f"revision {TEST_STEP} renames column users.full_name to display_name,"
        " which the live release still uses",
        f"revision {TEST_STEP} renames table login_failures to lockouts,"
        " which the live release still uses",
    ]


def test_alembic_expand_migration_passes(tmp_path):
    migrations = _with_revision(
        tmp_path,
        """
        op.add_column("orders", sa.Column("note", sa.String(200), nullable=True))
        op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True))
        op.create_index("idx_orders_note", "orders", ["note"])
        op.drop_index("idx_orders_status", table_name="orders")
        op.execute("UPDATE orders SET note = 'DROP TABLE orders' WHERE note IS NULL")
        """,
    )
    (pending,) = _pending(migrations)
    assert "ADD COLUMN note" in pending["sql"]
    assert pending_violations([pending], models_schema()) == []
