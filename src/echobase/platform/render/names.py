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
from echobase.platform.stack import Service, check_colour, check_env

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


# --- this machine's secrets store ------------------------------------------------------------
# One store per environment, so the names carry no environment. What the platform itself
# keeps beside the services' secrets: MariaDB's root password and encryption key, the LB's
# certificate and the observability login.
DATABASE_ROOT_SECRET = "echobase/database/root"  # noqa: S105 - a name
ENCRYPTION_KEY_SECRET = "echobase/database/encryption-key"  # noqa: S105 - a name
TLS_SECRET = "echobase/load-balancer/tls"  # noqa: S105 - a name
OBSERVABILITY_SECRET = "echobase/observability/basic-auth"  # noqa: S105 - a name
# moto accepts any key pair; these are names, not credentials.
EMULATOR_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "echobase-local",
    "AWS_SECRET_ACCESS_KEY": "echobase-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# --- Compose: projects, services and the network they share ------------------------------
# Built from Service.name, so a role the stack does not run (Grafana, a colour's frontend)
# is spelt exactly like the ones it does.


def durable_role_name(env: str, role: str) -> str:
    """``echobase-{env}-durable-{role}``."""
    return Service("durable", check_env(env), role, 0).name


def colour_role_name(colour: str, role: str) -> str:
    """``echobase-{colour}-{role}``."""
    return Service("ephemeral", check_colour(colour), role, 0).name


def durable_project(env: str) -> str:
    """The Compose project of an environment's durable layer: its services' common prefix."""
    return durable_role_name(env, "").removesuffix("-")


def colour_project(colour: str) -> str:
    return colour_role_name(colour, "").removesuffix("-")


def network_name(env: str) -> str:
    """The network an environment's durable project creates and both colours join."""
    return f"echobase-{check_env(env)}"
