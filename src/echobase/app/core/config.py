"""Plain, non-secret settings of the order services, read once from the environment.

Credentials are deliberately absent: they come from Secrets Manager (see ``core.secrets``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from echobase import __version__
from echobase.app.core.names import (
    DEFAULT_DB_SECRET,
    DEFAULT_JWT_SECRET,
    DEFAULT_MCP_DB_SECRET,
    DEFAULT_MCP_KEY_SECRET,
)

Colour = Literal["blue", "green", "none"]

__all__ = ["DEFAULT_DB_SECRET", "DEFAULT_JWT_SECRET"]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class ServiceSettings(BaseSettings):
    """Settings both order services share."""

    model_config = SettingsConfigDict(env_prefix="ECHOBASE_", extra="ignore")

    colour: Colour = "none"
    release: str = __version__
    aws_region: str = "us-east-1"
    secrets_endpoint_url: str | None = None
    sqs_endpoint_url: str | None = None
    sqs_queue_url: str = ""
    db_secret_name: str = DEFAULT_DB_SECRET
    jwt_secret_name: str = DEFAULT_JWT_SECRET
    # Bounded wait for secrets that the durable layer has not written yet.
    secret_wait_seconds: float = Field(default=30.0, ge=0)
    db_pool_size: int = Field(default=10, ge=1)
    log_level: str = "info"
    host: str = "127.0.0.1"
    port: int = Field(default=3102, ge=1, le=65535)
    # A request head that has not all arrived by then is refused (408), as nginx's
    # client_header_timeout in front of it. See core/http_protocol.py.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # The durable environment it runs against; on every span.
    environment: str = "devlocal"
    # Where spans are kept when no OTLP endpoint is set (see core.telemetry); None: nowhere.
    traces_dir: Path | None = None
    # Head sampling of new traces, per process: every one up to the reservoir in each
    # second, then this share of the rest (a sampled caller's are always kept). Why these
    # defaults: README, "Sampling".
    trace_reservoir_per_second: int = Field(default=20, ge=0)
    trace_sample_ratio: float = Field(default=0.1, ge=0, le=1)
    trace_file_bytes: int = Field(default=16 * 2**20, ge=2**16)
    trace_store_bytes: int = Field(default=256 * 2**20, ge=2**20)


class GatewaySettings(ServiceSettings):
    workers: int = Field(default=1, ge=1, le=32)
    allowed_origins: Annotated[list[str], NoDecode] = ["https://localhost"]
    # Peers whose X-Forwarded-For we believe (the load balancer). Empty: trust nobody.
    trusted_proxies: Annotated[list[str], NoDecode] = []
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    jwt_lifetime_seconds: int = Field(default=15 * 60, ge=30)
    cookie_name: str = "echobase_token"
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    rate_limit_max: int = Field(default=600, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=15 * 60, ge=1)
    health_cache_seconds: float = Field(default=5.0, ge=0, le=5.0)
    catalog_refresh_seconds: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # A body that has not all arrived by then is refused (408), as nginx's client_body_timeout.
    body_timeout_seconds: float = Field(default=15.0, gt=0)
    max_order_total: int = 1_000_000
    # Concurrent SendMessageBatch calls per worker (see gateway/publisher.py).
    sqs_senders: int = Field(default=2, ge=1, le=64)
    # The durable recommendations service (MCP). Unset: logins answer no recommendations.
    mcp_url: str | None = None
    mcp_key_secret_name: str = DEFAULT_MCP_KEY_SECRET
    # A login waits at most this long for recommendations, then answers without them.
    mcp_timeout_seconds: float = Field(default=0.5, gt=0, le=10)
    # For tests and benchmarks only: this share of the orders of more than one item
    # answers 500 before anything is queued (nothing acknowledged, so nothing lost). A bad
    # release on demand, with the kind of bug a one-item smoke test does not see and a
    # canary's analysis must. Off unless set; the gateway warns when on.
    fault_order_error_ratio: float = Field(default=0.0, ge=0, le=1)

    _split = field_validator("allowed_origins", "trusted_proxies", mode="before")(_split_csv)


class ProcessorSettings(ServiceSettings):
    port: int = Field(default=3202, ge=1, le=65535)
    sqs_dlq_url: str = ""
    wait_time_seconds: int = Field(default=20, ge=0, le=20)
    batch_size: int = Field(default=10, ge=1, le=10)
    pollers: int = Field(default=2, ge=1, le=16)
    visibility_timeout_seconds: int = Field(default=30, ge=1)
    max_backoff_seconds: float = Field(default=10.0, gt=0)


class McpSettings(ServiceSettings):
    """The durable recommendations service: one per environment, not per colour."""

    port: int = Field(default=3300, ge=1, le=65535)
    db_secret_name: str = DEFAULT_MCP_DB_SECRET
    db_pool_size: int = Field(default=5, ge=1)
    mcp_key_secret_name: str = DEFAULT_MCP_KEY_SECRET
    # "Popular" means ordered most in this many days; the ranking is kept this many seconds.
    recommendation_days: int = Field(default=30, ge=1, le=3650)
    recommendation_limit: int = Field(default=5, ge=1, le=50)
    popular_refresh_seconds: float = Field(default=30.0, gt=0)


@lru_cache
def gateway_settings() -> GatewaySettings:
    return GatewaySettings()


@lru_cache
def processor_settings() -> ProcessorSettings:
    return ProcessorSettings()


@lru_cache
def mcp_settings() -> McpSettings:
    return McpSettings()
