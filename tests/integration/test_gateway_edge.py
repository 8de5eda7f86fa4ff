"""The gateway's edge: CSRF origin check, CORS, security headers and correlation ids on every
answer, the 1 MiB body limit (with and without Content-Length), malformed JSON, and error
bodies that never leak internals."""

from __future__ import annotations

import re
import socket
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from tests_support import LEAKS

LOGOUT = "/api/v1/auth/logout"
REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
FORBIDDEN = {"error": "Forbidden", "message": "Origin validation failed"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def gw(gateway_factory):
    return gateway_factory("gw-edge")


def raw_post(gw, path: str, headers: dict[str, str], body: bytes = b"") -> httpx.Response:
    """POST with exactly these headers (httpx adds Host, Content-Length, Accept...)."""
    return gw.http.post(path, content=body, headers=headers)


def assert_edge_headers(r: httpx.Response) -> None:
    h = r.headers
    assert h.get("x-content-type-options") == "nosniff", dict(h)
    assert h.get("x-frame-options") in ("DENY", "SAMEORIGIN"), dict(h)
    assert h.get("referrer-policy"), dict(h)
    assert h.get("strict-transport-security", "").startswith("max-age="), dict(h)
    assert h.get("content-security-policy"), dict(h)
    assert h.get("x-correlation-id"), dict(h)
    assert "server" not in h, dict(h)


# --- CSRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.test"},
        {"Origin": "null"},
        {"Origin": "https://echobase.test, https://evil.test"},
        {"Origin": "https://evil.test,https://echobase.test"},
        {"Origin": "http://echobase.test"},
        {"Origin": "https://echobase.test:8443"},
        {"Origin": "https://echobase.test.evil.test"},
        {"Origin": "https://evil.test/https://echobase.test"},
        {"Origin": "https://user@echobase.test"},
        {"Origin": ""},
        {"Origin": "echobase.test"},
        {"Referer": "https://evil.test/page"},
        {"Referer": "https://echobase.test.evil.test/"},
        {"Referer": "null"},
        {"Referer": "https://echobase.test/a,https://evil.test/"},
        {"Referer": "https://["},  # unparsable: refused, not a 500
        {"Referer": "http://[::1"},
        {"Referer": "https://echobase.test:99999/"},
        {"Origin": "https://["},
        {"Origin": "https://evil.test", "Referer": "https://echobase.test/"},
    ],
    ids=lambda h: repr(h),
)
def test_post_from_foreign_origin_is_403(gw, headers):
    r = raw_post(gw, LOGOUT, headers)
    assert r.status_code == 403, r.text
    assert r.json() == FORBIDDEN
    assert_edge_headers(r)
    assert not gw.set_cookies(r)


def test_csrf_is_checked_before_anything_else(gw):
    user = gw.new_user()
    r = raw_post(
        gw,
        "/api/v1/orders",
        {"Origin": "https://evil.test", "Cookie": f"echobase_token={user.token}"},
        b'{"productId": 1, "quantity": 1}',
    )
    assert r.status_code == 403
    assert r.json() == FORBIDDEN
    r = raw_post(gw, REGISTER, {"Origin": "https://evil.test"}, b"x" * (MIB + 10))
    assert r.status_code in (403, 413)
    r = raw_post(gw, "/api/v1/nowhere", {"Origin": "https://evil.test"})
    assert r.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://echobase.test"},
        {"Origin": "https://echobase.test/"},
        {"Origin": "https://ECHOBASE.TEST"},
        {"Origin": "HTTPS://Echobase.Test/"},
        {"Origin": "https://echobase.test:443"},
        {"Referer": "https://echobase.test/orders?page=2#top"},
        {"Referer": "https://echobase.test"},
        {"Referer": "https://Echobase.TEST:443/login"},
        {},  # no header at all, from loopback: local tools
    ],
    ids=lambda h: repr(h),
)
def test_post_from_allowed_origin_or_loopback_tool_is_accepted(gw, headers):
    r = raw_post(gw, LOGOUT, headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "message": "Logged out"}


def test_safe_methods_are_not_origin_checked(gw):
    r = gw.get("/health", headers={"Origin": "https://evil.test"})
    assert r.status_code == 200
    r = gw.get("/api/v1/products", headers={"Origin": "null"})
    assert r.status_code == 401  # reaches auth, not the CSRF check


# --- CORS -----------------------------------------------------------------------------------


def _preflight(gw, origin: str, method: str = "POST") -> httpx.Response:
    return gw.http.options(
        "/api/v1/orders",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type",
        },
    )


def test_preflight_from_allowed_origin(gw):
    r = _preflight(gw, gw.origin)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == gw.origin
    assert r.headers["access-control-allow-credentials"] == "true"
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST"}
    assert "content-type" in r.headers["access-control-allow-headers"].lower()
    assert_edge_headers(r)


