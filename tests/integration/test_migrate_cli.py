"""`python -m echobase.app.db.migrate` against the real (encrypted) MariaDB, as a deploy runs
it: a subprocess with the release's interpreter, the admin over the unix socket, no password."""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from echobase.app.db.migrate import MIGRATIONS_DIR
from echobase.platform.contract import (
    contract_violations,
    destructive_statements,
    pending_violations,
)
from echobase.platform.durable import mariadb
from tests_support import SHIPPED_HEAD, TEST_STEP, revision_script

TEST_DB = "eb_contract_test"


def migrate(
    command: str, server: mariadb.MariaDBServer | None = None, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "echobase.app.db.migrate", command]
    if server is not None:
        argv += ["--socket", str(server.socket), "--user", server.os_user, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def migrate_json(command: str, server: mariadb.MariaDBServer, database: str, *args: str) -> Any:
    return json.loads(migrate(command, server, "--database", database, *args).stdout)


def columns(server: mariadb.MariaDBServer, database: str, table: str) -> list[str]:
    conn = mariadb.admin_connection(server)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (database, table),
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def with_revision(tmp_path: Path, name: str, body: str) -> Path:
    """A copy of the shipped migrations plus one more revision after them."""
    migrations = tmp_path / name
    shutil.copytree(MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    script = revision_script(name, body)
    (migrations / "versions" / f"{TEST_STEP}_{name}.py").write_text(script)
    return migrations


@pytest.fixture
def server(backing) -> mariadb.MariaDBServer:
    return backing.stack.database


@pytest.fixture
def contract_db(server: mariadb.MariaDBServer) -> Iterator[str]:
    """A second database on the same server, so destructive migrations never touch the schema
    the other tests share."""
    mariadb.run_admin(
        server,
        [(f"DROP DATABASE IF EXISTS {TEST_DB}", ()), (f"CREATE DATABASE {TEST_DB}", ())],
    )
    try:
        yield TEST_DB
    finally:
        mariadb.run_admin(server, [(f"DROP DATABASE IF EXISTS {TEST_DB}", ())])


def test_pending_is_empty_at_head(backing, server):
    out = migrate_json("pending", server, backing.credentials.dbname)
    assert out == {"current": [SHIPPED_HEAD], "head": [SHIPPED_HEAD], "revisions": []}


def test_upgrade_at_head_is_a_no_op(backing, server):
    before = backing.query("CHECKSUM TABLE products, users, orders")
    out = migrate_json("upgrade", server, backing.credentials.dbname)
    assert out == {"from": [SHIPPED_HEAD], "to": [SHIPPED_HEAD]}
    assert backing.query("CHECKSUM TABLE products, users, orders") == before


def test_schema_needs_no_database():
    tables = json.loads(migrate("schema").stdout)["tables"]
    assert tables["orders"][:3] == ["id", "order_uid", "user_id"]
    assert {"order_status", "total_price", "created_at"} <= set(tables["orders"])
    assert set(tables) == {"users", "products", "orders", "rate_limit_windows", "login_failures"}


def test_schema_matches_what_migrations_built(backing, server):
    """The models are what the live release uses; they must mirror the migrated tables."""
    tables = json.loads(migrate("schema").stdout)["tables"]
    for table, names in tables.items():
        assert columns(server, backing.credentials.dbname, table) == names


def test_unreachable_database_fails_without_json(tmp_path):
    result = migrate(
        "pending",
        mariadb.MariaDBServer(tmp_path, port=1, os_user=getpass.getuser()),
        "--database",
        "nope",
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "migrate pending" in result.stderr


def test_fresh_database_pending_then_upgrade(server, contract_db):
    pending = migrate_json("pending", server, contract_db)
    assert pending["current"] == [] and pending["head"] == [SHIPPED_HEAD]
    step, *later = pending["revisions"]
    assert step["revision"] == "0001"
    assert step["description"].startswith("Users, products")
    assert "CREATE TABLE orders" in step["sql"]
    assert [s["revision"] for s in later][-1:] == ([SHIPPED_HEAD] if later else [])
    assert all(destructive_statements(s["sql"]) == [] for s in pending["revisions"])
    # Offline: looking at the SQL did not run it.
    assert columns(server, contract_db, "orders") == []

    assert migrate_json("upgrade", server, contract_db) == {"from": [], "to": [SHIPPED_HEAD]}
    assert "order_status" in columns(server, contract_db, "orders")


def test_contract_migration_is_reported_and_expand_is_not(server, contract_db, tmp_path):
    migrate_json("upgrade", server, contract_db)
    live = json.loads(migrate("schema").stdout)["tables"]

    contract = with_revision(tmp_path, "drop_status", 'op.drop_column("orders", "order_status")')
    pending = migrate_json("pending", server, contract_db, "--migrations", str(contract))
    assert pending["current"] == [SHIPPED_HEAD] and pending["head"] == [TEST_STEP]
    (step,) = pending["revisions"]
    assert step["revision"] == TEST_STEP
    assert step["description"] == "drop_status."
    assert "ALTER TABLE orders DROP COLUMN order_status" in step["sql"]
    changes = [
        (step["revision"], change)
        for change in destructive_statements(step["sql"], step["revision"])
    ]
    assert [(rev, c.kind, c.table, c.column) for rev, c in changes] == [
        (TEST_STEP, "drop_column", "orders", "order_status")
    ]
    assert contract_violations(changes, live) == [
        f"revision {TEST_STEP} drops column orders.order_status, which the live release still uses"
    ]

    expand = with_revision(
        tmp_path,
        "add_note",
        """
        op.add_column("orders", sa.Column("note", sa.String(200), nullable=True))
        op.create_index("idx_orders_note", "orders", ["note"])
        """,
    )
    pending = migrate_json("pending", server, contract_db, "--migrations", str(expand))
    (step,) = pending["revisions"]
    assert "ALTER TABLE orders ADD COLUMN note" in step["sql"]
    assert pending_violations(pending["revisions"], live) == []

    # Neither look changed anything; applying the contract step does what it showed.
    assert "order_status" in columns(server, contract_db, "orders")
    out = migrate_json("upgrade", server, contract_db, "--migrations", str(contract))
    assert out == {"from": [SHIPPED_HEAD], "to": [TEST_STEP]}
    assert "order_status" not in columns(server, contract_db, "orders")
    assert (
        migrate_json("pending", server, contract_db, "--migrations", str(contract))["revisions"]
        == []
    )

    # The old release (shipping only SHIPPED_HEAD) cannot plan against a database a newer one moved
    # on: an error on stderr, not a traceback or a wrong answer.
    result = migrate("pending", server, "--database", contract_db, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert TEST_STEP in result.stderr and "Traceback" not in result.stderr
