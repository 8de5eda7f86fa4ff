"""Every secret an environment needs, generated once and kept in its secrets store.

The store is the source of truth: setup reads what it holds and generates only what is
missing, and a new set is stored completely (under the environment's KMS key) before any
server is created from it. If storing fails part-way, what this run created is deleted
again, so the next run starts from the same clean state."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from echobase.app.core.names import (
    DEFAULT_DB_SECRET,
    DEFAULT_JWT_SECRET,
    DEFAULT_MCP_DB_SECRET,
    DEFAULT_MCP_KEY_SECRET,
)
from echobase.app.core.secrets import DatabaseCredentials, SecretUnavailableError
from echobase.platform.render.names import (
    DATABASE_ROOT_SECRET,
    EMULATOR_AWS_ENV,
    ENCRYPTION_KEY_SECRET,
    OBSERVABILITY_SECRET,
    TLS_SECRET,
    kms_alias,
)

DATABASE = DEFAULT_DB_SECRET
DATABASE_ROOT = DATABASE_ROOT_SECRET
ENCRYPTION_KEY = ENCRYPTION_KEY_SECRET
JWT = DEFAULT_JWT_SECRET
TLS = TLS_SECRET
OBSERVABILITY = OBSERVABILITY_SECRET
MCP_API_KEY = DEFAULT_MCP_KEY_SECRET
MCP_DATABASE = DEFAULT_MCP_DB_SECRET
# Every secret an environment keeps, in the order setup stores them.
SECRET_NAMES = (
    DATABASE,
    DATABASE_ROOT,
    ENCRYPTION_KEY,
    JWT,
    TLS,
    OBSERVABILITY,
    MCP_DATABASE,
    MCP_API_KEY,
)
# Bound to data on disk: a new value would lock the existing database out.
DATA_BOUND = (DATABASE_ROOT, ENCRYPTION_KEY)


class SecretsStoreError(RuntimeError):
    """The store refused or lost something; the message names secrets, never values."""


def aws_client(service: str, endpoint_url: str) -> Any:
    # The SDK loads here, not with the module: most CLI commands never need a client.
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=EMULATOR_AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=EMULATOR_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=EMULATOR_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2}),
    )


@dataclass(frozen=True, repr=False)
class DurableSecrets:
    database: DatabaseCredentials
    root_password: str
    encryption_key_hex: str  # 256-bit, for MariaDB's file_key_management
    jwt_key: str
    tls_cert_pem: str
    tls_key_pem: str
    observability_user: str
    observability_password: str
    mcp_database: DatabaseCredentials  # read-only: orders and products
    mcp_api_key: str

    def __repr__(self) -> str:
        return f"DurableSecrets({self.database!r})"

    def as_secret_strings(self) -> dict[str, str]:
        return {
            DATABASE: self.database.as_secret(),
            DATABASE_ROOT: self.root_password,
            ENCRYPTION_KEY: self.encryption_key_hex,
            JWT: self.jwt_key,
            TLS: json.dumps({"certificate": self.tls_cert_pem, "private_key": self.tls_key_pem}),
            OBSERVABILITY: json.dumps(
                {"username": self.observability_user, "password": self.observability_password}
            ),
            MCP_DATABASE: self.mcp_database.as_secret(),
            MCP_API_KEY: self.mcp_api_key,
        }

    @classmethod
    def from_secret_strings(cls, values: dict[str, str]) -> DurableSecrets:
        try:
            tls = json.loads(values[TLS])
            observability = json.loads(values[OBSERVABILITY])
            return cls(
                database=DatabaseCredentials.from_secret(values[DATABASE]),
                root_password=values[DATABASE_ROOT],
                encryption_key_hex=values[ENCRYPTION_KEY],
                jwt_key=values[JWT],
                tls_cert_pem=tls["certificate"],
                tls_key_pem=tls["private_key"],
                observability_user=observability["username"],
                observability_password=observability["password"],
                mcp_database=DatabaseCredentials.from_secret(values[MCP_DATABASE]),
                mcp_api_key=values[MCP_API_KEY],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SecretsStoreError(f"a stored secret has the wrong shape ({exc!r:.80})") from None


def self_signed_certificate(hosts: list[str], days: int = 397) -> tuple[str, str]:
    """A certificate for the LB's loopback names; 397 days is what browsers still accept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "echobase load balancer")])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        # Strict verifiers (Python 3.13's default, browsers) want these as well.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert_pem, key_pem


