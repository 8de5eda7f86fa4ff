"""Async engine for the shared MariaDB, and how its failures are told apart."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from echobase.app.core.secrets import DatabaseCredentials


def create_engine(credentials: DatabaseCredentials, pool_size: int) -> AsyncEngine:
    return create_async_engine(
        credentials.url("asyncmy"),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
    )


def is_outage(exc: BaseException) -> bool:
    """True when the database is unreachable rather than the statement being wrong."""
    if isinstance(exc, TimeoutError | ConnectionError | OSError):
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
