"""One order followed through a whole running system: the trace the gateway begins travels
in the SQS message to the processor and its insert, `echobase trace` finds it from the
answer's X-Correlation-ID, `echobase logs --trace` shows both services' lines for it; a
poison message's trace shows its failed attempts and its move to the DLQ."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import boto3
import httpx
import pytest

from bluegreen_support import BlueGreenSystem, deployed, lb_client
from echobase.app.messages import build_order_message
from echobase.app.queues import DEAD_LETTER_QUEUE, ORDER_QUEUE, QueueUrls
from echobase.platform.bluegreen.pipeline import BlueGreen
from tests_support import sign_up, wait_until

pytestmark = pytest.mark.timeout(600)

TRACE_ID = re.compile(r"[0-9a-f]{32}")
SERVER = "POST /api/v1/orders"
SEND, PROCESS = (f"{step} {ORDER_QUEUE}" for step in ("send", "process"))
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


def stored_trace(
    bg: BlueGreenSystem, trace_id: str, wanted: set[str], timeout: float = 30
) -> dict[str, Any]:
    """`echobase trace ID --json`, once it holds spans named ``wanted`` (spans reach the
    store within a second or two of their end)."""
    found: dict[str, Any] = {}

    def complete() -> bool:
        result = bg.system.cli("trace", trace_id, "--json")
        if result.returncode != 0:
            return False
        found.update(json.loads(result.stdout))
        return wanted <= {span["name"] for span in found["spans"]}

    try:
        wait_until(complete, timeout, f"spans {sorted(wanted)} of trace {trace_id}")
    except AssertionError as exc:
        names = sorted(span["name"] for span in found.get("spans", ()))
        raise AssertionError(f"{exc}; stored: {names}") from None
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
    found = stored_trace(bg, trace_id, {SERVER, SEND, PROCESS, INSERT})
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
    # Processing begins after the message was sent (not when a long poll began waiting).
    assert datetime.fromisoformat(process["start"]) >= datetime.fromisoformat(spans[SEND]["start"])
    # The receive began it, and it ended with the message deleted, after the insert.
    events = [event["name"] for event in process["events"]]
    assert events == ["received", "deleted"], process["events"]
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


LOGIN = "POST /api/v1/auth/login"
MCP_SEND = "MCP send tools/call getRecommendedProducts"  # the gateway's client span
MCP_SERVE = "tools/call getRecommendedProducts"  # the MCP service's server span


def test_a_sign_ins_trace_reaches_the_recommendations_service(bg: BlueGreenSystem) -> None:
    """The gateway asks the durable MCP service for recommendations in the login's trace:
    its client span, and the service's own span continued from the call's ``_meta``; the
    gateway's SQL statements are spans of it too (never with their parameters)."""
    lb_url = bg.system.plan("devlocal").lb_url
    username = f"m_{uuid.uuid4().hex[:10]}"
    with lb_client(bg, timeout=15, headers={"Origin": lb_url}) as client:
        sign_up(client, username, "Trace Reader")
        found: dict[str, Any] = {}
        # A login asks the service only once the gateway's session to it is open.
        for _attempt in range(3):
            answer = client.post(
                "/api/v1/auth/login", json={"username": username, "password": "Passw0rdX"}
            )
            assert answer.status_code == 200, answer.text
            try:
                found = stored_trace(bg, answer.headers["x-correlation-id"], {LOGIN, MCP_SERVE})
                break
            except AssertionError:
                continue
    assert found, "no login's trace reached the MCP service"
    spans = {span["name"]: span for span in found["spans"]}
    by_id = {span["spanId"]: span for span in found["spans"]}
    send, serve = spans[MCP_SEND], spans[MCP_SERVE]
    assert by_id[send["parentSpanId"]] is spans[LOGIN] and send["kind"] == "client"
    assert send["service"] == "api-gateway" and send["attributes"]["mcp.method.name"] == (
        "tools/call"
    )
    assert by_id[serve["parentSpanId"]] is send
    assert serve["service"] == "mcp" and serve["kind"] == "server"
    # The gateway's own statements (the user's row) are spans of the login too.
    statements = [
        span
        for span in found["spans"]
        if span["service"] == "api-gateway"
        and span["attributes"].get("db.system.name") == "mariadb"
    ]
    assert statements, sorted((s["service"], s["name"]) for s in found["spans"])
    assert all(by_id[s["parentSpanId"]] is spans[LOGIN] for s in statements), statements
    assert all("Passw0rdX" not in json.dumps(s) for s in found["spans"])


