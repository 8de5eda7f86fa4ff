"""Migrations on a real MariaDB that encrypts every table at rest."""

from __future__ import annotations

from decimal import Decimal

import pymysql
import pytest

from echobase.app.db.migrate import admin_socket_url, current_heads, upgrade
from echobase.platform.durable import mariadb
from tests_support import SHIPPED_HEAD

SEED = [
    (1, "Quantum Stabilizer", Decimal("249.99"), "QS-001"),
    (2, "Plasma Conduit", Decimal("89.50"), "PC-042"),
    (3, "Neural Interface Module", Decimal("599.00"), "NIM-007"),
    (4, "Gravity Dampener", Decimal("175.25"), "GD-113"),
    (5, "Chrono Sync Unit", Decimal("324.75"), "CSU-088"),
    (6, "Headphones", Decimal("79.99"), "HP-101"),
    (7, "Keyboard", Decimal("49.99"), "KB-202"),
    (8, "Laptop", Decimal("999.99"), "LT-303"),
    (9, "Monitor", Decimal("349.99"), "MN-404"),
    (10, "Mouse", Decimal("29.99"), "MS-505"),
    (11, "Webcam", Decimal("59.99"), "WC-606"),
]
TABLES = {"users", "products", "orders", "rate_limit_windows", "login_failures"}


def test_seed_products_exactly(backing):
    assert backing.query("SELECT id, name, cost, sku FROM products ORDER BY id") == SEED


def test_upgrade_head_twice_is_a_no_op(backing):
    server = backing.stack.database
    url = admin_socket_url(server.socket, server.os_user, backing.credentials.dbname)
    before = backing.query("CHECKSUM TABLE products, users")
    upgrade(url)
    upgrade(url)
    assert current_heads(url) == {SHIPPED_HEAD}
    assert backing.query("SELECT COUNT(*) FROM products") == [(11,)]
    assert backing.query("CHECKSUM TABLE products, users") == before


def admin_query(backing, sql: str, *args: object) -> list[tuple]:
    conn = mariadb.admin_connection(backing.stack.database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return list(cur.fetchall())
    finally:
        conn.close()


def test_every_table_is_encrypted_at_rest(backing):
    rows = admin_query(
        backing,
        "SELECT NAME, ENCRYPTION_SCHEME"
        " FROM information_schema.INNODB_TABLESPACES_ENCRYPTION WHERE NAME LIKE %s",
        backing.credentials.dbname + "/%",
    )
    schemes = {name.split("/", 1)[1]: scheme for name, scheme in rows}
    assert admin_query(backing, "SHOW VARIABLES LIKE 'innodb_encrypt_tables'")[0][1] == "FORCE"
    assert TABLES <= set(schemes)
    assert {schemes[t] for t in TABLES} == {1}


def test_orders_schema_indexes_and_foreign_keys(backing):
    indexes = {row[2] for row in backing.query("SHOW INDEX FROM orders")}
    assert {
        "idx_orders_user_id",
        "idx_orders_user_created",
        "idx_orders_status",
        "idx_orders_created_at",
        "order_uid",
    } <= indexes
    rules = dict(
        backing.query(
            "SELECT REFERENCED_TABLE_NAME, DELETE_RULE"
            " FROM information_schema.REFERENTIAL_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = 'orders'"
        )
    )
    assert rules == {"users": "CASCADE", "products": "SET NULL"}
    default = backing.query(
        "SELECT COLUMN_DEFAULT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME = 'orders' AND COLUMN_NAME = 'order_status'"
    )
    assert default == [("'pending'",)]


def test_app_user_has_only_the_privileges_the_services_need(backing):
    grants = " ".join(row[0] for row in backing.query("SHOW GRANTS FOR CURRENT_USER()"))
    assert "SELECT, INSERT, UPDATE, DELETE ON" in grants
    assert "ALL PRIVILEGES" not in grants
    with pytest.raises(pymysql.err.OperationalError) as denied:
        backing.query("DROP TABLE orders")
    assert denied.value.args[0] == 1142  # command denied
    assert backing.query("SELECT COUNT(*) FROM products") == [(11,)]


def test_buffers_are_sized_for_one_machine(backing):
    """The running server took the memory settings (issue 19: 1 GiB for every service)."""
    assert admin_query(
        backing,
        "SELECT @@key_buffer_size, @@innodb_log_buffer_size, @@aria_pagecache_buffer_size,"
        " @@innodb_buffer_pool_size",
    ) == [(1 << 20, 4 << 20, 16 << 20, 32 << 20)]
