"""One order followed through a whole running system: the trace the gateway begins travels
in the SQS message to the processor and its insert, `echobase trace` finds it from the
answer's X-Correlation-ID, `echobase logs --trace` shows both services' lines for it; a
poison message's trace shows its failed attempts and its move to the DLQ."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bluegreen_support import BlueGreenSystem, deployed, lb_client
from echobase.app.queues import ORDER_QUEUE
from tests_support import sign_up, wait_until

pytestmark = pytest.mark.timeout(600)

TRACE_ID = re.compile(r"[0-9a-f]{32}")
SERVER = "POST /api/v1/orders"
SEND, PROCESS, DELETE = (f"{step} {ORDER_QUEUE}" for step in ("send", "process", "delete"))
INSERT = "INSERT orders"


@pytest.fixture(scope="module")
def bg() -> Iterator[BlueGreenSystem]:
    with deployed() as system:
        yield system


@pytest.fixture(scope="module")
def shopper(bg: BlueGreenSystem) -> Iterator[httpx.Client]:
    lb_url = bg.system.plan("devlocal").lb_url
    with lb_client(bg, timeout=15, headers={"Origin": lb_url}) as client:
        sign_up(client, f"t_{uuid.uuid4().hex[:10]}", "Trace Reader")
        yield client


def stored_trace(bg: BlueGreenSystem, trace_id: str, wanted: set[str]) -> dict[str, Any]:
    """`echobase trace ID --json`, once it holds spans named ``wanted`` (spans reach the
    store within a second or two of their end)."""
    found: dict[str, Any] = {}

    def complete() -> bool:
        result = bg.system.cli("trace", trace_id, "--json")
        if result.returncode != 0:
            return False
        found.update(json.loads(result.stdout))
        return wanted <= {span["name"] for span in found["spans"]}

    wait_until(complete, 30, f"spans {sorted(wanted)} of trace {trace_id}")
    return found


def order(client: httpx.Client, **headers: str) -> httpx.Response:
    answer = client.post("/api/v1/orders", json={"productId": 1, "quantity": 2}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer


def test_one_order_is_one_trace_from_the_lb_to_its_row(
    bg: BlueGreenSystem, shopper: httpx.Client
) -> None:
    answer = order(shopper)
    trace_id = answer.headers["x-correlation-id"]
    assert TRACE_ID.fullmatch(trace_id), trace_id
    order_id = answer.json()["order"]["orderId"]
    found = stored_trace(bg, trace_id, {SERVER, SEND, PROCESS, INSERT, DELETE})
    spans = {span["name"]: span for span in found["spans"]}
    assert found["traceId"] == trace_id
    by_id = {span["spanId"]: span for span in found["spans"]}

    def parent(name: str) -> dict[str, Any]:
        return by_id[spans[name]["parentSpanId"]]

    # gateway server span -> send (producer) -> process (consumer) -> insert, delete
    server = spans[SERVER]
    assert server["service"] == "api-gateway" and server["kind"] == "server"
    assert server["attributes"]["http.response.status_code"] == 201
    assert server["attributes"]["echobase.order_id"] == order_id
    assert parent(SEND) is server
    assert spans[SEND]["kind"] == "producer"
    assert parent(PROCESS) is spans[SEND]
    process = spans[PROCESS]
    assert process["service"] == "order-processor" and process["kind"] == "consumer"
    assert process["attributes"]["echobase.order_id"] == order_id
    assert process["attributes"]["messaging.message.id"] == answer.json()["messageId"]
    assert parent(INSERT) is process
    assert spans[INSERT]["attributes"]["db.system.name"] == "mariadb"
    assert parent(DELETE) is process
    # Every span says which colour and release served it.
    live = bg.system.ok("status", "--json")
    release = next(c["release"] for c in json.loads(live.stdout)["colours"] if c["live"])
    for span in found["spans"]:
        assert (span["colour"], span["release"]) == ("green", release), span
    # Found by the order id too, and shown as a tree to people.
    assert bg.system.ok("trace", order_id, "--json").stdout.count(trace_id) >= 1
    tree = bg.system.ok("trace", trace_id).stdout
    for name in (SERVER, SEND, PROCESS, INSERT):
        assert name in tree, tree

    # Both services' log lines for this request, and only for it.
    def both_logged() -> bool:
        result = bg.system.ok("logs", "--trace", trace_id, "--json")
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        events = {(line.get("service"), line.get("event")) for line in lines}
        assert all(line["trace_id"] == trace_id for line in lines), lines
        return {("api-gateway", "order accepted"), ("order-processor", "order stored")} <= events

    wait_until(both_logged, 15, "the gateway's and the processor's lines of the trace")


def test_a_clients_own_correlation_id_finds_its_trace(
    bg: BlueGreenSystem, shopper: httpx.Client
) -> None:
    mine = f"support-ticket-{uuid.uuid4()}"
    answer = order(shopper, **{"X-Correlation-ID": mine})
    assert answer.headers["x-correlation-id"] == mine  # the reference contract keeps it
    found = stored_trace(bg, mine, {SERVER, INSERT})
    server = next(s for s in found["spans"] if s["name"] == SERVER)
    assert server["attributes"]["echobase.correlation_id"] == mine
    assert TRACE_ID.fullmatch(found["traceId"])
