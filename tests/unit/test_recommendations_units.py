"""The recommendations' pure parts: ranking, the answer's checks, the API key's reading, the
read-only database user's grants and the load balancer's MCP route. Nothing starts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from echobase.app.core.secrets import DatabaseCredentials
from echobase.app.gateway.recommendations import answer_in_stream, describe
from echobase.app.mcp.contract import RecommendedProduct, recommended_from_result
from echobase.app.mcp.recommendations import pick
from echobase.app.mcp.server import presented_key
from echobase.platform.durable.mariadb import read_only_statements
from echobase.platform.render.durable import DurablePlan
from echobase.platform.render.nginx import render_config
from echobase.platform.stack import Stack, resolve_ports


def product(product_id: int) -> RecommendedProduct:
    return RecommendedProduct(id=product_id, name=f"P{product_id}", cost=1.5, sku=f"S{product_id}")


def test_pick_keeps_the_ranking_order_and_skips_what_is_not_available() -> None:
    available = {pid: product(pid) for pid in (2, 5, 7, 9)}
    assert [p.id for p in pick((9, 1, 2, 3, 7, 5), available, 3)] == [9, 2, 7]
    assert pick((), available, 5) == []
    assert pick((1, 3), available, 5) == []


def test_a_result_is_checked_entry_by_entry() -> None:
    good = {"id": 3, "name": "Monitor", "cost": 349.99, "sku": "MN-404"}
    structured = {
        "result": [
            good,
            {"id": "x", "name": "bad id", "cost": 1, "sku": "B"},
            {"name": "no id", "cost": 1, "sku": "B"},
            None,
            {**good, "id": 4, "extra": "<script>"},
        ]
    }
    products = recommended_from_result(structured, limit=5)
    assert products == [good, {**good, "id": 4}]  # unknown fields never reach a browser
    assert recommended_from_result({"result": [good] * 9}, limit=5) == [good] * 5
    assert isinstance(products[0]["cost"], float)  # a JSON number, as the reference
    for broken in (None, [], {"result": "x"}, {"other": []}):
        with pytest.raises(ValueError):
            recommended_from_result(broken, limit=5)


def test_the_api_key_is_read_from_either_header() -> None:
    assert presented_key({b"x-api-key": b" k1 "}) == b"k1"
    assert presented_key({b"authorization": b"Bearer k2"}) == b"k2"
    assert presented_key({b"authorization": b"bearer  k3 "}) == b"k3"
    assert presented_key({b"authorization": b"Basic abc"}) is None
    assert presented_key({b"authorization": b"Bearer "}) is None
    assert presented_key({}) is None


def test_the_reader_may_select_orders_and_products_and_nothing_else() -> None:
    reader = DatabaseCredentials("echobase_mcp", "pw", "127.0.0.1", 3306, "orders_db")
    sql = [statement for statement, _ in read_only_statements(reader)]
    grants = [s for s in sql if s.startswith("GRANT")]
    assert grants and all(s.startswith("GRANT SELECT ON `orders_db`.") for s in grants)
    assert {s.split(".")[1].split()[0] for s in grants} == {"`orders`", "`products`"}
    assert all("MAX_USER_CONNECTIONS" in s for s in sql if s.startswith("ALTER USER"))
    # The password goes as a parameter, never into the statement's text.
    assert not any("pw" in s for s in sql)


def test_the_lb_routes_only_the_mcp_path_to_the_service(tmp_path: Path) -> None:
    plan = DurablePlan(Stack(tmp_path, resolve_ports(100)), "ci")
    config = render_config(plan.load_balancer)
    assert "upstream echobase_mcp {\n        server 127.0.0.1:3410" in config
    route = config[config.index("location = /mcp {") :]
    route = route[: route.index("}")]
    assert "proxy_pass http://echobase_mcp;" in route
    assert "Authorization" not in route  # the key reaches the service, which checks it
    without = render_config(
        plan.load_balancer.__class__(**{**plan.load_balancer.__dict__, "mcp_port": None})
    )
    assert "echobase_mcp" not in without


def test_describe_names_the_innermost_cause() -> None:
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [ConnectionError("refused")])])
    assert describe(group) == "ConnectionError: refused"
    assert describe(TimeoutError()) == "TimeoutError"


def test_an_event_stream_answer_is_read_up_to_the_message_for_the_call() -> None:
    """A stateful MCP server may answer a POST with events: a notification first, then the
    answer, whose data may span lines; the gateway's session takes the answer's message."""
    answer = {"jsonrpc": "2.0", "id": 7, "result": {"structuredContent": {"result": []}}}
    text = json.dumps(answer, indent=1)
    events = (
        'event: message\ndata: {"jsonrpc": "2.0", "method": "notifications/progress"}\n\n'
        + "".join(f"data: {line}\n" for line in text.splitlines())
        + "\n"
    )

    async def stream() -> AsyncIterator[bytes]:
        for line in events.splitlines(keepends=True):
            yield line.encode()

    assert asyncio.run(answer_in_stream(stream(), 7)) == answer
    assert asyncio.run(answer_in_stream(stream(), 8)) is None
