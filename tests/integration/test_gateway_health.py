"""GET /health: shape, caching (<= 5 s) and 503 "degraded" when a dependency is down;
GET /openapi.json."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests_support import LEAKS

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@pytest.fixture(scope="module")
def gw(gateway_factory):
    return gateway_factory("gw-health")


def _assert_check(check: dict) -> None:
    assert set(check) >= {"status", "message"}
    assert check["status"] in ("healthy", "unhealthy")
    assert isinstance(check["message"], str)


def test_health_reports_healthy_with_every_field(gw):
    r = gw.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"status", "timestamp", "version", "colour", "checks"}
    assert body["status"] == "healthy"
    assert ISO_Z.match(body["timestamp"]), body["timestamp"]
    assert body["version"] == "test-release"
    assert body["colour"] == "blue"
    assert set(body["checks"]) == {"database", "sqs"}
    for check in body["checks"].values():
        _assert_check(check)
        assert check["status"] == "healthy"
    assert r.headers["content-type"].startswith("application/json")
    # /health is outside /api/v1: never rate limited.
    assert "ratelimit-limit" not in r.headers


def test_health_needs_no_authentication_and_ignores_bad_tokens(gw):
    r = gw.get("/health", token="not-a-jwt", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 200
    assert r.json()["status"] == "healthy"


def test_health_degraded_when_queue_url_does_not_exist(backing, gateway_factory):
    queues = backing.new_queues()
    missing = queues.queue_url.rsplit("/", 1)[0] + "/no-such-queue-for-health-test"
    gw_bad = gateway_factory("gw-health-noq", queues=type(queues)(missing, queues.dlq_url))
    r = gw_bad.get("/health")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "degraded"
    assert body["checks"]["sqs"]["status"] == "unhealthy"
    assert body["checks"]["database"]["status"] == "healthy"
    for check in body["checks"].values():
        _assert_check(check)
    assert ISO_Z.match(body["timestamp"])
    assert body["colour"] == "blue"
    for word in LEAKS:
        assert word not in r.text
    # The degraded answer still carries the edge's headers.
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers.get("x-correlation-id")


def test_health_is_cached_then_turns_degraded_after_queue_deleted(backing, gateway_factory):
    gw_q = gateway_factory("gw-health-del")
    user = gw_q.new_user()
    gw_q.wait_catalog(user.token)
    first = gw_q.get("/health")
    assert first.status_code == 200, first.text
    checked_at = time.monotonic()

    backing.stack.client("sqs").delete_queue(QueueUrl=gw_q.queues.queue_url)

    # Within the cache lifetime the last answer is reused (the queue is already gone).
    cached = gw_q.get("/health")
    if time.monotonic() - checked_at < 4.0:
        assert cached.status_code == 200, cached.text
        assert cached.json()["checks"] == first.json()["checks"]
        # Only the checks are cached: the timestamp is the answer's own.
        assert ISO_Z.match(cached.json()["timestamp"])

    # Cached for at most 5 s: after that the outage shows.
    time.sleep(max(0.0, 5.3 - (time.monotonic() - checked_at)))
    deadline = time.monotonic() + 5
    while True:
        r = gw_q.get("/health")
        if r.status_code == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "degraded"
    assert body["checks"]["sqs"]["status"] == "unhealthy"
    assert body["checks"]["database"]["status"] == "healthy"
    assert time.monotonic() - checked_at < 5.3 + 5  # not cached for much longer than 5 s

    # An order that cannot be queued is a clean 503, with no AWS internals in the answer.
    order = gw_q.post("/api/v1/orders", {"productId": 1, "quantity": 1}, user.token)
    assert order.status_code == 503, order.text
    assert order.json()["error"] == "Service Unavailable"
    assert order.headers.get("retry-after")
    for word in (*LEAKS, "QueueDoesNotExist", "NonExistentQueue", "amazonaws", "Exception"):
        assert word not in order.text


def test_openapi_document_is_served(gw):
    r = gw.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in (
        "/health",
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/products",
        "/api/v1/orders",
    ):
        assert path in paths, path
    assert "post" in paths["/api/v1/orders"] and "get" in paths["/api/v1/orders"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_health_sees_a_database_restart_at_the_next_probe(backing, gateway_factory):
    """After MariaDB restarts, the first probe says healthy (the connection pooled before the
    restart is stale: that failure is not the server's), and a failed probe is not reused
    once the database is back. A colour nobody probed during an outage must not refuse a
    switch or a rollback for the cache's lifetime."""
    gw_db = gateway_factory("gw-health-dbrestart")
    ttl = 5.0  # the default and the maximum

    def probe_after_cache(since: float) -> httpx.Response:
        time.sleep(max(0.0, since + ttl + 0.3 - time.monotonic()))
        return gw_db.get("/health")

    first = gw_db.get("/health")
    assert first.status_code == 200, first.text
    checked_at = time.monotonic()
    backing.stack.stop_database()
    backing.stack.run_database()
    after_restart = probe_after_cache(checked_at)
    assert after_restart.status_code == 200, after_restart.text

    checked_at = time.monotonic()
    backing.stack.stop_database()
    try:
        during = probe_after_cache(checked_at)
        failed_at = time.monotonic()
        assert during.status_code == 503, during.text
        assert during.json()["checks"]["database"]["status"] == "unhealthy"
    finally:
        backing.stack.run_database()
    back = gw_db.get("/health")
    assert time.monotonic() - failed_at < ttl, "too slow a restart to tell reuse from probing"
    assert back.status_code == 200, back.text
