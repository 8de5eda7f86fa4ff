"""Fixtures: one real MariaDB (encrypted at rest) and one real AWS emulator process per test
session, on free ports in a temporary directory; services started per test module."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pymysql
import pytest

from echobase.app.core.secrets import DatabaseCredentials
from echobase.app.queues import QueueUrls
from echobase.platform.local.devstack import DevStack, StackPorts, service_env
from echobase.platform.local.processes import free_port

ALLOWED_ORIGIN = "https://echobase.test"


@dataclass
class Backing:
    stack: DevStack
    credentials: DatabaseCredentials
    jwt_key: str

    def db(self) -> pymysql.connections.Connection:
        c = self.credentials
        return pymysql.connect(
            host=c.host,
            port=c.port,
            user=c.username,
            password=c.password,
            database=c.dbname,
            autocommit=True,
        )

    def query(self, sql: str, *args: object) -> list[tuple]:
        conn = self.db()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def new_queues(self) -> QueueUrls:
        return self.stack.create_queues(prefix=f"t{uuid.uuid4().hex[:8]}-")

    def gateway_env(self, queues: QueueUrls, port: int, **extra: str) -> dict[str, str]:
        settings = {
            "ECHOBASE_BCRYPT_ROUNDS": "4",
            "ECHOBASE_ALLOWED_ORIGINS": ALLOWED_ORIGIN,
            "ECHOBASE_RELEASE": "test-release",
            **extra,
        }
        return service_env(
            aws_url=self.stack.aws_url,
            queue=queues,
            port=port,
            colour="blue",
            extra=settings,
            base=os.environ,
        )

    def processor_env(self, queues: QueueUrls, port: int, **extra: str) -> dict[str, str]:
        settings = {"ECHOBASE_WAIT_TIME_SECONDS": "1", **extra}
        return service_env(
            aws_url=self.stack.aws_url,
            queue=queues,
            port=port,
            colour="blue",
            extra=settings,
            base=os.environ,
        )

    def start_gateway(self, name: str, queues: QueueUrls, **extra: str) -> str:
        port = free_port()
        self.stack.start_service(
            name,
            "echobase.app.gateway",
            self.gateway_env(queues, port, **extra),
            f"http://127.0.0.1:{port}/health",
        )
        return f"http://127.0.0.1:{port}"

    def start_processor(self, name: str, queues: QueueUrls, **extra: str) -> str:
        port = free_port()
        self.stack.start_service(
            name,
            "echobase.app.processor",
            self.processor_env(queues, port, **extra),
            f"http://127.0.0.1:{port}/health",
        )
        return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def backing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backing]:
    stack = DevStack(tmp_path_factory.mktemp("stack"), StackPorts.free())
    try:
        stack.start_aws()
        credentials, jwt_key = stack.ensure_secrets()
        stack.start_database(secrets.token_hex(32))
        stack.provision_database(credentials)
        yield Backing(stack, credentials, jwt_key)
    finally:
        stack.stop_all()
