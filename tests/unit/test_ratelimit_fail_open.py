"""The rate limiter never fails the request it guards: whatever the shared counter raises, the
hit is counted in the process (an outage quietly, anything else with the error logged)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog

from echobase.app.gateway.ratelimit import RateLimiter


class BrokenEngine:
    """An engine whose connections fail the way a driver does when its server dies."""

    def __init__(self, error: Exception) -> None:
        self.error, self.connects = error, 0

    async def connect(self) -> Any:
        self.connects += 1
        raise self.error


@pytest.mark.parametrize(
    ("error", "level"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "warning"),
        # What asyncmy raises when the server closes a connection it just accepted.
        (RuntimeError("Transport does not expose socket instance"), "error"),
    ],
    ids=["an outage", "an error the driver does not call an outage"],
)
def test_a_failing_shared_counter_counts_locally(error: Exception, level: str) -> None:
    engine = BrokenEngine(error)
    limiter = RateLimiter(engine, window_seconds=60, limit=3, connections=2)  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        decisions = [asyncio.run(limiter.hit("10.0.0.1", now=1000.0)) for _ in range(4)]
    assert [d.remaining for d in decisions] == [2, 1, 0, -1]  # still limits, in-process
    assert engine.connects == 1  # not retried on every request while it fails
    counted_locally = [e for e in logs if e["event"].startswith("rate limit counting locally")]
    assert [e["log_level"] for e in counted_locally] == [level]
