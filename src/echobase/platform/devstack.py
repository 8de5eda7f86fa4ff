"""A complete order system in one directory, in the foreground: MariaDB, the AWS emulator,
one colour's gateway and processor. The test fixtures and ``echobase dev`` both use it, so
what the tests start is what a developer runs.

Its ports are one environment's and one colour's of a ``Stack`` (the one description, over
free ports for the tests), and the services' settings come from the colour plan's own
function (``render.settings``). The schema is made by the migration tool in a process of its
own, as a release's interpreter runs it: here the interpreter is this one, whose echobase is
the working tree."""

from __future__ import annotations

import getpass
import json
import secrets
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from echobase.app.core.config import DEFAULT_DB_SECRET, DEFAULT_JWT_SECRET
from echobase.app.core.secrets import DatabaseCredentials
from echobase.app.queues import DEAD_LETTER_QUEUE, ORDER_QUEUE, QueueUrls, ensure_queues
from echobase.platform.durable import mariadb
from echobase.platform.durable.credentials import EMULATOR_AWS_ENV
from echobase.platform.render.settings import platform_settings
from echobase.platform.runtime.migrations import run_migrate
from echobase.platform.runtime.processes import free_ports, spawn, terminate, wait_http
from echobase.platform.stack import Stack, free_port_overrides, resolve_ports

# The stack's names for what a development stack runs: the AWS emulator stands in for the
# environment's secrets store and the colour's queue server at once.
ENV = "devlocal"
COLOUR = "blue"


def free_stack(home: Path) -> Stack:
    """A system in ``home`` with every port free now: beside a running one, for the tests."""
    return Stack(home, resolve_ports(0, free_port_overrides(free_ports)))


def aws_emulator_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "echobase.platform.aws_emulator", "-H", host, "-p", str(port)]


def service_env(
    *,
    aws_url: str,
    queue: QueueUrls,
    port: int,
    colour: str,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of a gateway or processor: plain settings only, never a credential. One
    emulator answers for both the secrets store and the queues."""
    env = dict(base or {})
    env.update(EMULATOR_AWS_ENV)
    env.update(
        platform_settings(
            colour=colour, port=port, secrets_url=aws_url, sqs_url=aws_url, queues=queue
        )
    )
    env.update(extra or {})
    return env


def put_secret_if_absent(client: Any, name: str, value: str) -> str:
    """Create the secret unless it exists; return what is stored (the source of truth)."""
    try:
        return str(client.get_secret_value(SecretId=name)["SecretString"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    client.create_secret(Name=name, SecretString=value)
    return value


@dataclass
class DevStack:
    stack: Stack
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    db_key: str | None = field(default=None, repr=False)

    @property
    def home(self) -> Path:
        return self.stack.home

    @property
    def host(self) -> str:
        return self.stack.host

    def port(self, role: str) -> int:
        """The port of ``role``: the environment's (``mariadb``, ``secrets``) or the colour's
        (``api-gateway``, ``order-processor``)."""
        if role in ("mariadb", "secrets"):
            return self.stack.durable_service(ENV, role).port
        return self.stack.colour_service(COLOUR, role).port

    @property
    def aws_url(self) -> str:
        return self.stack.url(self.port("secrets"))

    @property
    def database(self) -> mariadb.MariaDBServer:
        return mariadb.MariaDBServer(
            self.home / "mariadb", self.port("mariadb"), self.host, os_user=getpass.getuser()
        )

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.aws_url,
            region_name=EMULATOR_AWS_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=EMULATOR_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=EMULATOR_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    # --- backing services -------------------------------------------------------------

    def start_aws(self) -> None:
        process = spawn(
            aws_emulator_command(self.host, self.port("secrets")), self.home / "logs" / "aws.log"
        )
        self.processes["aws"] = process
        wait_http(f"{self.aws_url}/moto-api/", 30, process, ok=0)

    def ensure_secrets(self) -> tuple[DatabaseCredentials, str]:
        """Generate the app's secrets once; later runs read what the store holds."""
        client = self.client("secretsmanager")
        generated = {
            "username": "echobase_app",
            "password": secrets.token_urlsafe(24),
            "host": self.host,
            "port": self.port("mariadb"),
            "dbname": "orders_db",
        }
        stored = put_secret_if_absent(client, DEFAULT_DB_SECRET, json.dumps(generated))
        jwt_key = put_secret_if_absent(client, DEFAULT_JWT_SECRET, secrets.token_urlsafe(48))
        return DatabaseCredentials.from_secret(stored), jwt_key

    def start_database(self, encryption_key_hex: str | None = None) -> None:
        """Initialise on first use, then start. The key stays in memory between restarts:
        the key file lives only while the server reads it."""
        if encryption_key_hex is not None or self.db_key is None:
            self.db_key = encryption_key_hex or secrets.token_hex(32)
        mariadb.prepare(self.database, self.db_key)
        self.run_database()

    def run_database(self) -> None:
        server = self.database
        if self.db_key is None:
            raise RuntimeError("start_database first: the encryption key is not known")
        mariadb.write_keyfile(server, self.db_key)
        try:
            process = mariadb.start(server)
            self.processes["mariadb"] = process
            mariadb.wait_ready(server, process, timeout=60)
        finally:
            mariadb.remove_keyfile(server)

    def stop_database(self) -> None:
        terminate(self.processes.pop("mariadb"), timeout=60)

    def provision_database(self, credentials: DatabaseCredentials) -> None:
        server = self.database
        mariadb.bootstrap(server, credentials)
        # The migration tool of this interpreter's echobase (the working tree), in a process
        # of its own as a deploy runs a release's; -I keeps PYTHONPATH out.
        run_migrate(sys.executable, "upgrade", server.socket, server.os_user, credentials.dbname)

    def create_queues(self, prefix: str = "", visibility_timeout: int = 30) -> QueueUrls:
        return ensure_queues(
            self.client("sqs"),
            f"{prefix}{ORDER_QUEUE}",
            f"{prefix}{DEAD_LETTER_QUEUE}",
            visibility_timeout=visibility_timeout,
        )

    # --- order services -------------------------------------------------------------------

    def start_service(
        self, name: str, module: str, env: Mapping[str, str], health_url: str, timeout: float = 60
    ) -> subprocess.Popen[bytes]:
        process = spawn([sys.executable, "-m", module], self.home / "logs" / f"{name}.log", env=env)
        self.processes[name] = process
        try:
            wait_http(health_url, timeout, process, ok=0)
        except (TimeoutError, RuntimeError) as exc:
            log = (self.home / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} did not start: {exc}\n{log}") from None
        return process

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            terminate(process)

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)
