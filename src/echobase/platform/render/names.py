"""Names that every rendering for a shared cloud account agrees on (CloudFormation, the
Kubernetes manifests, the migration Job): queues, the KMS alias, secrets. Pure functions of
the environment (and colour), so two renderers can never spell one resource two ways.

Locally each colour has its own queue server and each environment its own secrets store, so
the plain names (``echobase.app.queues``, ``echobase.app.core.names``) are enough there. One
AWS account may hold both environments and both colours side by side: here every name
carries the environment, and queue names the colour as well."""

from __future__ import annotations

from typing import NamedTuple

from echobase.app.core.names import (
    DEFAULT_DB_SECRET,
    DEFAULT_JWT_SECRET,
    DEFAULT_MCP_DB_SECRET,
    DEFAULT_MCP_KEY_SECRET,
)
from echobase.platform.stack import check_colour, check_env

# Migrations change the schema, which the app's user may not (it has DML rights only):
# a user of their own, and a secret of its own that only the migration Job may read.
DEFAULT_MIGRATIONS_DB_SECRET = "echobase/database/migrations"  # noqa: S105 - a name


class QueueNames(NamedTuple):
    queue: str
    dlq: str


class SecretNames(NamedTuple):
    """Each secret of an environment, by what reads it."""

    database: str  # the app user: gateway and processor
    jwt: str  # the gateway's signing key
    mcp_key: str  # the recommendations service's API key (gateway and MCP)
    mcp_database: str  # the read-only user of the recommendations service
    migrations: str  # the schema owner, for `python -m echobase.app.db.migrate --secret`


def queue_names(env: str, colour: str) -> QueueNames:
    base = f"echobase-{check_env(env)}-{check_colour(colour)}-orders"
    return QueueNames(base, f"{base}-dlq")


def kms_alias(env: str) -> str:
    """The same alias the local secrets store's key has (``durable.credentials``)."""
    return f"alias/echobase-{check_env(env)}"


def _in_env(env: str, name: str) -> str:
    return f"echobase/{env}/{name.removeprefix('echobase/')}"


def secret_names(env: str) -> SecretNames:
    """``echobase/database/credentials`` becomes ``echobase/{env}/database/credentials``:
    the services take these through ECHOBASE_*_SECRET_NAME, as they do any other name."""
    check_env(env)
    return SecretNames(
        database=_in_env(env, DEFAULT_DB_SECRET),
        jwt=_in_env(env, DEFAULT_JWT_SECRET),
        mcp_key=_in_env(env, DEFAULT_MCP_KEY_SECRET),
        mcp_database=_in_env(env, DEFAULT_MCP_DB_SECRET),
        migrations=_in_env(env, DEFAULT_MIGRATIONS_DB_SECRET),
    )
