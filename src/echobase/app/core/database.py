"""Async engine for the shared MariaDB, and how its failures are told apart."""

from __future__ import annotations

from sqlalchemy import text
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
        hide_parameters=True,  # statement parameters (hashes, e-mails) stay out of logs
        # Timestamps are stored as UTC whatever the server's or machine's time zone.
        connect_args={"connect_timeout": 3, "init_command": "SET time_zone = '+00:00'"},
    )


async def reachable(engine: AsyncEngine) -> bool:
    """Whether a trivial statement succeeds now (tells an outage from a bad statement)."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def is_outage(exc: BaseException) -> bool:
    """True when the database is unreachable rather than the statement being wrong."""
    if isinstance(exc, TimeoutError | ConnectionError | OSError):
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
