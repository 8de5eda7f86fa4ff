"""Order intake keeps working while the shared database is down (ADR-010's promise)."""

from __future__ import annotations

import json
import uuid

import httpx

from tests_support import LEAKS, ORIGIN_HEADERS, register


def test_orders_accepted_while_database_down_and_nothing_leaks(backing):
    queues = backing.new_queues()
    url = backing.start_gateway("gw-outage", queues, ECHOBASE_HEALTH_CACHE_SECONDS="0")
    try:
        token = register(url)
        auth = {**ORIGIN_HEADERS, "Authorization": f"Bearer {token}"}
        backing.stack.stop_database()
        try:
            accepted = []
            for _ in range(5):
                r = httpx.post(
                    url + "/api/v1/orders",
                    json={"productId": 3, "quantity": 1},
                    headers=auth,
                    timeout=10,
                )
                assert r.status_code == 201, r.text
                accepted.append(r.json()["order"]["orderId"])
            health = httpx.get(url + "/health", timeout=10)
            assert health.status_code == 503
            assert health.json()["status"] == "degraded"
            assert health.json()["checks"]["database"]["status"] == "unhealthy"
            assert health.json()["checks"]["sqs"]["status"] == "healthy"
            listing = httpx.get(url + "/api/v1/orders", headers=auth, timeout=10)
            name = f"u_{uuid.uuid4().hex[:8]}"
            signup = httpx.post(
                url + "/api/v1/auth/register",
                headers=ORIGIN_HEADERS,
                timeout=10,
                json={
                    "username": name,
                    "email": f"{name}@example.com",
                    "fullName": "N",
                    "password": "Passw0rdX",
                },
            )
            for response in (listing, signup):
                assert response.status_code == 503
                assert response.json()["error"] == "Service Unavailable"
                for leak in (*LEAKS, "2003"):
                    assert leak not in response.text
        finally:
            backing.stack.run_database()
        sqs = backing.stack.client("sqs")
        queued = []
        for _ in range(5):
            got = sqs.receive_message(
                QueueUrl=queues.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            queued += [json.loads(m["Body"])["orderId"] for m in got]
            if len(queued) >= 5:
                break
        assert sorted(queued) == sorted(accepted)
    finally:
        backing.stack.stop("gw-outage")
