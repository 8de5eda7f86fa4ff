"""Per-client rate limit and per-username login lockout, kept in the shared database so
every worker of both colours sees one count that survives restarts and switches."""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from echobase.app.core.database import is_outage

log = structlog.get_logger()

# LAST_INSERT_ID(expr) hands the new count back in the OK packet: one round trip per request.
_HIT = text(
    "INSERT INTO rate_limit_windows (bucket, window_start, hits) "
    "VALUES (:bucket, :window_start, LAST_INSERT_ID(1)) "
    "ON DUPLICATE KEY UPDATE hits = LAST_INSERT_ID(hits + 1)"
)
_RETRY_SHARED_AFTER = 2.0
_PRUNE = text("DELETE FROM rate_limit_windows WHERE window_start < :oldest")


@dataclass(frozen=True)
class RateDecision:
    limit: int
    remaining: int
    reset_seconds: int

    @property
    def allowed(self) -> bool:
        return self.remaining >= 0

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(self.remaining, 0)),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


class RateLimiter:
    """Fixed windows. While the database is down each process counts alone (fail open to a
    local limit) so that order intake keeps working through an outage."""

    def __init__(self, engine: AsyncEngine, window_seconds: int, limit: int) -> None:
        """``engine`` should autocommit (see core.database): one round trip per request."""
        self._engine, self._window, self._limit = engine, window_seconds, limit
        self._local: dict[tuple[str, int], int] = {}
        self._local_window = 0
        self._shared_down_until = 0.0
        self._last_prune = 0

    async def hit(self, client: str, now: float | None = None) -> RateDecision:
        now = time.time() if now is None else now
        window_start = int(now // self._window) * self._window
        reset = max(1, int(window_start + self._window - now + 0.999))
        if time.monotonic() < self._shared_down_until:
            hits = self._local_hit(client, window_start)
        else:
            try:
                hits = await self._shared_hit(client, window_start)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                # Do not pay a failed connect on every request while the database is down.
                self._shared_down_until = time.monotonic() + _RETRY_SHARED_AFTER
                log.warning("rate limit counting locally", error=type(exc).__name__)
                hits = self._local_hit(client, window_start)
        return RateDecision(self._limit, self._limit - hits, reset)

    async def _shared_hit(self, client: str, window_start: int) -> int:
        async with self._engine.connect() as conn:
            result = await conn.execute(
                _HIT, {"bucket": client[:128], "window_start": window_start}
            )
            hits = int(result.lastrowid)
            if window_start > self._last_prune:
                self._last_prune = window_start
                await conn.execute(_PRUNE, {"oldest": window_start - self._window})
        return hits

    def _local_hit(self, client: str, window_start: int) -> int:
        if window_start != self._local_window:
            self._local, self._local_window = {}, window_start
        key = (client, window_start)
        self._local[key] = self._local.get(key, 0) + 1
        return self._local[key]


_LOCKED_FOR = text(
    "SELECT GREATEST(locked_until - UNIX_TIMESTAMP(), 0) FROM login_failures WHERE username = :u"
)
# Assignments run left to right, so locked_until sees the failure count just written.
_FAIL = text(
    "INSERT INTO login_failures (username, failures, last_failure_at, locked_until) "
    "VALUES (:u, 1, UNIX_TIMESTAMP(), IF(1 >= :max, UNIX_TIMESTAMP() + :lock, 0)) "
    "ON DUPLICATE KEY UPDATE "
    "failures = IF(last_failure_at < UNIX_TIMESTAMP() - :decay, 1, failures + 1), "
    "locked_until = IF(failures >= :max, UNIX_TIMESTAMP() + :lock, locked_until), "
    "last_failure_at = UNIX_TIMESTAMP()"
)
_CLEAR = text("DELETE FROM login_failures WHERE username = :u")


class LoginLockout:
    def __init__(self, engine: AsyncEngine, max_failures: int, lockout_seconds: int) -> None:
        self._engine, self._max, self._lock = engine, max_failures, lockout_seconds

    @staticmethod
    def _key(username: str) -> str:
        return username.strip().lower()[:50]

    async def locked_for(self, username: str) -> int:
        async with self._engine.connect() as conn:
            remaining = (await conn.execute(_LOCKED_FOR, {"u": self._key(username)})).scalar()
        return int(remaining or 0)

    async def record_failure(self, username: str) -> None:
        params = {
            "u": self._key(username),
            "max": self._max,
            "lock": self._lock,
            "decay": self._lock,
        }
        async with self._engine.begin() as conn:
            await conn.execute(_FAIL, params)

    async def clear(self, username: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(_CLEAR, {"u": self._key(username)})
