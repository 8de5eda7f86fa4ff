"""Fixtures: one real MariaDB (encrypted at rest) and one real AWS emulator process per test
session, on free ports in a temporary directory; services started per test module."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest

from echobase.app.core.secrets import DatabaseCredentials
from echobase.app.queues import QueueUrls
from echobase.platform import build_cache
from echobase.platform.devstack import DevStack, free_stack, service_env
from echobase.platform.durable.mariadb import app_connection
from echobase.platform.runtime.processes import free_port

ALLOWED_ORIGIN = "https://echobase.test"

# Every state directory the tests make builds the same dependency layer and frontend bundle:
# one build cache for the session, its own (the user's is neither read nor filled). Set
# ECHOBASE_BUILD_CACHE to choose another, or to "off".
SESSION_BUILD_CACHE = (
    None
    if build_cache.CACHE_ENV in os.environ
    else tempfile.mkdtemp(prefix="eb-build-cache-", dir="/tmp")
)
if SESSION_BUILD_CACHE is not None:
    os.environ[build_cache.CACHE_ENV] = SESSION_BUILD_CACHE


def pytest_sessionfinish(session: pytest.Session) -> None:
    if SESSION_BUILD_CACHE is not None:
        build_cache.remove_tree(Path(SESSION_BUILD_CACHE))


@dataclass
class Backing:
    stack: DevStack
    credentials: DatabaseCredentials
    jwt_key: str

    def db(self) -> pymysql.connections.Connection:
        return app_connection(self.credentials)

    def query(self, sql: str, *args: object) -> list[tuple]:
        conn = self.db()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def new_queues(self, visibility_timeout: int = 30) -> QueueUrls:
        return self.stack.create_queues(
            prefix=f"t{uuid.uuid4().hex[:8]}-", visibility_timeout=visibility_timeout
        )

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
        return self._start(name, "echobase.app.gateway", self.gateway_env, queues, extra)

    def start_processor(self, name: str, queues: QueueUrls, **extra: str) -> str:
        return self._start(name, "echobase.app.processor", self.processor_env, queues, extra)

    def _start(
        self, name: str, module: str, env: Any, queues: QueueUrls, extra: dict[str, str]
    ) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.stack.start_service(name, module, env(queues, port, **extra), url + "/health")
        return url


@pytest.fixture(scope="session")
def backing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backing]:
    stack = DevStack(free_stack(tmp_path_factory.mktemp("stack")))
    try:
        stack.start_aws()
        credentials, jwt_key = stack.ensure_secrets()
        stack.start_database(secrets.token_hex(32))
        stack.provision_database(credentials)
        yield Backing(stack, credentials, jwt_key)
    finally:
        stack.stop_all()


# --- gateway integration helpers (used by tests/integration/test_gateway_*.py) -------------


@dataclass
class GatewayUser:
    id: int
    username: str
    email: str
    full_name: str
    password: str
    token: str


class GatewayClient:
    """One started gateway, called like the browser would (Origin on every POST). Cookies are
    Secure, so httpx never resends them over http: tokens are passed explicitly."""

    origin = ALLOWED_ORIGIN
    cookie_name = "echobase_token"

    def __init__(self, name: str, url: str, queues: QueueUrls) -> None:
        self.name, self.url, self.queues = name, url, queues
        self.http = httpx.Client(base_url=url, timeout=20)

    def _headers(self, token: str | None, headers: dict[str, str] | None) -> dict[str, str]:
        out = {}
        if token is not None:
            out["Cookie"] = f"{self.cookie_name}={token}"
        out.update(headers or {})
        return out

    def get(self, path: str, token: str | None = None, headers=None, **kw) -> httpx.Response:
        return self.http.get(path, headers=self._headers(token, headers), **kw)

    def post(
        self, path: str, json=None, token: str | None = None, headers=None, **kw
    ) -> httpx.Response:
        merged = {"Origin": self.origin, **self._headers(token, headers)}
        return self.http.post(path, json=json, headers=merged, **kw)

    @classmethod
    def set_cookies(cls, response: httpx.Response) -> list[str]:
        return [c for c in response.headers.get_list("set-cookie") if c.startswith(cls.cookie_name)]

    @classmethod
    def token_of(cls, response: httpx.Response) -> str | None:
        cookies = cls.set_cookies(response)
        if not cookies:
            return None
        value = cookies[-1].split(";", 1)[0].split("=", 1)[1].strip('"')
        return value or None

    @staticmethod
    def new_username(prefix: str = "u") -> str:
        return f"{prefix}_{uuid.uuid4().hex[:16]}"

    def register(self, **overrides: object) -> tuple[httpx.Response, dict[str, object]]:
        username = self.new_username()
        body: dict[str, object] = {
            "username": username,
            "email": f"{username}@example.com",
            "fullName": "Test User",
            "password": "Passw0rdOk",
            **overrides,
        }
        return self.post("/api/v1/auth/register", body), body

    def new_user(self, **overrides: object) -> GatewayUser:
        r, body = self.register(**overrides)
        assert r.status_code == 201, r.text
        token = self.token_of(r)
        assert token
        return GatewayUser(
            r.json()["user"]["id"],
            str(body["username"]),
            str(body["email"]).strip().lower(),
            str(body["fullName"]),
            str(body["password"]),
            token,
        )

    def wait_catalog(self, token: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            r = self.get("/api/v1/products", token)
            if r.status_code == 200 or time.monotonic() > deadline:
                assert r.status_code == 200, r.text
                return
            time.sleep(0.1)

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def gateway_factory(backing: Backing) -> Iterator[Callable[..., GatewayClient]]:
    """Start gateways for one test module (stopped at its end). The per-IP rate limit is
    shared by every gateway through the database, so it defaults to effectively off."""
    started: list[GatewayClient] = []

    def start(prefix: str = "gw", queues: QueueUrls | None = None, **env: str) -> GatewayClient:
        queues = queues or backing.new_queues()
        env.setdefault("ECHOBASE_RATE_LIMIT_MAX", "1000000")
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        client = GatewayClient(name, backing.start_gateway(name, queues, **env), queues)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()
        backing.stack.stop(client.name)
