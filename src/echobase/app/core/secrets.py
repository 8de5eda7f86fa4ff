"""Credentials come from Secrets Manager only, never from the environment or files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# The SDK and SQLAlchemy load where they are used: the CLI imports this module for
# DatabaseCredentials, and every millisecond of its start-up delays a switch.
if TYPE_CHECKING:
    from sqlalchemy import URL

    from echobase.app.core.config import ServiceSettings

# While the durable layer is still being set up the secret (or the store) may not exist yet:
# those are worth waiting for. Anything else (access denied, bad request) will not heal itself.
_RETRYABLE_CODES = {"ResourceNotFoundException"}


class SecretUnavailableError(RuntimeError):
    """A secret could not be read; the message names the secret, never its value."""


@dataclass(frozen=True, repr=False)
class DatabaseCredentials:
    username: str
    password: str
    host: str
    port: int
    dbname: str

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        return f"DatabaseCredentials({self.username}@{self.host}:{self.port}/{self.dbname})"

    def url(self, driver: str = "asyncmy") -> URL:
        from sqlalchemy import URL

        return URL.create(
            f"mariadb+{driver}",
            username=self.username,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.dbname,
            query={"charset": "utf8mb4"},
        )

    def as_secret(self) -> str:
        """The JSON stored in Secrets Manager, the shape ``from_secret`` reads."""
        return json.dumps(
            {
                "username": self.username,
                "password": self.password,
                "host": self.host,
                "port": self.port,
                "dbname": self.dbname,
            }
        )

    @classmethod
    def from_secret(cls, raw: str) -> DatabaseCredentials:
        try:
            data: dict[str, Any] = json.loads(raw)
            return cls(
                username=str(data["username"]),
                password=str(data["password"]),
                host=str(data["host"]),
                port=int(data["port"]),
                dbname=str(data["dbname"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SecretUnavailableError(
                "database credentials secret is not JSON with username, password, host, "
                "port and dbname"
            ) from exc


def secrets_client(settings: ServiceSettings) -> Any:
    from botocore.config import Config

    from echobase.app.core.aws import secrets_session

    return secrets_session().create_client(
        "secretsmanager",
        region_name=settings.aws_region,
        endpoint_url=settings.secrets_endpoint_url,
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2}),
    )


def fetch_secret(
    client: Any,
    name: str,
    wait_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Return the secret string, waiting with backoff while it does not exist yet."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    deadline = clock() + wait_seconds
    delay = 0.2
    while True:
        try:
            return str(client.get_secret_value(SecretId=name)["SecretString"])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            if code not in _RETRYABLE_CODES:
                raise SecretUnavailableError(f"cannot read secret {name!r}: {code}") from None
            reason = f"secret {name!r} does not exist"
        except (EndpointConnectionError, BotoCoreError) as exc:
            reason = f"secrets store unreachable ({type(exc).__name__})"
        if clock() + delay > deadline:
            raise SecretUnavailableError(f"gave up after {wait_seconds:.0f}s: {reason}")
        sleep(delay)
        delay = min(delay * 2, 5.0)


def load_database_credentials(settings: ServiceSettings) -> DatabaseCredentials:
    raw = fetch_secret(
        secrets_client(settings), settings.db_secret_name, settings.secret_wait_seconds
    )
    return DatabaseCredentials.from_secret(raw)


def load_key(settings: ServiceSettings, name: str) -> str:
    """A key secret (the JWT's, the MCP API key), refused when shorter than 256 bits."""
    key = fetch_secret(secrets_client(settings), name, settings.secret_wait_seconds)
    if len(key.encode()) < 32:
        raise SecretUnavailableError(f"secret {name!r} is shorter than 256 bits; regenerate it")
    return key


def load_jwt_key(settings: ServiceSettings) -> str:
    return load_key(settings, settings.jwt_secret_name)
