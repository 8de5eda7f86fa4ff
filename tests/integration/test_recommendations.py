"""Recommendations end to end: the durable MCP service (real process under supervisor) asked
by a real MCP client over the network, through the load balancer and on its own port; the
gateway's login, register and /products/recommended answers computed from the order history
in MariaDB; and logins that go on when the service is stopped or hung."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bluegreen_support import BlueGreenSystem, deployed, lb_client, lb_tls
from echobase.platform.durable import credentials
from echobase.platform.runtime.services import supervisor_for
from tests_support import MCP_ACCEPT, MCP_TOOL_CALL, sign_up, wait_until

pytestmark = pytest.mark.timeout(600)

PASSWORD = "Passw0rdX"
# Orders seeded per product: the ranking is 8, 3, 5, 1, 10, 2.
SEED = {8: 6, 3: 5, 5: 4, 1: 3, 10: 2, 2: 1}
RANKING = [8, 3, 5, 1, 10, 2]


@pytest.fixture(scope="module")
def bg() -> Iterator[BlueGreenSystem]:
    with deployed(services={"ECHOBASE_POPULAR_REFRESH_SECONDS": "1"}) as system:
        yield system


@pytest.fixture(scope="module")
def lb(bg: BlueGreenSystem) -> Iterator[httpx.Client]:
    with lb_client(bg, timeout=15) as client:
        yield client


def api_key(bg: BlueGreenSystem) -> str:
    return bg.system.secret("devlocal", credentials.MCP_API_KEY)


class Shopper:
    """A user signed in through the LB, with their own cookie jar."""

    def __init__(self, bg: BlueGreenSystem) -> None:
        lb_url = bg.system.plan("devlocal").lb_url
        self.http = lb_client(bg, timeout=15, headers={"Origin": lb_url})
        self.username = f"r_{uuid.uuid4().hex[:10]}"
        self.registered = sign_up(self.http, self.username, "Recommended Reader", PASSWORD)
        self.id: int = self.registered["user"]["id"]

    def login(self) -> httpx.Response:
        answer = self.http.post(
            "/api/v1/auth/login", json={"username": self.username, "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        return answer

    def recommended_ids(self) -> list[int]:
        return [p["id"] for p in self.login().json()["recommendedProducts"]]


def insert_orders(bg: BlueGreenSystem, user_id: int, counts: dict[int, int]) -> list[str]:
    """Orders as the processor stores them, written directly: the history to rank."""
    uids = []
    for product_id, count in counts.items():
        for _ in range(count):
            uid = str(uuid.uuid4())
            bg.system.query(
                "devlocal",
                "INSERT INTO orders (order_uid, user_id, product_id, product_name, sku,"
                " quantity, total_price) SELECT %s, %s, id, name, sku, 1, cost"
                " FROM products WHERE id = %s",
                (uid, user_id, product_id),
            )
            uids.append(uid)
    return uids


def mcp_health(bg: BlueGreenSystem) -> dict[str, Any]:
    plan = bg.system.plan("devlocal")
    return httpx.get(plan.mcp_health_url, timeout=5).json()


@pytest.fixture(scope="module")
def history(bg: BlueGreenSystem) -> dict[str, Any]:
    """The seeded order history, ranked by the service (it re-ranks every second here)."""
    fan = Shopper(bg)
    uids = insert_orders(bg, fan.id, SEED)
    wait_until(
        lambda: mcp_health(bg)["checks"]["ranking"]["products"] == len(SEED),
        20,
        "the service to rank the seeded orders",
    )
    return {"fan": fan, "uids": uids}


def products(bg: BlueGreenSystem) -> dict[int, dict[str, Any]]:
    rows = bg.system.query("devlocal", "SELECT id, name, cost, sku FROM products")
    return {i: {"id": i, "name": n, "cost": float(c), "sku": s} for i, n, c, s in rows}


async def call_tool(
    url: str, headers: dict[str, str], verify: ssl.SSLContext | bool, name: str, args: dict
) -> Any:
    async with httpx2.AsyncClient(headers=headers, verify=verify, timeout=10) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"getRecommendedProducts", "getOrderStatus"} <= tools
            result = await client.call_tool(name, args)
            assert not result.is_error, result.content
            return result.structured_content


def test_a_real_mcp_client_gets_recommendations_through_the_lb_and_directly(bg, history):
    plan = bg.system.plan("devlocal")
    reader = Shopper(bg)
    insert_orders(bg, reader.id, {8: 1, 5: 1})
    catalogue = products(bg)
    expected = [catalogue[i] for i in (3, 1, 10, 2)]  # the ranking minus their own

    through_lb = asyncio.run(
        call_tool(
            f"{plan.lb_url}/mcp",
            {"X-API-Key": api_key(bg)},
            lb_tls(bg),
            "getRecommendedProducts",
            {"userId": reader.id},
        )
    )
    assert through_lb == {"result": expected}
    direct = asyncio.run(
        call_tool(
            plan.mcp_url,
            {"Authorization": f"Bearer {api_key(bg)}"},
            True,
            "getRecommendedProducts",
            {"userId": reader.id},
        )
    )
    assert direct == through_lb
    newcomer = asyncio.run(
        call_tool(
            plan.mcp_url, {"X-API-Key": api_key(bg)}, True, "getRecommendedProducts", {"userId": 0}
        )
    )
    assert [p["id"] for p in newcomer["result"]] == RANKING[:5]  # at most five


def test_the_order_status_tool_answers_a_users_own_orders_only(bg, history):
    plan, fan = bg.system.plan("devlocal"), history["fan"]
    uid = history["uids"][0]
    headers = {"X-API-Key": api_key(bg)}
    own = asyncio.run(
        call_tool(plan.mcp_url, headers, True, "getOrderStatus", {"userId": fan.id, "orderId": uid})
    )
    assert own["found"] is True and own["status"] == "pending" and own["quantity"] == 1
    assert own["productName"] == products(bg)[8]["name"]
    other = asyncio.run(
        call_tool(
            plan.mcp_url, headers, True, "getOrderStatus", {"userId": fan.id + 1, "orderId": uid}
        )
    )
    assert other == {"found": False, "orderId": uid} | {
        k: None for k in ("status", "productName", "quantity", "totalPrice", "createdAt")
    }


@pytest.mark.parametrize("where", ["lb", "direct"])
def test_requests_without_the_key_or_with_a_wrong_key_are_refused(bg, history, where):
    plan = bg.system.plan("devlocal")
    url, verify = (f"{plan.lb_url}/mcp", lb_tls(bg)) if where == "lb" else (plan.mcp_url, True)
    call, headers = MCP_TOOL_CALL, MCP_ACCEPT
    refused_before = refusals(bg)
    attempts = [
        {},
        {"X-API-Key": "wrong"},
        {"X-API-Key": api_key(bg)[:-1]},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {api_key(bg)}"},
    ]
    for extra in attempts:
        answer = httpx.post(url, json=call, headers=headers | extra, verify=verify, timeout=10)
        assert answer.status_code == 401, (extra.keys(), answer.text)
        assert answer.json()["error"] in (
            "invalid API key",
            "API key required (X-API-Key or Authorization: Bearer)",
        )
        assert "getRecommendedProducts" not in answer.text and api_key(bg) not in answer.text
    assert refusals(bg) == refused_before + len(attempts)
    with pytest.raises(BaseException):
        asyncio.run(call_tool(url, {"X-API-Key": "wrong"}, verify, "getRecommendedProducts", {}))


def refusals(bg: BlueGreenSystem) -> float:
    plan = bg.system.plan("devlocal")
    text = httpx.get(plan.mcp_health_url.replace("/health", "/metrics"), timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith("echobase_mcp_refused_total"))
    return float(line.split()[-1])


def test_login_and_register_carry_recommendations_from_the_order_history(bg, lb, history):
    catalogue = products(bg)
    shopper = Shopper(bg)
    assert shopper.registered["recommendedProducts"] == [catalogue[i] for i in RANKING[:5]]

    order = shopper.http.post("/api/v1/orders", json={"productId": 8, "quantity": 2})
    assert order.status_code == 201, order.text
    wait_until(
        lambda: (
            bg.system.query(
                "devlocal", "SELECT COUNT(*) FROM orders WHERE user_id = %s", (shopper.id,)
            )
            == [(1,)]
        ),
        20,
        "the processor to store the order",
    )
    answer = shopper.login().json()
    assert answer["recommendedProducts"] == [catalogue[i] for i in RANKING[1:6]]
    listed = shopper.http.get("/api/v1/products/recommended")
    assert listed.status_code == 200
    assert listed.json() == {"success": True, "recommendedProducts": answer["recommendedProducts"]}
    assert lb.get("/api/v1/products/recommended").status_code == 401  # no session, no list

    # Current product data, not a copy: a price change shows at once.
    before = catalogue[3]["cost"]
    bg.system.query("devlocal", "UPDATE products SET cost = 1234.5 WHERE id = 3")
    try:
        first = shopper.http.get("/api/v1/products/recommended").json()["recommendedProducts"][0]
        assert first == {**catalogue[3], "cost": 1234.5}
    finally:
        bg.system.query("devlocal", "UPDATE products SET cost = %s WHERE id = 3", (before,))

    # Someone who ordered everything popular: nothing to recommend, still an array.
    collector = Shopper(bg)
    insert_orders(bg, collector.id, dict.fromkeys(SEED, 1))
    assert collector.login().json()["recommendedProducts"] == []


def gateway_log_lines(bg: BlueGreenSystem, text: str) -> int:
    live = bg.system.ok("active").stdout.strip()
    log = bg.system.stack.logs_dir / f"echobase-{live}-api-gateway.log"
    return sum(text in line for line in log.read_text().splitlines())


def mcp_program(bg: BlueGreenSystem) -> str:
    return bg.system.plan("devlocal").service("mcp").name


def test_a_login_while_the_service_is_stopped_succeeds_with_no_recommendations(bg, history):
    shopper = Shopper(bg)
    supervisor = supervisor_for(bg.system.home)
    went_down = gateway_log_lines(bg, "recommendations unavailable")
    supervisor.stop(mcp_program(bg))
    try:
        assert bg.system.status("devlocal")["mcp"]["state"] == "STOPPED"
        for _ in range(6):
            answer = shopper.login().json()
            assert answer["success"] is True and answer["recommendedProducts"] == []
        listed = shopper.http.get("/api/v1/products/recommended")
        assert listed.json()["recommendedProducts"] == []
        # Logged once per gateway worker, not once per login.
        assert 1 <= gateway_log_lines(bg, "recommendations unavailable") - went_down <= 2
    finally:
        supervisor.start(mcp_program(bg))
    wait_until(lambda: shopper.recommended_ids() == RANKING[:5], 30, "recommendations to return")
    assert gateway_log_lines(bg, "recommendations available again") >= 1


def test_a_hung_service_costs_a_login_at_most_the_short_timeout(bg, history):
    shopper = Shopper(bg)
    wait_until(lambda: shopper.recommended_ids() == RANKING[:5], 30, "recommendations")
    info = supervisor_for(bg.system.home).info(mcp_program(bg))
    assert info is not None and info.pid
    os.kill(info.pid, signal.SIGSTOP)
    try:
        for _ in range(3):
            started = time.monotonic()
            answer = shopper.login().json()
            elapsed = time.monotonic() - started
            assert answer["recommendedProducts"] == []
            # The gateway waits 0.5 s; nginx would have waited 30 s for a hung upstream.
            assert elapsed < 5, elapsed
    finally:
        os.kill(info.pid, signal.SIGCONT)
    wait_until(lambda: shopper.recommended_ids() == RANKING[:5], 30, "recommendations to return")


def test_status_lists_the_service_and_the_lb_answers_for_it_when_down(bg, lb, history):
    status = bg.system.status("devlocal")["mcp"]
    assert status["state"] == "RUNNING" and status["healthy"] is True
    assert status["name"] == "echobase-devlocal-durable-mcp"
    supervisor = supervisor_for(bg.system.home)
    supervisor.stop(mcp_program(bg))
    try:
        answer = lb.post("/mcp", json={}, headers={"X-API-Key": api_key(bg)})
        assert answer.status_code == 503
        assert json.loads(answer.text) == {"error": "recommendations are unavailable"}
    finally:
        supervisor.start(mcp_program(bg))
