"""SQL injection in every field of every endpoint, and markup (XSS) stored and read back, at a
real gateway over a real MariaDB: never a 5xx, never an internal detail in an answer, the
database exactly as it was plus the rows the accepted requests made, and whatever is stored
comes back verbatim as JSON data, never as HTML."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from security.live_support import account
from tests_support import LEAKS

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
ORDERS = "/api/v1/orders"
PRODUCTS = "/api/v1/products"
JSON = "application/json"

SQL = [
    "' OR '1'='1",
    "' OR 1 --",
    "admin'--",
    "x'; DROP TABLE users; --",
    "1; DELETE FROM orders",
    "' UNION SELECT username, password_hash FROM users --",
    "1' AND SLEEP(2) AND '1'='1",
    '" OR ""="',
    "\\'; TRUNCATE products; #",
    "%27%20OR%201%3D1--",
    "1 OR 1=1",
    "0x27204f522031",
    "'||(SELECT password_hash FROM users LIMIT 1)||'",
    "\x00' OR 1 -- \x00",
    "é' OR 'é'='é",
]
XSS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg/onload=alert(1)>',
    "javascript:alert(1)",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<iframe src=//evil.test>",
    "{{7*7}}${7*7}",
]
# Markup a field's rules let through: each must be stored and read back as typed.
STORABLE = {
    "email": [
        "x'onmouseover='alert`1`'@example.com",
        "{{7*7}}@example.com",
        "a/b=c?d@example.com",
        "admin'--@example.com",
        "x'||'1@example.com",
    ],
    "fullName": ["O'Brien-Smith Jr.", "' OR 1 --", "x' -- .", "Robert'. -- DROP TABLE users"],
    "password": ["' OR '1'='1' --Aa1", "<script>alert(1)</script>Aa1", "Aa1'; DROP TABLE users;"],
}


@pytest.fixture(scope="module")
def gw(gateway_factory):
    return gateway_factory("gw-inject")


@pytest.fixture(scope="module")
def user(gw):
    return gw.new_user()


def snapshot(backing) -> dict[str, object]:
    tables = sorted(row[0] for row in backing.query("SHOW TABLES"))
    counts = {t: backing.query(f"SELECT COUNT(*) FROM `{t}`")[0][0] for t in tables}
    counts.pop("rate_limit_windows", None)  # written by every request
    counts.pop("login_failures", None)  # written by every failed login
    products = backing.query("SELECT id, name, sku, cost FROM products ORDER BY id")
    return {"tables": tables, "counts": counts, "products": products}


def assert_refused_cleanly(r: httpx.Response, *payloads: str) -> None:
    assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text[:300])
    assert_json(r)
    for word in LEAKS:
        assert word not in r.text, (word, r.text[:300])
    for payload in payloads:
        if len(payload) > 3:
            assert payload not in r.text, (payload, r.text[:300])


def assert_json(r: httpx.Response) -> None:
    assert r.headers["content-type"] == "application/json", r.headers
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    r.json()


def test_sql_injection_in_every_field_changes_nothing(backing, gw, user):
    before = snapshot(backing)
    created = 0
    for payload in SQL + XSS:
        for field in ("username", "email", "fullName", "password"):
            r = gw.post(REGISTER, account("i", **{field: payload}))
            if r.status_code == 201:  # a value the field's rules allow: stored as data
                created += 1
                assert_json(r)
                continue
            assert_refused_cleanly(r, payload)
        for body in (
            {"username": payload, "password": "Wrong0Password"},
            {"username": user.username, "password": payload},
            {"username": payload, "password": payload},
        ):
            r = gw.post(LOGIN, body)
            assert r.status_code in (400, 401, 429), (body, r.status_code, r.text)  # 429: locked
            assert_refused_cleanly(r, payload)
            assert not gw.set_cookies(r)
        for body in (
            {"productId": payload, "quantity": 1},
            {"productId": 1, "quantity": payload},
            {"productId": {"$gt": 0}, "quantity": [payload]},
        ):
            assert_refused_cleanly(gw.post(ORDERS, body, user.token), payload)
        for params in ({"limit": payload}, {"offset": payload}):
            assert_refused_cleanly(gw.get(PRODUCTS, user.token, params=params), payload)
        r = gw.get(ORDERS, user.token, params={"userId": payload, "sort": payload})
        assert r.status_code == 200 and r.json()["orders"] == []  # unknown params ignored
        assert_refused_cleanly(gw.get(f"/api/v1/orders/{quote(payload)}", user.token))
        if payload.isprintable():  # a control character cannot go into a header at all
            bearer = b"Bearer " + payload.encode()
            assert_refused_cleanly(gw.get(PRODUCTS, headers={"Authorization": bearer}))
    after = snapshot(backing)
    assert after["tables"] == before["tables"]
    assert after["products"] == before["products"]
    expected = dict(before["counts"], users=before["counts"]["users"] + created)
    assert after["counts"] == expected
    assert created >= 3  # some payloads are valid data: those were stored, not run


@pytest.mark.parametrize("field", sorted(STORABLE))
def test_storable_markup_is_kept_verbatim_and_read_back_as_json(backing, gw, field):
    for value in STORABLE[field]:
        body = account("i", **{field: value})
        r = gw.post(REGISTER, body)
        assert r.status_code == 201, (value, r.text)
        assert_json(r)
        stored = backing.query(
            "SELECT email, full_name FROM users WHERE username = %s", body["username"]
        )
        assert stored == [(str(body["email"]).lower(), body["fullName"])]
        login = gw.post(LOGIN, {"username": body["username"], "password": body["password"]})
        assert login.status_code == 200, login.text
        assert_json(login)
        seen = login.json()["user"]
        assert (seen["email"], seen["fullName"]) == stored[0]
        for escaped in ("&lt;", "&gt;", "&#x27;", "&#39;", "&quot;", "\\u003c"):
            assert escaped not in login.text  # data, not pre-escaped HTML


@pytest.mark.parametrize("payload", XSS)
def test_markup_the_contract_refuses_is_never_reflected(gw, user, payload):
    r = gw.post(REGISTER, account("i", fullName=payload, username=f"x{payload}"))
    assert r.status_code == 400
    assert {d["path"] for d in r.json()["details"]} == {"fullName", "username"}
    assert_refused_cleanly(r, payload)
    for r in (
        gw.get(f"/api/v1/{quote(payload)}", user.token),
        gw.get(PRODUCTS, user.token, params={"limit": payload}),
        gw.post(LOGIN, {"username": payload, "password": payload}),
        gw.get(PRODUCTS, headers={"X-Correlation-ID": payload, "Cookie": f"x={payload}"}),
    ):
        assert r.status_code < 500
        assert_json(r)
        assert payload not in r.text and payload not in str(r.headers)


BAD_BYTES = [
    b'{"username": "\xff\xfe\xfd", "password": "x"}',  # not UTF-8
    b'{"username": "\xc0\xaf", "password": "x"}',  # an overlong "/"
    b'{"username": "\xed\xa0\x80", "password": "x"}',  # a UTF-8-encoded surrogate
    b'\xef\xbb\xbf{"username": "bom", "password": "x"}',
    b'\xff\xfe{\x00"\x00u\x00"\x00:\x001\x00}\x00',  # UTF-16
    b'{"username": NaN, "password": Infinity}',
    b'{"productId": 1e999999, "quantity": -1e999999}',
    b'{"productId": 1, "productId": "1; DROP TABLE orders", "quantity": 1}',
    b'{"username": "a", "password": "b", "__proto__": {"admin": true}}',
    b'{"username": "' + b"\\u0000" * 1000 + b'", "password": "x"}',
]


@pytest.mark.parametrize("path", [REGISTER, LOGIN, ORDERS])
def test_bytes_that_are_not_valid_json_text_are_a_clean_400(backing, gw, user, path):
    before = snapshot(backing)
    for body in BAD_BYTES:
        r = gw.post(path, content=body, token=user.token, headers={"Content-Type": JSON})
        assert r.status_code in (400, 401), (body[:40], r.status_code, r.text[:200])
        assert_refused_cleanly(r)
    assert snapshot(backing) == before
