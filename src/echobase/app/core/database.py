"""Async engine for the shared MariaDB, and how its failures are told apart."""

from __future__ import annotations

from typing import Any

import asyncmy.errors
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from echobase.app.core.secrets import DatabaseCredentials


def create_engine(
    credentials: DatabaseCredentials, pool_size: int, autocommit: bool = False
) -> AsyncEngine:
    """``autocommit=True`` is for single-statement hot paths: every statement commits on the
    server, and no COMMIT or reset ROLLBACK round trip follows it. Use ``connect()`` there,
    never multi-statement transactions."""
    engine = create_async_engine(
        credentials.url("asyncmy"),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping per checkout (a round trip on every request): a connection the server
        # closed is noticed for free at checkout (_refuse_closed_by_server).
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
    event.listen(engine.sync_engine, "checkout", _refuse_closed_by_server)
    return engine


def _refuse_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server has closed (MariaDB restarted or was killed) is
    replaced at checkout, not found dead by a user's statement: each worker's first
    request after a restart was a 503. The driver's protocol has already seen the server's
    FIN while the connection sat idle in the pool, so this costs no round trip (unlike
    pool_pre_ping). DisconnectionError makes the pool reconnect this slot and go on."""
    raw = getattr(dbapi_connection, "_connection", None)
    protocol = getattr(raw, "_proto", None)
    transport = getattr(raw, "_transport", None)
    if getattr(protocol, "eof", False) or (transport is not None and transport.is_closing()):
        raise DisconnectionError("the server closed this pooled connection")


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
