from __future__ import annotations

from pathlib import Path

import pytest

from echobase.app.core.secrets import DatabaseCredentials
from echobase.platform.durable.mariadb import MariaDBError, bootstrap_statements
from echobase.platform.render.mariadb import MariaDBServer, render_config


def test_config_puts_everything_in_the_home_and_encrypts() -> None:
    server = MariaDBServer(Path("/srv/eb/mariadb"), 3307, os_user="echobase")
    config = render_config(server)
    assert "port = 3307" in config and "bind-address = 127.0.0.1" in config
    assert "datadir = /srv/eb/mariadb/data" in config
    assert "innodb_encrypt_tables = FORCE" in config
    assert "file_key_management_filename = /srv/eb/mariadb/encryption.key" in config
    assert "innodb_encrypt_tables" not in render_config(
        MariaDBServer(Path("/x"), 1, encrypted=False, os_user="echobase")
    )


def test_bootstrap_passes_the_password_as_a_parameter() -> None:
    creds = DatabaseCredentials("app", "pa'ss;DROP", "127.0.0.1", 3306, "orders_db")
    statements = bootstrap_statements(creds)
    assert all("pa'ss" not in sql for sql, _ in statements)
    assert any("pa'ss;DROP" in params for _, params in statements)
    assert "pa'ss" not in repr(creds)
    with pytest.raises(MariaDBError):
        bootstrap_statements(DatabaseCredentials("a", "b", "h", 1, "x`; DROP"))
