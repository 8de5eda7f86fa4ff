"""GET /api/v1/products, POST /api/v1/orders (validation, server-side pricing, the SQS
message it sends) and GET /api/v1/orders (the caller's orders, newest first)."""

from __future__ import annotations

import json
import re
import time
import uuid
from decimal import Decimal

import pytest

PRODUCTS = "/api/v1/products"
ORDERS = "/api/v1/orders"
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def gw(gateway_factory):
    client = gateway_factory("gw-orders")
    client.wait_catalog(client.new_user().token)
    return client


@pytest.fixture
def user(gw):
    return gw.new_user()


def drain(sqs, queue_url: str, at_least: int = 0) -> list[dict]:
    """Receive and delete every visible message (waiting up to 5 s for ``at_least``)."""
    messages: list[dict] = []
    deadline = time.monotonic() + 5
    while True:
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,  # the emulator answers with every visible message
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        for m in got:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        messages.extend(got)
        if not got:
            if len(messages) >= at_least or time.monotonic() > deadline:
                return messages
            time.sleep(0.1)


# --- products ---------------------------------------------------------------------------------


def test_products_listed_sorted_by_name_with_string_costs(backing, gw, user):
    r = gw.get(PRODUCTS, user.token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"success", "products", "pagination"}
    assert body["success"] is True
    assert body["pagination"] == {"limit": 50, "offset": 0}
    products = body["products"]
    rows = backing.query("SELECT id, name, cost, sku FROM products")
    expected = sorted(
        ({"id": i, "name": n, "cost": f"{Decimal(c):.2f}", "sku": s} for i, n, c, s in rows),
        key=lambda p: (p["name"].casefold(), p["id"]),
    )[:50]
    assert products == expected
    names = [p["name"] for p in products]
    assert names == sorted(names, key=str.casefold)
    quantum = next(p for p in products if p["id"] == 1)
    assert quantum == {"id": 1, "name": "Quantum Stabilizer", "cost": "249.99", "sku": "QS-001"}
    for p in products:
        assert set(p) == {"id", "name", "cost", "sku"}
        assert isinstance(p["cost"], str) and re.match(r"^\d+\.\d{2}$", p["cost"])


