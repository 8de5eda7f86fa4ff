"""One environment's MariaDB, rendered: where it keeps everything, its configuration
(encrypted at rest) and the commands that install and run it. Pure: ``durable/mariadb.py``
prepares the files, bootstraps users and starts it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class MariaDBServer:
    """Where one server keeps everything; nothing is shared with a system-wide MariaDB."""

    home: Path
    port: int
    host: str = "127.0.0.1"
    # Encryption at rest: a file_key_management key file ("1;<hex>"). None: unencrypted.
    encrypted: bool = True
    # Who runs mariadbd (its `user =`): the state directory's owner, as every service.
    os_user: str = field(kw_only=True)

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
        # The pool fills with the pages that orders touch and never gives them back: with
        # 128M, MariaDB grew from 65 to 92 MiB over 50,000 orders with most of the pool
        # still to fill; with 32M it is full at 93 MiB and stays there (bench/memory.py).
        "innodb_buffer_pool_size = 32M",
        "innodb_log_file_size = 64M",
        # Buffers MariaDB touches whole at startup, sized for what echobase runs (issue 19's
        # 1 GiB for every service; 101 -> 61 MiB at rest, measured): the MyISAM key cache
        # (128M by default) serves no table here; the redo log buffer (16M, doubled by log
        # encryption) is written out at every commit, and the largest transaction here is
        # one batch of orders; Aria's page cache (128M) holds system and temporary tables.
        "key_buffer_size = 1M",
        "innodb_log_buffer_size = 4M",
        "aria_pagecache_buffer_size = 16M",
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
            # Background threads encrypt what bootstrap made before encryption applied
            # (the system tablespace); with the default 0 it would stay plain.
            "innodb_encryption_threads = 2",
            "innodb_encrypt_log = ON",
            "innodb_encrypt_temporary_tables = ON",
            "encrypt_tmp_files = ON",
            "encrypt_binlog = ON",
            "aria_encrypt_tables = ON",
        ]
    return "\n".join(lines) + "\n"


# mariadbd sets its own umask from these (default 0660: group-readable data files).
PRIVATE_FILES_ENV = {"UMASK": "0600", "UMASK_DIR": "0700"}


def install_command(server: MariaDBServer, binary: str) -> list[str]:
    return [
        binary,
        f"--defaults-file={server.config_file}",
        "--auth-root-authentication-method=socket",
        f"--auth-root-socket-user={server.os_user}",
        "--skip-test-db",
    ]


def server_command(server: MariaDBServer, binary: str) -> list[str]:
    return [binary, f"--defaults-file={server.config_file}"]


# --- the supervised launcher (it runs durable/mariadb.py's main) -----------------------
# supervisor restarts a crashed server on its own, and the key file must not lie on disk in
# between. So the program supervisor runs fetches the key from the secrets store, writes the
# key file, leaves a watcher that deletes it once the server is up, and becomes mariadbd
# (same pid: supervisor signals the server itself and sees its exit status).


def launch_command(
    server: MariaDBServer, secrets_url: str, key_secret: str, python: str
) -> list[str]:
    """No secret in the argument list: only where to fetch it."""
    return [
        python,
        "-m",
        "echobase.platform.durable.mariadb",
        "--home",
        str(server.home),
        "--port",
        str(server.port),
        "--host",
        server.host,
        "--secrets-url",
        secrets_url,
        "--key-secret",
        key_secret,
    ]