def generate(host: str, db_port: int) -> DurableSecrets:
    cert, key = self_signed_certificate([host, "localhost"])

    def database_user(username: str) -> DatabaseCredentials:
        return DatabaseCredentials(username, secrets.token_urlsafe(32), host, db_port, "orders_db")

    return DurableSecrets(
        database=database_user("echobase_app"),
        root_password=secrets.token_urlsafe(32),
        encryption_key_hex=secrets.token_hex(32),
        jwt_key=secrets.token_urlsafe(48),
        tls_cert_pem=cert,
        tls_key_pem=key,
        observability_user="echobase-observer",
        observability_password=secrets.token_urlsafe(24),
        mcp_database=database_user("echobase_mcp"),
        mcp_api_key=secrets.token_urlsafe(32),
    )


# --- talking to the store ----------------------------------------------------------------


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def read_secret(client: Any, name: str) -> str | None:
    """The stored value, or None when the secret does not exist."""
    try:
        return str(client.get_secret_value(SecretId=name)["SecretString"])
    except ClientError as exc:
        code = _code(exc)
        if code == "ResourceNotFoundException":
            return None
        if code == "InvalidRequestException":
            raise SecretsStoreError(
                f"secret {name!r} is scheduled for deletion: restore it with "
                f"`aws secretsmanager restore-secret --secret-id {name}` against the store"
            ) from None
        raise SecretsStoreError(f"cannot read secret {name!r}: {code}") from None
    except BotoCoreError as exc:
        raise SecretsStoreError(f"secrets store unreachable ({type(exc).__name__})") from None


def ensure_kms_key(kms: Any, env: str) -> str:
    alias = kms_alias(env)
    try:
        return str(kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"])
    except ClientError as exc:
        if _code(exc) != "NotFoundException":
            raise SecretsStoreError(f"KMS key {alias}: {_code(exc)}") from None
    try:
        created = kms.create_key(Description=f"echobase {env} secrets", KeyUsage="ENCRYPT_DECRYPT")
        key_id = str(created["KeyMetadata"]["KeyId"])
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    except (ClientError, BotoCoreError) as exc:
        detail = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        raise SecretsStoreError(
            f"the secrets store refused to create the KMS key {alias} ({detail}); no secret "
            "was stored. Check the store's log, then run setup again"
        ) from None
    return key_id


def store_new(client: Any, kms_key: str, values: dict[str, str]) -> None:
    """Create every secret or none: on a failure the ones created here are deleted."""
    created: list[str] = []
    try:
        for name, value in values.items():
            client.create_secret(Name=name, SecretString=value, KmsKeyId=kms_key)
            created.append(name)
    except (ClientError, BotoCoreError) as exc:
        detail = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        for name in reversed(created):
            try:
                client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
            except (ClientError, BotoCoreError):
                pass  # the store is failing already; the error below says what to do
        raise SecretsStoreError(
            f"the secrets store refused to store {name!r} ({detail}); nothing was created. "
            "Check the store's log, then run setup again"
        ) from None


def load_or_create(
    endpoint_url: str,
    env: str,
    host: str,
    db_port: int,
    data_exists: bool,
    make: Callable[[str, int], DurableSecrets] = generate,
) -> tuple[DurableSecrets, list[str]]:
    """Read the environment's secrets, storing any that are missing; returns them and the
    names created in this call. Data-bound secrets are never replaced while data exists."""
    sm, kms = aws_client("secretsmanager", endpoint_url), aws_client("kms", endpoint_url)
    fresh = make(host, db_port).as_secret_strings()
    stored = {name: read_secret(sm, name) for name in fresh}
    missing = [name for name, value in stored.items() if value is None]
    if data_exists:
        lost = [name for name in DATA_BOUND if name in missing]
        if lost or DATABASE in missing:
            raise SecretsStoreError(
                f"the database exists but the store lacks {lost or [DATABASE]}: restore the "
                "store's journal from a backup, or wipe with `echobase durable teardown "
                f"{env} --volumes`"
            )
    if missing:
        key = ensure_kms_key(kms, env)
        store_new(sm, key, {name: fresh[name] for name in missing})
    values = {name: stored[name] or fresh[name] for name in fresh}
    result = DurableSecrets.from_secret_strings(values)
    # Host and port are settings, not secrets: follow the configured port if it moved.
    for name, field in ((DATABASE, "database"), (MCP_DATABASE, "mcp_database")):
        held: DatabaseCredentials = getattr(result, field)
        if (held.host, held.port) == (host, db_port):
            continue
        result = replace(result, **{field: replace(held, host=host, port=db_port)})
        try:
            sm.put_secret_value(SecretId=name, SecretString=result.as_secret_strings()[name])
        except ClientError as exc:
            raise SecretsStoreError(f"cannot update {name!r}: {_code(exc)}") from None
    return result, missing


__all__ = [
    "DurableSecrets",
    "SecretUnavailableError",
    "SecretsStoreError",
    "load_or_create",
]