def test_preflight_from_other_origin_gets_no_cors_grant(gw):
    for origin in ("https://evil.test", "null", "https://echobase.test.evil.test"):
        r = _preflight(gw, origin)
        assert "access-control-allow-origin" not in r.headers, (origin, dict(r.headers))
        assert r.headers.get("access-control-allow-origin") != "*"
        assert r.status_code != 200 or "access-control-allow-credentials" not in r.headers


def test_preflight_for_other_methods_refused(gw):
    r = _preflight(gw, gw.origin, method="DELETE")
    assert r.status_code == 400
    methods = {m.strip() for m in r.headers.get("access-control-allow-methods", "").split(",")}
    assert "DELETE" not in methods


def test_simple_request_cors_headers_are_exact(gw):
    r = gw.get("/api/v1/products", headers={"Origin": gw.origin})
    assert r.headers["access-control-allow-origin"] == gw.origin
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "x-correlation-id" in r.headers.get("access-control-expose-headers", "").lower()
    r = gw.get("/api/v1/products", headers={"Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in r.headers
    r = gw.get("/health")
    assert "access-control-allow-origin" not in r.headers


# --- security headers and correlation ids -------------------------------------------------------


def test_security_headers_on_every_kind_of_answer(gw):
    user = gw.new_user()
    answers = {
        "200 health": gw.get("/health"),
        "200 products": gw.get("/api/v1/products", user.token),
        "201 register": gw.register()[0],
        "201 order": gw.post("/api/v1/orders", {"productId": 1, "quantity": 1}, user.token),
        "400 validation": gw.post(REGISTER, {}),
        "400 json": raw_post(gw, REGISTER, {"Origin": gw.origin}, b"{nope"),
        "401": gw.get("/api/v1/orders"),
        "403": raw_post(gw, LOGOUT, {"Origin": "https://evil.test"}),
        "404": gw.get("/nope"),
        "404 api": gw.get("/api/v1/nope"),
        "405": gw.http.put("/api/v1/orders", headers={"Origin": gw.origin}),
        "413": raw_post(gw, REGISTER, {"Origin": gw.origin}, b"x" * (MIB + 1)),
        "200 openapi": gw.get("/openapi.json"),
        "200 preflight": _preflight(gw, gw.origin),
    }
    for label, r in answers.items():
        assert r.status_code == int(label[:3]), (label, r.text)
        assert_edge_headers(r)


def test_inbound_correlation_id_is_echoed_when_well_formed(gw):
    for value in (f"req-{uuid.uuid4()}", "abc.DEF_123:456", "x" * 128):
        r = gw.get("/health", headers={"X-Correlation-ID": value})
        assert r.headers["x-correlation-id"] == value
        r = gw.get("/api/v1/orders", headers={"X-Correlation-ID": value})
        assert r.status_code == 401
        assert r.headers["x-correlation-id"] == value


@pytest.mark.parametrize(
    "value",
    ["bad id <x>", "x" * 300, "x" * 129, "short", "<script>alert(1)</script>", "a;b=c,d=e/f"],
)
def test_malformed_correlation_id_is_replaced(gw, value):
    r = gw.get("/health", headers={"X-Correlation-ID": value})
    new = r.headers["x-correlation-id"]
    assert new != value
    assert UUID.match(new), new
    assert value not in r.text


def test_correlation_id_with_newline_never_reflected(gw):
    """A raw request with a header value split by a newline (httpx refuses to send one)."""
    parts = urlsplit(gw.url)
    request = (
        "GET /health HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        "X-Correlation-ID: bad id\n<x>\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert "<x>" not in data.decode("latin-1")
    assert "bad id" not in head
    status = int(head.split(" ", 2)[1])
    assert status in (200, 400), head
    if status == 200:  # the server took "bad id" as the value: it must have been replaced
        echoed = re.search(r"(?im)^x-correlation-id: (.*)$", head)
        assert echoed and UUID.match(echoed.group(1).strip()), head


def test_new_correlation_id_for_each_request_without_one(gw):
    ids = {gw.get("/health").headers["x-correlation-id"] for _ in range(5)}
    assert len(ids) == 5
    assert all(UUID.match(i) for i in ids)


# --- body size and malformed JSON ---------------------------------------------------------------


def test_body_over_one_mib_with_content_length_is_413(gw):
    body = b'{"username": "' + b"a" * (MIB + 100) + b'"}'
    r = raw_post(gw, REGISTER, {"Origin": gw.origin, "Content-Type": "application/json"}, body)
    assert r.status_code == 413, r.text[:200]
    assert r.json()["error"] == "Payload Too Large"
    assert_edge_headers(r)
    assert "aaaa" not in r.text


def test_body_over_one_mib_chunked_is_413(gw):
    def chunks():
        yield b'{"username": "'
        for _ in range(20):
            yield b"a" * (64 * 1024)
        yield b'"}'

    with httpx.Client(base_url=gw.url, timeout=20) as client:
        r = client.post(
            REGISTER,
            content=chunks(),
            headers={"Origin": gw.origin, "Content-Type": "application/json"},
        )
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert r.status_code == 413, r.text[:200]
    assert r.json()["error"] == "Payload Too Large"
    assert_edge_headers(r)


def test_body_just_under_the_limit_is_not_413(gw):
    body = b'{"username": "' + b"a" * (MIB - 100) + b'"}'
    r = raw_post(gw, LOGIN, {"Origin": gw.origin, "Content-Type": "application/json"}, body)
    assert r.status_code == 400, r.text[:200]
    assert "aaaa" not in r.text


@pytest.mark.parametrize(
    "payload",
    [
        b"{nope",
        b'{"username": "x", ',
        b"{'username': 'single'}",
        b'{"username": "x"}}',
        b"\xff\xfe\x00garbage",
        b"[" * 100_000,
        b'{"a": ' * 50_000,
        b"",
    ],
    ids=[
        "brace",
        "truncated",
        "single-quotes",
        "trailing",
        "binary",
        "deep-array",
        "deep-obj",
        "empty",
    ],
)
def test_malformed_json_is_400_without_internals(gw, payload):
    r = raw_post(gw, REGISTER, {"Origin": gw.origin, "Content-Type": "application/json"}, payload)
    assert r.status_code == 400, r.text[:300]
    body = r.json()
    assert set(body) >= {"error"}
    for word in LEAKS:
        assert word not in r.text, word
    assert "single" not in r.text
    assert_edge_headers(r)


# --- errors never leak internals ----------------------------------------------------------------


def test_error_bodies_never_leak_internals(gw):
    user = gw.new_user()
    taken, _ = gw.register(username=user.username)
    answers = [
        taken,  # 409 from a duplicate-key IntegrityError
        gw.register(email=user.email)[0],
        gw.post(REGISTER, {"username": "'; DROP TABLE users; --", "password": 1}),
        gw.post(REGISTER, {"username": ["list"], "email": {"o": 1}, "fullName": 5}),
        gw.post(LOGIN, {"username": "' OR '1'='1", "password": "' OR '1'='1"}),
        gw.post(LOGIN, {"username": "\u0000null\u0000", "password": "x"}),
        gw.post(LOGIN, {"username": "\U0001d518\u00fcn\u00efc\U0001f642", "password": "x"}),
        gw.post(LOGIN, {"username": 12, "password": 34}),
        gw.post("/api/v1/orders", {"productId": 1, "quantity": 1}, "forged.token.here"),
        gw.post("/api/v1/orders", {"productId": 424242, "quantity": 1}, user.token),
        gw.post("/api/v1/orders", {"productId": 8, "quantity": 10000}, user.token),
        raw_post(
            gw,
            "/api/v1/orders",
            {"Origin": gw.origin, "Cookie": f"echobase_token={user.token}"},
            b'{"productId": 1e400, "quantity": 99999999999999999999999999}',
        ),
        gw.get("/api/v1/products?limit=1e999&offset=x", user.token),
        gw.get("/api/v1/orders", headers={"Authorization": "Bearer " + "A" * 5000}),
        gw.get("/api/v1/nope"),
        gw.http.put("/api/v1/orders", headers={"Origin": gw.origin}),
        gw.http.patch("/health", headers={"Origin": gw.origin}),
        raw_post(gw, REGISTER, {"Origin": gw.origin, "Content-Type": "text/plain"}, b"hi"),
        raw_post(gw, REGISTER, {"Origin": gw.origin}, b"x" * (MIB + 1)),
        raw_post(  # a lone surrogate cannot be encoded for bcrypt or the database
            gw,
            REGISTER,
            {"Origin": gw.origin, "Content-Type": "application/json"},
            b'{"username": "sur_%(u)s", "email": "%(u)s@example.com", "fullName": "S",'
            b' "password": "Aa1aaaaa\\ud800"}' % {b"u": uuid.uuid4().hex[:8].encode()},
        ),
        raw_post(
            gw,
            LOGIN,
            {"Origin": gw.origin, "Content-Type": "application/json"},
            b'{"username": "x\\ud800yz", "password": "Aa1\\udfff"}',
        ),
    ]
    for r in answers:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json")
        assert "error" in r.json()
        for word in LEAKS:
            assert word not in r.text, (word, r.text)
        assert "DROP TABLE" not in r.text


def test_unknown_paths_and_methods(gw):
    r = gw.get("/api/v1/does-not-exist")
    assert r.status_code == 404
    assert r.json() == {"error": "Not Found", "message": "Resource not found"}
    r = gw.http.put("/api/v1/orders", headers={"Origin": gw.origin})
    assert r.status_code == 405
    assert r.json()["error"] == "Method Not Allowed"
    assert gw.get("/docs").status_code == 404
