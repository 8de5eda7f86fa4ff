from __future__ import annotations

import json
import uuid

import pytest

from echobase.app.messages import InvalidMessageError, parse_order

GOOD = {
    "orderId": str(uuid.uuid4()),
    "userId": 1,
    "productId": 11,
    "productName": "Webcam",
    "sku": "WC-606",
    "quantity": 2,
    "totalPrice": "119.98",
    "correlationId": "c-1",
    "timestamp": "2026-11-29T12:00:00.123Z",
}


def test_good_message_becomes_a_completed_row() -> None:
    row = parse_order(json.dumps(GOOD)).row()
    assert row["order_status"] == "completed"
    assert row["order_uid"] == GOOD["orderId"]
    assert str(row["total_price"]) == "119.98"
    assert row["created_at"].isoformat() == "2026-11-29T12:00:00.123000"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": 10_001}, "quantity"),
        ({"quantity": 2.5}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"userId": "1"}, "userId"),
        ({"orderId": "not-a-uuid"}, "orderId"),
        ({"totalPrice": "-1"}, "totalPrice"),
        ({"totalPrice": "1.234"}, "totalPrice"),
        ({"timestamp": "2026-11-29T12:00:00"}, "timestamp"),
        ({"sku": "x" * 51}, "sku"),
    ],
)
def test_invalid_fields_are_named_not_echoed(change: dict, field: str) -> None:
    with pytest.raises(InvalidMessageError) as info:
        parse_order(json.dumps({**GOOD, **change}))
    assert field in str(info.value)
    assert "10001" not in str(info.value) and "not-a-uuid" not in str(info.value)


def test_not_json() -> None:
    with pytest.raises(InvalidMessageError, match="not JSON"):
        parse_order("{oops")
