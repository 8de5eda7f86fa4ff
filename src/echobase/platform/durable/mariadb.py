"""A MariaDB server in a directory of its own: rendering (pure) and running (thin)."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pymysql

from echobase.app.core.secrets import DatabaseCredentials
from echobase.platform.runtime.files import write_private
from echobase.platform.runtime.processes import spawn


class MariaDBError(RuntimeError):
    pass


@dataclass(frozen=True)
class MariaDBServer:
    """Where one server keeps everything; nothing is shared with a system-wide MariaDB."""

    home: Path
    port: int
    host: str = "127.0.0.1"
    # Encryption at rest: a file_key_management key file ("1;<hex>"). None: unencrypted.
    encrypted: bool = True

    @property
    def datadir(self) -> Path:
        return self.home / "data"

    @property
    def socket(self) -> Path:
        return self.home / "mariadb.sock"

    @property
    def config_file(self) -> Path:
        return self.home / "my.cnf"

    @property
    def keyfile(self) -> Path:
        return self.home / "encryption.key"

    @property
    def log_file(self) -> Path:
        return self.home / "mariadb.err"

    @property
    def os_user(self) -> str:
        return getpass.getuser()


def render_config(server: MariaDBServer) -> str:
    lines = [
        "[mariadbd]",
        f"datadir = {server.datadir}",
        f"port = {server.port}",
        f"bind-address = {server.host}",
        f"socket = {server.socket}",
        f"pid-file = {server.home / 'mariadb.pid'}",
        f"log-error = {server.log_file}",
        f"user = {server.os_user}",
        "skip-name-resolve",
        "character-set-server = utf8mb4",
        "collation-server = utf8mb4_unicode_ci",
        "innodb_buffer_pool_size = 128M",
        "innodb_log_file_size = 64M",
        # The order processor commits in batches; one fsync per commit is the durable choice.
        "innodb_flush_log_at_trx_commit = 1",
        "max_connections = 300",
    ]
    if server.encrypted:
        lines += [
            "plugin_load_add = file_key_management",
            f"file_key_management_filename = {server.keyfile}",
            "file_key_management_encryption_algorithm = AES_CTR",
            "innodb_encrypt_tables = FORCE",
            "innodb_encrypt_log = ON",
            "innodb_encrypt_temporary_tables = ON",
            "encrypt_tmp_files = ON",
            "encrypt_binlog = ON",
            "aria_encrypt_tables = ON",
        ]
    return "\n".join(lines) + "\n"


def install_command(server: MariaDBServer) -> list[str]:
    return [
        _binary("mariadb-install-db"),
        f"--defaults-file={server.config_file}",
        "--auth-root-authentication-method=socket",
        f"--auth-root-socket-user={server.os_user}",
        "--skip-test-db",
    ]


def server_command(server: MariaDBServer) -> list[str]:
    return [_binary("mariadbd"), f"--defaults-file={server.config_file}"]


def bootstrap_statements(app: DatabaseCredentials) -> list[tuple[str, tuple[str, ...]]]:
    """Idempotent SQL giving the app user its database; values go as parameters."""
    db = _identifier(app.dbname)
    return [
        (f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4", ()),
        ("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", (app.username, app.password)),
        ("CREATE USER IF NOT EXISTS %s@'localhost' IDENTIFIED BY %s", (app.username, app.password)),
        ("ALTER USER %s@'127.0.0.1' IDENTIFIED BY %s", (app.username, app.password)),
        ("ALTER USER %s@'localhost' IDENTIFIED BY %s", (app.username, app.password)),
        (f"GRANT ALL PRIVILEGES ON {db}.* TO %s@'127.0.0.1'", (app.username,)),
        (f"GRANT ALL PRIVILEGES ON {db}.* TO %s@'localhost'", (app.username,)),
    ]


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise MariaDBError("database name must be letters, digits and underscores")
    return f"`{name}`"


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if not found:
        raise MariaDBError(f"{name} not found: install Debian's mariadb-server")
    return found


# --- running -------------------------------------------------------------------------


def prepare(server: MariaDBServer, encryption_key_hex: str | None) -> None:
    """Write the config (and key) and initialise the data directory on first use."""
    server.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if server.encrypted:
        if not encryption_key_hex:
            raise MariaDBError("an encrypted server needs an encryption key")
        write_private(server.keyfile, f"1;{encryption_key_hex}\n")
    write_private(server.config_file, render_config(server))
    if not (server.datadir / "mysql").is_dir():
        result = subprocess.run(
            install_command(server), capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode != 0:
            raise MariaDBError(f"mariadb-install-db failed: {result.stderr[-2000:]}")


def start(server: MariaDBServer) -> subprocess.Popen[bytes]:
    return spawn(server_command(server), server.home / "mariadb.out")


def admin_connection(server: MariaDBServer) -> pymysql.connections.Connection:
    return pymysql.connect(
        unix_socket=str(server.socket), user=server.os_user, autocommit=True, connect_timeout=2
    )


def app_connection(
    credentials: DatabaseCredentials, autocommit: bool = True
) -> pymysql.connections.Connection:
    """A plain connection as the app user, for tools, tests and benchmarks."""
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


def bootstrap(server: MariaDBServer, app: DatabaseCredentials) -> None:
    conn = admin_connection(server)
    try:
        with conn.cursor() as cur:
            for statement, params in bootstrap_statements(app):
                cur.execute(statement, params)
    finally:
        conn.close()
