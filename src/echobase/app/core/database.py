"""Async engine for the shared MariaDB, and how its failures are told apart."""

from __future__ import annotations

import asyncmy.errors
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from echobase.app.core.secrets import DatabaseCredentials


def create_engine(
    credentials: DatabaseCredentials, pool_size: int, autocommit: bool = False
) -> AsyncEngine:
    """``autocommit=True`` is for single-statement hot paths: every statement commits on the
    server, and no COMMIT or reset ROLLBACK round trip follows it. Use ``connect()`` there,
    never multi-statement transactions."""
    return create_async_engine(
        credentials.url("asyncmy"),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping per checkout (a round trip on every request): a connection found dead
        # fails one statement, and SQLAlchemy then discards the whole stale pool.
        pool_recycle=1800,
        pool_timeout=5,
        hide_parameters=True,  # statement parameters (hashes, e-mails) stay out of logs
        # Timestamps are stored as UTC whatever the server's or machine's time zone.
        connect_args={
            "connect_timeout": 3,
            "init_command": "SET time_zone = '+00:00'",
        },
        # Engine-wide, so it is set once per connection rather than on every checkout; with
        # every statement committed there is no transaction for a reset ROLLBACK to end.
        **(
            {"isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True}
            if autocommit
            else {}
        ),
    )


async def select_one(engine: AsyncEngine) -> None:
    """Raises unless the database answers a trivial statement now.

    A pooled connection that died while idle (the server restarted) fails its next
    statement once, and SQLAlchemy then drops the whole pool; that one failure says
    nothing about the server, so it is retried on a fresh connection."""
    for attempt in (1, 2):
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise


async def reachable(engine: AsyncEngine) -> bool:
    """Whether a trivial statement succeeds now (tells an outage from a bad statement)."""
    try:
        await select_one(engine)
        return True
    except Exception:
        return False


def is_outage(exc: BaseException) -> bool:
    """True when the database is unreachable rather than the statement being wrong."""
    if isinstance(exc, TimeoutError | ConnectionError | OSError):
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    # The same, raised by the driver itself where a hot path bypasses SQLAlchemy.
    if isinstance(exc, asyncmy.errors.OperationalError | asyncmy.errors.InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
