"""GET /health: shape, caching (<= 5 s) and 503 "degraded" when a dependency is down;
GET /openapi.json."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from echobase.app.core.config import GatewaySettings
from tests_support import LEAKS, register, wait_until

# The health cache's lifetime: the default, which is also the most it may be set to.
TTL = GatewaySettings.model_fields["health_cache_seconds"].default
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
    """A healthy answer is reused for at most the cache's lifetime, a failure only by the
    callers already waiting for it. Deleting and re-creating the gateway's queue breaks and
    mends a dependency at once; each claim is checked on answers whose timing proves it, and
    an attempt too slow to prove anything is made again rather than skipped."""
    gw_q = gateway_factory("gw-health-del")
    user = gw_q.new_user()
    gw_q.wait_catalog(user.token)
    sqs = backing.stack.client("sqs")
    queue_url = gw_q.queues.queue_url

    def health() -> tuple[float, httpx.Response, float]:
        asked = time.monotonic()
        answer = gw_q.get("/health")
        return asked, answer, time.monotonic()

    def until_degraded(healthy_until: float) -> tuple[float, httpx.Response]:
        """Ask until the outage shows. A healthy answer probed by ``healthy_until - TTL``
        may be reused until ``healthy_until``, never after it."""
        answers: list[tuple[float, httpx.Response, float]] = []
        wait_until(
            lambda: answers.append(health()) or answers[-1][1].status_code == 503,
            TTL + 30,
            "the deleted queue to show in /health",
        )
        late = [
            round(asked - healthy_until, 2)
            for asked, answer, _ in answers
            if answer.status_code == 200 and asked >= healthy_until
        ]
        assert not late, f"a healthy answer reused {late} s past the cache's lifetime"
        return answers[-1][0], answers[-1][1]

    _, first, answered = health()
    assert first.status_code == 200, first.text
    sqs.delete_queue(QueueUrl=queue_url)
    failed_asked, degraded = until_degraded(answered + TTL)
    body = degraded.json()
    assert body["status"] == "degraded"
    assert body["checks"]["sqs"]["status"] == "unhealthy"
    assert body["checks"]["database"]["status"] == "healthy"

    for _ in range(5):
        sqs.create_queue(QueueName=queue_url.rsplit("/", 1)[1])  # the same URL again
        asked, mended, answered = health()
        # Whoever asks after a failure gets a probe of their own: the queue is back.
        assert mended.status_code == 200, mended.text
        sqs.delete_queue(QueueUrl=queue_url)
        _, cached, done = health()
        # Both claims are proven only when their answers came within the lifetime: a
        # reused failure would have answered 503 above, and the mended answer (probed after
        # ``asked``) must still be served now.
        if answered - failed_asked < TTL and done - asked < TTL:
            break
        failed_asked, _ = until_degraded(answered + TTL)
    else:
        pytest.fail(f"in 5 attempts /health never answered twice within {TTL} s")
    assert cached.status_code == 200, cached.text
    assert cached.json()["checks"] == mended.json()["checks"]
    # Only the checks are cached: the timestamp is the answer's own.
    assert ISO_Z.match(cached.json()["timestamp"])
    # Cached for at most its lifetime: after that the outage shows.
    until_degraded(answered + TTL)

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
    restart is stale: that failure is not the server's), and once it is back after an outage
    the next probe says so. A colour nobody probed during an outage must not refuse a switch
    or a rollback for the cache's lifetime. (That a failure is never reused by a later
    caller is proven above, with an outage that can be mended within the lifetime.)"""
    gw_db = gateway_factory("gw-health-dbrestart")

    def probe_after_cache(since: float) -> httpx.Response:
        # The answer cached at ``since`` was probed before it: past its lifetime, this one
        # is a probe of its own.
        time.sleep(max(0.0, since + TTL + 0.3 - time.monotonic()))
        return gw_db.get("/health")

    first = gw_db.get("/health")
    assert first.status_code == 200, first.text
    checked_at = time.monotonic()
    backing.stack.stop_database()
    backing.stack.run_database()
    after_restart = probe_after_cache(checked_at)
    assert after_restart.status_code == 200, after_restart.text

    backing.stack.stop_database()
    try:
        answers: list[httpx.Response] = []
        wait_until(
            lambda: answers.append(gw_db.get("/health")) or answers[-1].status_code == 503,
            TTL + 30,
            "the database outage to show in /health",
        )
        assert answers[-1].json()["checks"]["database"]["status"] == "unhealthy"
    finally:
        backing.stack.run_database()
    back = gw_db.get("/health")
    assert back.status_code == 200, back.text


def test_a_database_restart_costs_no_request_a_503(backing, gateway_factory):
    """Connections pooled before MariaDB restarted are closed by the server; the gateway
    must replace them at checkout instead of failing a user's request on each one."""
    gw = gateway_factory("gw-db-restart-pool")
    # Concurrent, so that every worker's pool holds several connections; each registration
    # must answer 201 (register asserts it), after the restart as before it.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: register(gw.url), range(24)))
    backing.stack.stop_database()
    backing.stack.run_database()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: register(gw.url), range(24)))