def colour_queues(bg: BlueGreenSystem) -> tuple[Any, QueueUrls]:
    """An SQS client of the live colour's queue server, and its queues."""
    bluegreen = BlueGreen(bg.system.stack, "devlocal")
    plan = bluegreen.running_plan(bluegreen.live_or_fail())
    assert plan is not None
    sqs = boto3.client(
        "sqs",
        endpoint_url=plan.sqs_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    return sqs, plan.queues


def test_a_poison_messages_trace_shows_each_failed_attempt_and_the_move_to_the_dlq(
    bg: BlueGreenSystem,
) -> None:
    # An order in the right shape for a user who does not exist: the foreign key refuses it
    # on every delivery. Sent with a trace context of its own (a caller outside echobase);
    # short visibility, so that its three deliveries come within seconds.
    sqs, queues = colour_queues(bg)
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    body = build_order_message(
        user_id=2_000_000_000,
        product_id=1,
        product_name="Orphan",
        sku="OR-1",
        quantity=1,
        total_price=Decimal("1.00"),
        correlation_id="poison",
    )
    original = sqs.get_queue_attributes(
        QueueUrl=queues.queue_url, AttributeNames=["VisibilityTimeout"]
    )["Attributes"]
    sqs.set_queue_attributes(QueueUrl=queues.queue_url, Attributes={"VisibilityTimeout": "2"})
    try:
        traceparent = {"DataType": "String", "StringValue": f"00-{trace_id}-{parent}-01"}
        # Delayed past the processor's long polls (2 s here) already waiting: a receive
        # takes the queue's visibility timeout as it was when the receive began.
        sqs.send_message(
            QueueUrl=queues.queue_url,
            MessageBody=json.dumps(body),
            MessageAttributes={"traceparent": traceparent},
            DelaySeconds=5,
        )
        found = stored_trace(bg, trace_id, {f"send {DEAD_LETTER_QUEUE}"}, timeout=40)
    finally:
        sqs.set_queue_attributes(QueueUrl=queues.queue_url, Attributes=original)
    processes = sorted(
        (s for s in found["spans"] if s["name"] == PROCESS),
        key=lambda s: s["attributes"]["echobase.receive_count"],
    )
    # Three deliveries, each in the caller's trace (its span is not stored here).
    assert [s["attributes"]["echobase.receive_count"] for s in processes] == [1, 2, 3]
    assert all(s["parentSpanId"] == parent for s in processes)
    assert all(s["attributes"]["echobase.order_id"] == body["orderId"] for s in processes)
    assert all(s["status"] == "error" for s in processes)
    children = {
        s["spanId"]: [
            c["name"]
            for c in sorted(found["spans"], key=lambda c: c["start"])
            if c["parentSpanId"] == s["spanId"]
        ]
        for s in processes
    }
    # Each delivery: the batch's statement fails, then the order's own, row by row.
    inserts = [c for c in found["spans"] if c["name"] == INSERT]
    assert len(inserts) == 6 and all(c["status"] == "error" for c in inserts)
    assert all(c["attributes"]["error.type"] == "IntegrityError" for c in inserts)
    first, second, last = (children[s["spanId"]] for s in processes)
    assert first == second == [INSERT, INSERT]
    assert last == [INSERT, INSERT, f"send {DEAD_LETTER_QUEUE}"]
    assert not any(e["name"] == "deleted" for s in processes for e in s["events"])
    # The last delivery is moved to the DLQ by the processor, with the reason.
    (move,) = (s for s in found["spans"] if s["name"] == f"send {DEAD_LETTER_QUEUE}")
    assert move["parentSpanId"] == processes[-1]["spanId"]
    assert move["attributes"]["echobase.failure_reason"] == "not stored: IntegrityError"
    assert processes[-1]["statusMessage"] == "not stored: IntegrityError"
    dead = sqs.receive_message(
        QueueUrl=queues.dlq_url, MessageAttributeNames=["All"], WaitTimeSeconds=2
    )["Messages"]
    assert [json.loads(m["Body"])["orderId"] for m in dead] == [body["orderId"]]
    sqs.delete_message(QueueUrl=queues.dlq_url, ReceiptHandle=dead[0]["ReceiptHandle"])