@pytest.mark.parametrize(
    "query,limit,offset",
    [
        ("?limit=3", 3, 0),
        ("?limit=0", 1, 0),
        ("?limit=-5", 1, 0),
        ("?limit=1", 1, 0),
        ("?limit=200", 200, 0),
        ("?limit=201", 200, 0),
        ("?limit=100000", 200, 0),
        ("?limit=2&offset=3", 2, 3),
        ("?offset=-4", 50, 0),
        ("?offset=1000", 50, 1000),
    ],
)
def test_products_pagination_is_clamped(gw, user, query, limit, offset):
    everything = gw.get(PRODUCTS, user.token).json()["products"]
    r = gw.get(PRODUCTS + query, user.token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pagination"] == {"limit": limit, "offset": offset}
    assert body["products"] == everything[offset : offset + limit]


def test_products_bad_query_values_are_400_without_echo(gw, user):
    r = gw.get(PRODUCTS + "?limit=abcZQX", user.token)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "Validation failed"
    assert "abcZQX" not in r.text


def test_products_need_auth(gw):
    r = gw.get(PRODUCTS)
    assert r.status_code == 401


# --- order intake -----------------------------------------------------------------------------


def test_order_is_priced_by_server_and_queued_once(backing, gw, user):
    sqs = backing.stack.client("sqs")
    queue = gw.queues.queue_url
    drain(sqs, queue)
    correlation_id = f"test-{uuid.uuid4()}"
    r = gw.post(
        ORDERS,
        {"productId": 1, "quantity": 2, "totalPrice": "0.01", "userId": 999999},
        user.token,
        headers={"X-Correlation-ID": correlation_id},
    )
    assert r.status_code == 201, r.text
    assert r.headers["x-correlation-id"] == correlation_id
    body = r.json()
    assert set(body) == {"success", "message", "messageId", "order"}
    assert body["success"] is True
    assert body["message"] == "Order submitted successfully"
    assert isinstance(body["messageId"], str) and body["messageId"]
    order = body["order"]
    assert set(order) == {
        "orderId",
        "productId",
        "productName",
        "sku",
        "quantity",
        "totalPrice",
        "timestamp",
    }
    assert UUID.match(order["orderId"])
    assert order["productId"] == 1
    assert order["productName"] == "Quantum Stabilizer"
    assert order["sku"] == "QS-001"
    assert order["quantity"] == 2
    assert order["totalPrice"] == "499.98"
    assert ISO_Z.match(order["timestamp"])
    # Authenticated: a fresh cookie comes back.
    assert gw.token_of(r)

    messages = drain(sqs, queue, at_least=1)
    assert len(messages) == 1, messages
    message = messages[0]
    assert message["MessageId"] == body["messageId"]
    sent = json.loads(message["Body"])
    assert sent == {
        "orderId": order["orderId"],
        "userId": user.id,
        "productId": 1,
        "productName": "Quantum Stabilizer",
        "sku": "QS-001",
        "quantity": 2,
        "totalPrice": "499.98",
        "correlationId": correlation_id,
        "timestamp": order["timestamp"],
    }
    attribute = message["MessageAttributes"]["CorrelationId"]
    assert attribute["DataType"] == "String"
    assert attribute["StringValue"] == correlation_id == r.headers["x-correlation-id"]

    # The gateway writes nothing for an order: the processor does.
    assert backing.query("SELECT COUNT(*) FROM orders WHERE order_uid = %s", order["orderId"]) == [
        (0,)
    ]
    assert backing.query("SELECT COUNT(*) FROM orders WHERE user_id = %s", user.id) == [(0,)]


def test_order_generated_correlation_id_reaches_the_queue(backing, gw, user):
    sqs = backing.stack.client("sqs")
    drain(sqs, gw.queues.queue_url)
    r = gw.post(ORDERS, {"productId": 10, "quantity": 3}, user.token)
    assert r.status_code == 201, r.text
    assert r.json()["order"]["totalPrice"] == "89.97"
    (message,) = drain(sqs, gw.queues.queue_url, at_least=1)
    generated = r.headers["x-correlation-id"]
    assert json.loads(message["Body"])["correlationId"] == generated
    assert message["MessageAttributes"]["CorrelationId"]["StringValue"] == generated


def test_order_with_bearer_token(gw, user):
    r = gw.post(
        ORDERS,
        {"productId": 7, "quantity": 1},
        headers={"Authorization": f"Bearer {user.token}"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["order"]["totalPrice"] == "49.99"


def test_order_ids_are_unique(gw, user):
    ids = {
        gw.post(ORDERS, {"productId": 2, "quantity": 1}, user.token).json()["order"]["orderId"]
        for _ in range(5)
    }
    assert len(ids) == 5


@pytest.mark.parametrize(
    "field,value",
    [
        ("quantity", 2.5),
        ("quantity", "invalid"),
        ("quantity", 0),
        ("quantity", -1),
        ("quantity", 10001),
        ("quantity", True),
        ("quantity", False),
        ("quantity", None),
        ("quantity", [1]),
        ("productId", 0),
        ("productId", -1),
        ("productId", 1.5),
        ("productId", True),
        ("productId", None),
        ("productId", 2**63),
        ("productId", {"id": 1}),
    ],
)
def test_invalid_order_fields_are_400(gw, user, field, value):
    body = {"productId": 1, "quantity": 1, field: value}
    r = gw.post(ORDERS, body, user.token)
    assert r.status_code == 400, r.text
    data = r.json()
    assert data["error"] == "Validation failed"
    assert data["details"] == [
        {"type": "field", "path": field, "msg": data["details"][0]["msg"], "location": "body"}
    ]
    assert isinstance(data["details"][0]["msg"], str)


def test_missing_and_multiple_invalid_order_fields_all_listed(gw, user):
    r = gw.post(ORDERS, {}, user.token)
    assert r.status_code == 400
    assert {d["path"] for d in r.json()["details"]} == {"productId", "quantity"}
    r = gw.post(ORDERS, {"productId": "oneZQX", "quantity": "manyZQX"}, user.token)
    assert r.status_code == 400
    assert {d["path"] for d in r.json()["details"]} == {"productId", "quantity"}
    assert "ZQX" not in r.text


def test_quantity_boundaries_accepted(gw, user):
    for quantity, total in ((1, "29.99"), (10000, "299900.00")):
        r = gw.post(ORDERS, {"productId": 10, "quantity": quantity}, user.token)
        assert r.status_code == 201, r.text
        assert r.json()["order"]["totalPrice"] == total


def test_unknown_product_is_400_invalid_product(backing, gw, user):
    drain(backing.stack.client("sqs"), gw.queues.queue_url)
    r = gw.post(ORDERS, {"productId": 999999, "quantity": 1}, user.token)
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "Invalid product", "message": "Product with ID 999999 not found"}
    assert drain(backing.stack.client("sqs"), gw.queues.queue_url) == []


def test_order_total_over_one_million_is_400(backing, gw, user):
    sqs = backing.stack.client("sqs")
    drain(sqs, gw.queues.queue_url)
    r = gw.post(ORDERS, {"productId": 8, "quantity": 1001}, user.token)  # 1,000,989.99
    assert r.status_code == 400, r.text
    assert r.json()["error"] != "Validation failed"
    assert set(r.json()) == {"error", "message"}
    assert drain(sqs, gw.queues.queue_url) == []
    ok = gw.post(ORDERS, {"productId": 8, "quantity": 1000}, user.token)  # 999,990.00
    assert ok.status_code == 201, ok.text
    assert ok.json()["order"]["totalPrice"] == "999990.00"


def test_order_body_must_be_a_json_object(gw, user):
    for payload in (b"[1, 2]", b'"text"', b"42", b"null"):
        r = gw.http.post(
            ORDERS,
            content=payload,
            headers={
                "Origin": gw.origin,
                "Content-Type": "application/json",
                "Cookie": f"echobase_token={user.token}",
            },
        )
        assert r.status_code == 400, (payload, r.text)


# --- order history ----------------------------------------------------------------------------


def _insert_order(backing, user_id: int, created_at: str, **cols) -> str:
    uid = str(uuid.uuid4())
    values = {
        "product_id": 10,
        "product_name": "Mouse",
        "sku": "MS-505",
        "quantity": 2,
        "total_price": "59.98",
        "order_status": "pending",
        **cols,
    }
    backing.query(
        "INSERT INTO orders (order_uid, user_id, product_id, product_name, sku, quantity, "
        "total_price, order_status, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        uid,
        user_id,
        values["product_id"],
        values["product_name"],
        values["sku"],
        values["quantity"],
        values["total_price"],
        values["order_status"],
        created_at,
    )
    return uid


def test_order_history_is_the_callers_newest_first(backing, gw):
    alice, bob = gw.new_user(), gw.new_user()
    _insert_order(backing, alice.id, "2025-01-02 03:04:05.678")
    _insert_order(
        backing,
        alice.id,
        "2025-03-04 05:06:07.001",
        product_id=8,
        product_name="Laptop",
        sku="LT-303",
        quantity=1,
        total_price="999.99",
        order_status="completed",
    )
    _insert_order(backing, alice.id, "2025-03-04 05:06:07.000", total_price="1234.50")
    _insert_order(backing, bob.id, "2025-06-01 00:00:00.000", product_name="Bob's")

    r = gw.get(ORDERS, alice.token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"success", "orders", "count"}
    assert body["success"] is True
    assert body["count"] == 3
    orders = body["orders"]
    assert [o["createdAt"] for o in orders] == [
        "2025-03-04T05:06:07.001Z",
        "2025-03-04T05:06:07.000Z",
        "2025-01-02T03:04:05.678Z",
    ]
    for o in orders:
        assert set(o) == {
            "id",
            "productName",
            "sku",
            "quantity",
            "totalPrice",
            "status",
            "createdAt",
        }
        assert isinstance(o["id"], int)
        assert ISO_Z.match(o["createdAt"])
    assert orders[0] | {"id": 0} == {
        "id": 0,
        "productName": "Laptop",
        "sku": "LT-303",
        "quantity": 1,
        "totalPrice": "999.99",
        "status": "completed",
        "createdAt": "2025-03-04T05:06:07.001Z",
    }
    assert orders[1]["totalPrice"] == "1234.50"
    assert orders[2] | {"id": 0} == {
        "id": 0,
        "productName": "Mouse",
        "sku": "MS-505",
        "quantity": 2,
        "totalPrice": "59.98",
        "status": "pending",
        "createdAt": "2025-01-02T03:04:05.678Z",
    }
    assert "Bob's" not in r.text
    ids = {row[0] for row in backing.query("SELECT id FROM orders WHERE user_id = %s", alice.id)}
    assert {o["id"] for o in orders} == ids

    bobs = gw.get(ORDERS, bob.token).json()
    assert bobs["count"] == 1 and bobs["orders"][0]["productName"] == "Bob's"


def test_order_history_empty_for_new_user(gw, user):
    r = gw.get(ORDERS, user.token)
    assert r.status_code == 200
    assert r.json() == {"success": True, "orders": [], "count": 0}
    assert gw.token_of(r)


def test_order_history_needs_auth(gw):
    r = gw.get(ORDERS)
    assert r.status_code == 401
    assert r.json() == {
        "error": "Authentication required",
        "message": "Missing or invalid authentication",
    }
