"""Small helpers shared by tests (kept out of conftest so they can be imported)."""

from __future__ import annotations

import re
import textwrap
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from conftest import ALLOWED_ORIGIN
from echobase.app.db.migrate import MIGRATIONS_DIR

ORIGIN_HEADERS = {"Origin": ALLOWED_ORIGIN}

# Words that would mean an error answer leaked internals (SQL, driver, SDK, stack traces).
LEAKS = (
    "Traceback",
    "traceback",
    "sqlalchemy",
    "pymysql",
    "asyncmy",
    "SELECT",
    "INSERT",
    "botocore",
    "aiobotocore",
    "IntegrityError",
    "Duplicate entry",
    'File "',
    "/site-packages/",
    "pydantic",
    "errors.pydantic.dev",
    "Can't connect",
    "Errno",
    "MySQL",
    "MariaDB",
    "orders_db",
)


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true; a bound, not a guess: past it the test fails
    naming ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def within_one_rate_window(window: int, needed: float) -> None:
    """Rate-limit windows start at multiples of ``window`` seconds since the epoch: when fewer
    than ``needed`` seconds of the current one are left, wait for the next, so that every
    request a test makes counts in one window."""
    left = window - time.time() % window
    if left < needed:
        time.sleep(left + 0.2)


def receive_all(sqs: Any, queue_url: str, rounds: int = 5, **options: Any) -> list[dict]:
    """A queue's messages, batch by batch (at most ``rounds``) until a receive comes back empty."""
    found: list[dict] = []
    for _ in range(rounds):
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, **options)
        found += got.get("Messages", [])
        if not got.get("Messages"):
            break
    return found


def register(base_url: str, password: str = "Passw0rdX") -> str:
    """Register a fresh user and return its token."""
    name = f"u_{uuid.uuid4().hex[:10]}"
    r = httpx.post(
        base_url + "/api/v1/auth/register",
        headers=ORIGIN_HEADERS,
        json={
            "username": name,
            "email": f"{name}@example.com",
            "fullName": "Test User",
            "password": password,
        },
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return token_from(r)


def sign_up(http: httpx.Client, username: str, full_name: str, password: str = "Passw0rdX") -> dict:
    """Register ``username`` through ``http`` (its cookie jar keeps the session); the
    answer's JSON."""
    answer = http.post(
        "/api/v1/auth/register",
        json={
            "username": username,
            "email": f"{username}@example.com",
            "fullName": full_name,
            "password": password,
        },
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


# A raw MCP tools/call over Streamable HTTP (what any client sends), and the Accept it needs.
MCP_TOOL_CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "getRecommendedProducts", "arguments": {"userId": 1}},
}
MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}


def token_from(response: httpx.Response) -> str:
    """The token in Set-Cookie (httpx will not resend a Secure cookie over plain HTTP)."""
    header = response.headers["set-cookie"]
    return header.split("echobase_token=", 1)[1].split(";", 1)[0]


# The newest revision this tree ships, and the one a test adds on top of it.
SHIPPED_HEAD = max(
    re.findall(r'^revision = "(\d+)"', path.read_text(), re.M)[0]
    for path in (MIGRATIONS_DIR / "versions").glob("*.py")
)
TEST_STEP = f"{int(SHIPPED_HEAD) + 1:04d}"


def revision_script(name: str, body: str) -> str:
    """An Alembic revision TEST_STEP after the shipped head, whose upgrade() runs ``body``."""
    header = textwrap.dedent(
        f'''\
        """{name}.

        Revision ID: {TEST_STEP}
        Revises: {SHIPPED_HEAD}
        """

        import sqlalchemy as sa
        from alembic import op

        revision = "{TEST_STEP}"
        down_revision = "{SHIPPED_HEAD}"
        branch_labels = None
        depends_on = None


        def upgrade() -> None:
        '''
    )
    return header + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n"
