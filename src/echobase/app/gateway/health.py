"""Dependency checks behind GET /health, cached so probes cannot hammer the database."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from echobase.app.core.database import select_one


async def _check(name: str, probe: Any) -> dict[str, str]:
    try:
        async with asyncio.timeout(3):
            await probe()
        return {"status": "healthy", "message": f"{name} reachable"}
    except Exception as exc:  # report, never raise: health must answer
        return {"status": "unhealthy", "message": f"{name} unreachable ({type(exc).__name__})"}


class HealthChecker:
    """A healthy answer is reused for ``ttl`` seconds. A failure is reused only by the
    callers that were already waiting while it was probed, so a recovered dependency shows
    at the next probe, and probes of a dead one still run one at a time."""

    def __init__(self, engine: AsyncEngine, sqs: Any, queue_url: str, ttl: float) -> None:
        self._engine, self._sqs, self._queue_url, self._ttl = engine, sqs, queue_url, ttl
        self._cached: tuple[float, bool, dict[str, dict[str, str]]] | None = None
        self._lock = asyncio.Lock()

    async def _database(self) -> None:
        await select_one(self._engine)

    async def _queue(self) -> None:
        await self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])

    async def checks(self) -> dict[str, dict[str, str]]:
        asked = time.monotonic()
        async with self._lock:
            if self._cached:
                probed, healthy, result = self._cached
                if probed >= asked or (healthy and time.monotonic() - probed < self._ttl):
                    return result
            database, sqs = await asyncio.gather(
                _check("database", self._database), _check("queue", self._queue)
            )
            result = {"database": database, "sqs": sqs}
            healthy = all(check["status"] == "healthy" for check in result.values())
            self._cached = (time.monotonic(), healthy, result)
            return result
