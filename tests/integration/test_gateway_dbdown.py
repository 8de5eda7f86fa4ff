"""A gateway whose database cannot be reached (its credentials secret names a closed port):
/health is 503 "degraded", every database-backed route answers a clean 503 without internals,
and the rate limit fails open to a local count."""

from __future__ import annotations

import json
import socket
import time
import uuid

import jwt
import pytest

from tests_support import LEAKS


@pytest.fixture(scope="module")
def closed_port():
    """A port held bound but never listening: connections to it are refused, and no other
    process of the session can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def gw(backing, gateway_factory, closed_port):
    port = closed_port
    name = f"echobase/test/db-down-{uuid.uuid4().hex[:8]}"
    backing.stack.client("secretsmanager").create_secret(
        Name=name,
        SecretString=json.dumps(
            {
                "username": "echobase_app",
                "password": "not-the-password",
                "host": "127.0.0.1",
                "port": port,
                "dbname": "orders_db",
            }
        ),
    )
    client = gateway_factory("gw-dbdown", ECHOBASE_DB_SECRET_NAME=name)
    client.closed_port = str(port)
    return client


@pytest.fixture(scope="module")
def token(backing):
    now = int(time.time())
    claims = {"userId": 1, "username": "someone", "fullName": "S", "iat": now, "exp": now + 900}
    return jwt.encode(claims, backing.jwt_key, algorithm="HS256")


def assert_clean_503(gw, r) -> None:
    assert r.status_code == 503, r.text
    body = r.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "Service Unavailable"
    assert int(r.headers["retry-after"]) > 0
    for word in (*LEAKS, gw.closed_port):
        assert word not in r.text, word
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers.get("x-correlation-id")


def test_health_is_degraded_when_database_is_down(gw):
    r = gw.get("/health")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["status"] == "unhealthy"
    assert body["checks"]["sqs"]["status"] == "healthy"
    for word in (*LEAKS, gw.closed_port):
        assert word not in r.text, word


def test_database_routes_answer_clean_503(gw, token):
    answers = [
        gw.register()[0],
        gw.post("/api/v1/auth/login", {"username": "someone", "password": "Passw0rdOk"}),
        gw.get("/api/v1/products", token),
        gw.get("/api/v1/orders", token),
        gw.post("/api/v1/orders", {"productId": 1, "quantity": 1}, token),
    ]
    for r in answers:
        assert_clean_503(gw, r)


def test_rate_limit_fails_open_to_a_local_count(gw):
    first = gw.get("/api/v1/products")
    second = gw.get("/api/v1/products")
    for r in (first, second):
        assert r.status_code == 401
        assert r.headers["ratelimit-limit"] == "1000000"
    assert int(second.headers["ratelimit-remaining"]) < int(first.headers["ratelimit-remaining"])


def test_stateless_routes_still_work(gw, token):
    assert gw.post("/api/v1/auth/logout").status_code == 200
    r = gw.get("/api/v1/products", "forged")
    assert r.status_code == 401
    assert gw.get("/openapi.json").status_code == 200
