"""Per-client-IP rate limit on /api/v1/* and per-username login lockout, both kept in the
database and so shared by every gateway process; X-Forwarded-For is believed only from
trusted proxies."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests_support import wait_until, within_one_rate_window

WINDOW = 60
LIMIT = 6
PRODUCTS = "/api/v1/products"
LOGIN = "/api/v1/auth/login"
TOO_MANY = {"error": "Too many requests", "message": "Too many requests, please try again later"}


@pytest.fixture(scope="module")
def limited(backing, gateway_factory):
    """Two gateways on the same queues with a small shared limit."""
    queues = backing.new_queues()
    env = {
        "ECHOBASE_RATE_LIMIT_MAX": str(LIMIT),
        "ECHOBASE_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW),
    }
    return gateway_factory("gw-rl-a", queues, **env), gateway_factory("gw-rl-b", queues, **env)


@pytest.fixture(scope="module")
def behind_proxy(gateway_factory):
    """A gateway that trusts the loopback peer as its load balancer."""
    return gateway_factory(
        "gw-rl-proxy",
        ECHOBASE_RATE_LIMIT_MAX=str(LIMIT),
        ECHOBASE_RATE_LIMIT_WINDOW_SECONDS=str(WINDOW),
        ECHOBASE_TRUSTED_PROXIES="127.0.0.1",
    )


@pytest.fixture(scope="module")
def lockout_pair(backing, gateway_factory):
    """Two gateways with the default (large) rate limit, for the login lockout."""
    queues = backing.new_queues()
    return gateway_factory("gw-lock-a", queues), gateway_factory("gw-lock-b", queues)


@pytest.fixture
def fresh_window(backing):
    """Start with an empty rate-limit table and enough of the current window left to finish."""
    within_one_rate_window(WINDOW, needed=15)
    backing.query("DELETE FROM rate_limit_windows")


def assert_edge_headers(r) -> None:
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert r.headers.get("x-frame-options")
    assert r.headers.get("referrer-policy")
    assert r.headers.get("strict-transport-security")
    assert r.headers.get("content-security-policy")
    assert r.headers.get("x-correlation-id")
    assert "server" not in r.headers


def assert_limited(r) -> None:
    assert r.status_code == 429, r.text
    assert r.json() == TOO_MANY
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= WINDOW
    assert r.headers["ratelimit-limit"] == str(LIMIT)
    assert r.headers["ratelimit-remaining"] == "0"
    assert_edge_headers(r)


# --- rate limit -------------------------------------------------------------------------------


def test_rate_limit_is_shared_by_two_gateways(backing, limited, fresh_window):
    a, b = limited
    remaining = []
    for i in range(LIMIT):
        r = (a if i % 2 == 0 else b).get(PRODUCTS)
        assert r.status_code == 401, r.text  # counted even when unauthenticated
        assert r.headers["ratelimit-limit"] == str(LIMIT)
        reset = int(r.headers["ratelimit-reset"])
        assert 1 <= reset <= WINDOW
        assert "retry-after" not in r.headers
        remaining.append(int(r.headers["ratelimit-remaining"]))
    assert remaining == list(range(LIMIT - 1, -1, -1))

    assert_limited(a.get(PRODUCTS))
    assert_limited(b.get(PRODUCTS))
    # Every /api/v1 route shares the budget, POSTs included.
    assert_limited(b.post(LOGIN, {"username": "someone", "password": "Whatever1"}))
    assert_limited(a.post("/api/v1/auth/register", {}))
    # Outside /api/v1 nothing is limited.
    for gw in (a, b):
        r = gw.get("/health")
        assert r.status_code == 200, r.text
        assert "ratelimit-limit" not in r.headers

    rows = backing.query("SELECT bucket, hits FROM rate_limit_windows")
    assert rows == [("ip:127.0.0.1", LIMIT + 4)]


def test_the_shared_count_goes_on_after_a_database_restart(backing, limited, fresh_window):
    """The limiter keeps its database connections. After MariaDB restarts, the kept one is
    stale: the next request must count in the shared table on a fresh connection, not take
    that one failure for an outage and count alone in its process."""
    a, b = limited
    before = [int(gw.get(PRODUCTS).headers["ratelimit-remaining"]) for gw in (a, b)]
    assert before == [LIMIT - 1, LIMIT - 2]
    backing.stack.stop_database()
    backing.stack.run_database()
    answers = [gw.get(PRODUCTS) for gw in (a, b)]
    # Anonymous: the limiter counts before authentication refuses, so nothing else here
    # touches the database.
    assert [r.status_code for r in answers] == [401, 401]
    after = [int(r.headers["ratelimit-remaining"]) for r in answers]
    assert after == [LIMIT - 3, LIMIT - 4]
    assert backing.query("SELECT bucket, hits FROM rate_limit_windows") == [("ip:127.0.0.1", 4)]


@pytest.fixture(scope="module")
def small_pool(gateway_factory):
    """A gateway whose counter may hold one database connection per worker."""
    return gateway_factory(
        "gw-rl-pool", ECHOBASE_DB_POOL_SIZE="1", ECHOBASE_RATE_LIMIT_WINDOW_SECONDS=str(WINDOW)
    )


def test_more_requests_at_once_than_counter_connections(backing, small_pool, fresh_window):
    """The counter keeps its connections; a burst wider than the pool must wait its turn for
    one, and every request of it is still counted in the shared table."""
    burst = 40

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=small_pool.url, timeout=20) as http:
            return await asyncio.gather(*(http.get(PRODUCTS) for _ in range(burst)))

    answers = asyncio.run(fire())
    assert [r.status_code for r in answers] == [401] * burst
    assert backing.query("SELECT bucket, hits FROM rate_limit_windows") == [("ip:127.0.0.1", burst)]


def test_forwarded_for_spoofing_does_not_change_the_bucket(backing, limited, fresh_window):
    a, _ = limited
    remaining = []
    for i in range(LIMIT):
        spoofed = f"198.51.100.{i + 1}"
        r = a.get(PRODUCTS, headers={"X-Forwarded-For": spoofed, "X-Real-IP": spoofed})
        assert r.status_code == 401
        remaining.append(int(r.headers["ratelimit-remaining"]))
    assert remaining == list(range(LIMIT - 1, -1, -1))
    assert_limited(a.get(PRODUCTS, headers={"X-Forwarded-For": "203.0.113.99"}))
    assert_limited(a.get(PRODUCTS, headers={"X-Forwarded-For": "127.0.0.2, 10.0.0.1"}))
    buckets = {row[0] for row in backing.query("SELECT bucket FROM rate_limit_windows")}
    assert buckets == {"ip:127.0.0.1"}


def test_trusted_proxy_forwarded_for_is_the_bucket(backing, behind_proxy, fresh_window):
    """Positive control for the spoofing test: behind a trusted proxy the client's address
    (the nearest untrusted hop) is the bucket, and whatever a client wrote before it is not."""
    gw = behind_proxy
    for i in range(LIMIT):
        r = gw.get(PRODUCTS, headers={"X-Forwarded-For": f"{i}.1.1.1, 203.0.113.7"})
        assert r.status_code == 401
        assert r.headers["ratelimit-remaining"] == str(LIMIT - 1 - i)
    assert_limited(gw.get(PRODUCTS, headers={"X-Forwarded-For": "203.0.113.7"}))
    other = gw.get(PRODUCTS, headers={"X-Forwarded-For": "203.0.113.8"})
    assert other.status_code == 401
    assert other.headers["ratelimit-remaining"] == str(LIMIT - 1)
    buckets = {row[0] for row in backing.query("SELECT bucket FROM rate_limit_windows")}
    assert buckets == {"ip:203.0.113.7", "ip:203.0.113.8"}


def test_post_without_origin_from_non_loopback_client_is_403(behind_proxy, fresh_window):
    gw = behind_proxy
    r = gw.http.post("/api/v1/auth/logout", headers={"X-Forwarded-For": "203.0.113.50"})
    assert r.status_code == 403, r.text
    assert r.json() == {"error": "Forbidden", "message": "Origin validation failed"}
    r = gw.http.post(
        "/api/v1/auth/logout",
        headers={"X-Forwarded-For": "203.0.113.50", "Origin": gw.origin},
    )
    assert r.status_code == 200, r.text


# --- login lockout ----------------------------------------------------------------------------


def _login(gw, username: str, password: str):
    return gw.post(LOGIN, {"username": username, "password": password})


def assert_locked(r) -> None:
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["error"] == "Account locked"
    assert set(body) == {"error", "message"}
    assert int(r.headers["retry-after"]) > 0
    assert not r.headers.get_list("set-cookie")
    assert_edge_headers(r)


def test_lockout_is_shared_by_two_gateways(backing, lockout_pair):
    a, b = lockout_pair
    user = a.new_user()
    for gw in (a, a, a, b, b):
        r = _login(gw, user.username, "Wrong0Password")
        assert r.status_code == 401, r.text
    # Locked on both, even with the right password.
    assert_locked(_login(a, user.username, user.password))
    assert_locked(_login(b, user.username, user.password))
    assert_locked(_login(b, user.username, "Wrong0Password"))
    assert_locked(_login(a, user.username.upper(), user.password))
    rows = backing.query(
        "SELECT failures, locked_until > UNIX_TIMESTAMP() FROM login_failures WHERE username = %s",
        user.username.lower(),
    )
    assert rows == [(5, 1)]
    # Other accounts are unaffected.
    other = a.new_user()
    assert _login(b, other.username, other.password).status_code == 200


def test_four_failures_do_not_lock_and_success_resets(backing, lockout_pair):
    a, b = lockout_pair
    user = a.new_user()
    for gw in (a, b, a, b):
        assert _login(gw, user.username, "Wrong0Password").status_code == 401
    assert _login(a, user.username, user.password).status_code == 200
    assert (
        backing.query("SELECT * FROM login_failures WHERE username = %s", user.username.lower())
        == []
    )
    for gw in (b, a, b, a):
        assert _login(gw, user.username, "Wrong0Password").status_code == 401
    assert _login(b, user.username, user.password).status_code == 200


def test_unknown_usernames_lock_the_same_way(lockout_pair):
    a, b = lockout_pair
    ghost = f"ghost_{uuid.uuid4().hex[:12]}"
    for gw in (a, b, a, b, a):
        r = _login(gw, ghost, "Wrong0Password")
        assert r.status_code == 401
        assert r.json() == {
            "error": "Authentication failed",
            "message": "Invalid username or password",
        }
    assert_locked(_login(b, ghost, "Wrong0Password"))


def test_lock_expires_and_old_failures_decay(backing, gateway_factory):
    # A 3-second lockout (and decay window) stands in for the default 15 minutes: short to
    # wait out, long enough that five quick logins on a busy machine stay inside it.
    lockout = 3
    gw = gateway_factory("gw-lock-short", ECHOBASE_LOGIN_LOCKOUT_SECONDS=str(lockout))
    user = gw.new_user()

    def past(column: str) -> bool:
        """Whether the user's ``column`` lies that far in the past, by the database's clock:
        the one the gateway decides by."""
        rows = backing.query(
            f"SELECT {column} <= UNIX_TIMESTAMP() FROM login_failures WHERE username = %s",
            user.username.lower(),
        )
        return rows == [(1,)]

    for _ in range(5):
        assert _login(gw, user.username, "Wrong0Password").status_code == 401
    assert_locked(_login(gw, user.username, user.password))
    wait_until(lambda: past("locked_until"), lockout + 30, "the lock to expire")
    assert _login(gw, user.username, user.password).status_code == 200  # lock expired
    for _ in range(4):
        assert _login(gw, user.username, "Wrong0Password").status_code == 401
    # A failure counts on only while the last one is at most the window old.
    wait_until(
        lambda: past(f"last_failure_at + {lockout} + 1"), lockout + 30, "the failures to age"
    )
    for _ in range(4):
        assert _login(gw, user.username, "Wrong0Password").status_code == 401
    # 8 failures in all, but never 5 within the window: not locked.
    assert _login(gw, user.username, user.password).status_code == 200
