"""Client-address spoofing against the rate limit and the login lockout: every header a
client could use to pose as someone else, through the load balancer of a deployed system
(the gateway there trusts nginx's X-Forwarded-For) and directly at a gateway. The spoofed
requests all land in the one bucket of the real address; the lockout follows the account."""

from __future__ import annotations

import pytest

from security.live_support import LIVE_RATE_LIMIT, LiveSystem, register
from tests_support import ORIGIN_HEADERS

pytestmark = pytest.mark.timeout(300)
PRODUCTS = "/api/v1/products"
LOGIN = "/api/v1/auth/login"


def spoofed(i: int) -> dict[str, str]:
    address = f"198.51.100.{i % 250 + 1}"
    return {
        "X-Forwarded-For": address,
        "X-Real-IP": address,
        "Forwarded": f"for={address};proto=https",
        "True-Client-IP": address,
        "CF-Connecting-IP": address,
        "X-Client-IP": address,
        "X-Originating-IP": address,
        "X-Cluster-Client-IP": address,
        "Client-IP": address,
    }


def _buckets(live: LiveSystem) -> set[str]:
    return {row[0] for row in live.query("SELECT bucket FROM rate_limit_windows")}


def test_spoofed_addresses_do_not_evade_the_rate_limit_through_the_lb(live):
    live.clear_rate_limit()
    try:
        with live.lb() as lb:
            statuses = [
                lb.get(PRODUCTS, headers=spoofed(i)).status_code for i in range(LIVE_RATE_LIMIT + 5)
            ]
            # Nor a list of hops, a spoofed hop that claims to be the load balancer itself,
            # or an IPv6 literal.
            for value in ("203.0.113.9, 127.0.0.1", "127.0.0.1", "::1", "unknown", ""):
                r = lb.get(PRODUCTS, headers={"X-Forwarded-For": value})
                statuses.append(r.status_code)
        assert statuses[:LIVE_RATE_LIMIT] == [401] * LIVE_RATE_LIMIT, statuses
        assert set(statuses[LIVE_RATE_LIMIT:]) == {429}, statuses
        assert _buckets(live) == {"ip:127.0.0.1"}
    finally:
        live.clear_rate_limit()


def _lockout_holds(client, origin: dict[str, str]) -> None:
    """Five failures, each from a different claimed address, lock the account for all."""
    user = register(client, origin, "spoof")
    wrong = {"username": user["username"], "password": "Wrong1Password"}
    for i in range(5):
        r = client.post(LOGIN, json=wrong, headers={**origin, **spoofed(i)})
        assert r.status_code == 401, r.text
    right = {"username": user["username"], "password": user["password"]}
    for i in range(5, 8):
        r = client.post(LOGIN, json=right, headers={**origin, **spoofed(i)})
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "Account locked"
        assert not r.headers.get_list("set-cookie")


def test_spoofed_addresses_do_not_evade_the_lockout_through_the_lb(live):
    live.clear_rate_limit()
    try:
        with live.lb() as lb:
            _lockout_holds(lb, live.origin)
    finally:
        live.clear_rate_limit()


def test_spoofed_addresses_do_not_evade_the_lockout_at_a_gateway(gateway_factory):
    gw = gateway_factory("gw-spoof")
    _lockout_holds(gw.http, ORIGIN_HEADERS)


def test_forwarded_and_other_headers_do_not_change_the_bucket_at_a_gateway(
    backing, gateway_factory
):
    """X-Forwarded-For and X-Real-IP at a gateway are in test_gateway_ratelimit.py; here the
    headers other proxies use."""
    gw = gateway_factory(
        "gw-spoof-rl", ECHOBASE_RATE_LIMIT_MAX="5", ECHOBASE_RATE_LIMIT_WINDOW_SECONDS="3600"
    )
    backing.query("DELETE FROM rate_limit_windows")
    statuses = [gw.get(PRODUCTS, headers=spoofed(i)).status_code for i in range(8)]
    assert statuses == [401] * 5 + [429] * 3, statuses
    buckets = {row[0] for row in backing.query("SELECT bucket FROM rate_limit_windows")}
    assert buckets == {"ip:127.0.0.1"}
