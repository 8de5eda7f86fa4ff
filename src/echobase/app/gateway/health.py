"""Dependency checks behind GET /health, cached so probes cannot hammer the database."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def _check(name: str, probe: Any) -> dict[str, str]:
    try:
        async with asyncio.timeout(3):
            await probe()
        return {"status": "healthy", "message": f"{name} reachable"}
    except Exception as exc:  # report, never raise: health must answer
        return {"status": "unhealthy", "message": f"{name} unreachable ({type(exc).__name__})"}


class HealthChecker:
    def __init__(self, engine: AsyncEngine, sqs: Any, queue_url: str, ttl: float) -> None:
        self._engine, self._sqs, self._queue_url, self._ttl = engine, sqs, queue_url, ttl
        self._cached: tuple[float, dict[str, dict[str, str]]] | None = None
        self._lock = asyncio.Lock()

    async def _database(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def _queue(self) -> None:
        await self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])

    async def checks(self) -> dict[str, dict[str, str]]:
        async with self._lock:  # one probe at a time; the rest reuse its answer
            if self._cached and time.monotonic() - self._cached[0] < self._ttl:
                return self._cached[1]
            database, sqs = await asyncio.gather(
                _check("database", self._database), _check("queue", self._queue)
            )
            result = {"database": database, "sqs": sqs}
            self._cached = (time.monotonic(), result)
            return result
