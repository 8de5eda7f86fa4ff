"""A MariaDB server in a directory of its own: rendering (pure) and running (thin)."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from echobase.app.core.secrets import DatabaseCredentials
from echobase.platform.render.mariadb import (
    PRIVATE_FILES_ENV,
    MariaDBServer,
    install_command,
    render_config,
    server_command,
)
from echobase.platform.runtime.files import write_private, write_private_if_changed
from echobase.platform.runtime.machine import which
from echobase.platform.runtime.processes import spawn

# The driver and SQLAlchemy load where used: the CLI imports this module on every command.
if TYPE_CHECKING:
    import pymysql


class MariaDBError(RuntimeError):
    pass


# What the order services do and nothing more: migrations run as the admin over the socket.
APP_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
APP_HOSTS = ("127.0.0.1", "localhost")


def bootstrap_statements(
    app: DatabaseCredentials, root_password: str | None = None
) -> list[tuple[str, tuple[str, ...]]]:
    """Idempotent SQL giving the app user its database; values go as parameters.

    An existing app user keeps its password: a mismatch with the store is reported by
    ``verify_app_login`` and fixed on request (``repair_statements``), never silently."""
    db = _identifier(app.dbname)
    statements: list[tuple[str, tuple[str, ...]]] = [
        (f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4", ()),
    ]
    for host in APP_HOSTS:
        statements += [
            (
                f"CREATE USER IF NOT EXISTS %s@'{host}' IDENTIFIED BY %s",
                (app.username, app.password),
            ),
            (f"GRANT {APP_PRIVILEGES} ON {db}.* TO %s@'{host}'", (app.username,)),
        ]
    if root_password is not None:
        # root exists only @localhost, and with skip-name-resolve a TCP client never is
        # "localhost": root is reachable through the socket only, by OS identity or password.
        statements.append(
            (
                "ALTER USER root@localhost IDENTIFIED VIA unix_socket "
                "OR mysql_native_password USING PASSWORD(%s)",
                (root_password,),
            )
        )
    return statements


def repair_statements(app: DatabaseCredentials) -> list[tuple[str, tuple[str, ...]]]:
    """Make the database agree with the secrets store, the source of truth."""
    return [
        (f"ALTER USER %s@'{host}' IDENTIFIED BY %s", (app.username, app.password))
        for host in APP_HOSTS
    ]


# What the recommendations service reads; it never sees users (or their password hashes).
READ_ONLY_TABLES = ("orders", "products")
# A reader that leaks connections must not starve the order services of theirs.
READ_ONLY_MAX_CONNECTIONS = 20


def read_only_statements(reader: DatabaseCredentials) -> list[tuple[str, tuple[str, ...]]]:
    """Idempotent SQL for a user that may SELECT the order history and the catalogue only.

    Run after the migrations (a table grant needs the table). Unlike the app user's, this
    password always follows the store: nothing else depends on it."""
    db = _identifier(reader.dbname)
    statements: list[tuple[str, tuple[str, ...]]] = []
    for host in APP_HOSTS:
        statements += [
            (
                f"CREATE USER IF NOT EXISTS %s@'{host}' IDENTIFIED BY %s",
                (reader.username, reader.password),
            ),
            (
                f"ALTER USER %s@'{host}' IDENTIFIED BY %s "
                f"WITH MAX_USER_CONNECTIONS {READ_ONLY_MAX_CONNECTIONS}",
                (reader.username, reader.password),
            ),
        ]
        statements += [
            (f"GRANT SELECT ON {db}.{_identifier(table)} TO %s@'{host}'", (reader.username,))
            for table in READ_ONLY_TABLES
        ]
    return statements


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise MariaDBError("database name must be letters, digits and underscores")
    return f"`{name}`"


def _binary(name: str) -> str:
    found = which(name)
    if not found:
        raise MariaDBError(f"{name} not found: install Debian's mariadb-server")
    return found


# --- running -------------------------------------------------------------------------


def write_keyfile(server: MariaDBServer, encryption_key_hex: str) -> None:
    write_private(server.keyfile, f"1;{encryption_key_hex}\n")


def remove_keyfile(server: MariaDBServer) -> None:
    server.keyfile.unlink(missing_ok=True)


def prepare(server: MariaDBServer, encryption_key_hex: str | None) -> None:
    """Write the config and initialise the data directory on first use. The key file
    exists only while a server process reads it (here: the bootstrap server)."""
    server.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if server.encrypted and not encryption_key_hex:
        raise MariaDBError("an encrypted server needs an encryption key")
    write_private_if_changed(server.config_file, render_config(server))
    if (server.datadir / "mysql").is_dir():
        return
    if server.encrypted and encryption_key_hex:
        write_keyfile(server, encryption_key_hex)
    try:
        result = subprocess.run(
            install_command(server, _binary("mariadb-install-db")),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={**os.environ, **PRIVATE_FILES_ENV},
        )
    finally:
        remove_keyfile(server)
    if result.returncode != 0:
        raise MariaDBError(f"mariadb-install-db failed: {result.stderr[-2000:]}")


def start(server: MariaDBServer) -> subprocess.Popen[bytes]:
    env = {**os.environ, **PRIVATE_FILES_ENV}
    return spawn(server_command(server, _binary("mariadbd")), server.home / "mariadb.out", env=env)


def admin_connection(server: MariaDBServer) -> pymysql.connections.Connection:
    import pymysql

    return pymysql.connect(
        unix_socket=str(server.socket), user=server.os_user, autocommit=True, connect_timeout=2
    )


def app_connection(
    credentials: DatabaseCredentials, autocommit: bool = True
) -> pymysql.connections.Connection:
    """A plain connection as the app user, for tools, tests and benchmarks."""
    import pymysql

    return pymysql.connect(
        host=credentials.host,
        port=credentials.port,
        user=credentials.username,
        password=credentials.password,
        database=credentials.dbname,
        autocommit=autocommit,
        connect_timeout=5,
    )


def wait_ready(server: MariaDBServer, process: subprocess.Popen[bytes], timeout: float) -> None:
    import pymysql

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = server.log_file.read_text(errors="replace")[-2000:]
            raise MariaDBError(f"mariadbd exited with {process.returncode}: {tail}")
        try:
            admin_connection(server).close()
            return
        except pymysql.err.OperationalError:
            time.sleep(0.1)
    raise MariaDBError(f"mariadbd not ready after {timeout:.0f}s; see {server.log_file}")


def run_admin(server: MariaDBServer, statements: list[tuple[str, tuple[str, ...]]]) -> None:
    conn = admin_connection(server)
    try:
        with conn.cursor() as cur:
            for statement, params in statements:
                cur.execute(statement, params)
    finally:
        conn.close()


def bootstrap(
    server: MariaDBServer, app: DatabaseCredentials, root_password: str | None = None
) -> None:
    run_admin(server, bootstrap_statements(app, root_password))


def verify_app_login(credentials: DatabaseCredentials) -> str | None:
    """None when the app user logs in with the stored credentials, else the server's reason."""
    import pymysql

    try:
        app_connection(credentials).close()
    except pymysql.err.OperationalError as exc:
        return str(exc.args[-1]) if exc.args else type(exc).__name__
    return None


# --- the supervised launcher: its command is render/mariadb.py's launch_command


def _remove_key_when_up(server: MariaDBServer, timeout: float) -> None:
    """In a forked child: the socket appears once plugins (the key) are loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(server.socket))
                break
            except OSError:
                time.sleep(0.1)
    remove_keyfile(server)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from echobase.platform.durable.credentials import aws_client

    parser = argparse.ArgumentParser(description="Start mariadbd with its key from the store.")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--secrets-url", required=True)
    parser.add_argument("--key-secret", required=True)
    args = parser.parse_args(argv)
    server = MariaDBServer(args.home, args.port, args.host, os_user=getpass.getuser())
    client = aws_client("secretsmanager", args.secrets_url)
    try:
        key = str(client.get_secret_value(SecretId=args.key_secret)["SecretString"])
    except Exception as exc:
        sys.exit(f"cannot read {args.key_secret!r} from the secrets store: {type(exc).__name__}")
    write_keyfile(server, key)
    if os.fork() == 0:
        try:
            _remove_key_when_up(server, timeout=300)
        finally:
            os._exit(0)
    command = server_command(server, _binary("mariadbd"))
    os.execv(command[0], command)  # noqa: S606 - our own mariadbd, no shell


if __name__ == "__main__":
    main()
