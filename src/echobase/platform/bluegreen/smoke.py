"""Smoke tests of a colour: before promotion on its direct port (a throwaway user registers,
logs in, orders, and the order reaches the database), after promotion through the
production URL (the same user, answered by the new colour)."""

from __future__ import annotations

import os
import re
import secrets
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from echobase.app.core.secrets import DatabaseCredentials
from echobase.platform.durable.mariadb import app_connection

if TYPE_CHECKING:  # httpx loads with the first smoke test, not with every CLI command
    import httpx

ORDER_VISIBLE_SECONDS = 5.0
SMOKE_PASSWORD_BYTES = 18


class SmokeFailed(RuntimeError):
    """A check failed; the message says which and what came back (never a credential)."""


@dataclass
class SmokeUser:
    username: str
    password: str = field(repr=False)
    token: str = field(default="", repr=False)


def new_smoke_user(colour: str) -> SmokeUser:
    # The gateway wants an upper-case letter, a lower-case letter and a digit; 24 random
    # base64url characters lack a digit about once in 60 draws, failing that deploy's smoke test.
    password = secrets.token_urlsafe(SMOKE_PASSWORD_BYTES) + "Aa1"
    return SmokeUser(f"smoke_{colour}_{secrets.token_hex(6)}", password)


def _expect(response: httpx.Response, status: int, what: str) -> httpx.Response:
    if response.status_code != status:
        raise SmokeFailed(f"{what}: HTTP {response.status_code} {response.text[:200]!r}")
    return response


def _served_by(response: httpx.Response, colour: str, what: str) -> None:
    served = response.headers.get("x-served-by")
    if served not in (None, colour):
        raise SmokeFailed(f"{what}: answered by {served}, not {colour}")


def _token(response: httpx.Response) -> str:
    for cookie in response.headers.get_list("set-cookie"):
        name, _, rest = cookie.partition("=")
        if name.strip() == "echobase_token":
            return rest.split(";", 1)[0].strip('"')
    raise SmokeFailed("login answered without a session cookie")


def check_app(http: httpx.Client, colour: str, bundle: Path, what: str) -> None:
    """The page a browser gets is this release's own index.html, and every file it names
    loads: a colour never serves another release's app, or half of one."""
    page = _expect(http.get("/"), 200, f"app page {what}")
    _served_by(page, colour, f"app page {what}")
    if page.content != (bundle / "index.html").read_bytes():
        raise SmokeFailed(f"app page {what}: not the index.html of the release deployed")
    for asset in re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text):
        _expect(http.get(asset), 200, f"app file {asset} {what}")


def before_promotion(
    url: str,
    origin: str,
    colour: str,
    user: SmokeUser,
    database: DatabaseCredentials,
    bundle: Path | None = None,
) -> None:
    """On the colour's direct port: what a user does, end to end, down to the database."""
    import httpx

    headers = {"Origin": origin}
    with httpx.Client(base_url=url, timeout=10, headers=headers) as http:
        if bundle is not None:
            check_app(http, colour, bundle, "on the direct port")
        health = _expect(http.get("/health"), 200, "health").json()
        if health.get("colour") != colour:
            raise SmokeFailed(f"health says colour {health.get('colour')!r}, not {colour}")
        _expect(
            http.post(
                "/api/v1/auth/register",
                json={
                    "username": user.username,
                    "email": f"{user.username}@smoke.echobase.invalid",
                    "fullName": "Smoke Test",
                    "password": user.password,
                },
            ),
            201,
            "register",
        )
        login = http.post(
            "/api/v1/auth/login", json={"username": user.username, "password": user.password}
        )
        user.token = _token(_expect(login, 200, "login"))
        auth = {"Authorization": f"Bearer {user.token}"}
        order = _expect(
            http.post("/api/v1/orders", json={"productId": 1, "quantity": 1}, headers=auth),
            201,
            "order",
        ).json()
    order_uid = str(order["order"]["orderId"])
    deadline = time.monotonic() + ORDER_VISIBLE_SECONDS
    while True:
        if _order_count(database, order_uid) == 1:
            return
        if time.monotonic() > deadline:
            raise SmokeFailed(
                f"order {order_uid} not in the database {ORDER_VISIBLE_SECONDS:.0f}s after 201"
            )
        time.sleep(0.1)


def after_promotion(
    url: str, colour: str, user: SmokeUser, verify: ssl.SSLContext, bundle: Path | None = None
) -> None:
    """Through the production URL: the live route reaches the new colour, sessions hold."""
    import httpx

    with httpx.Client(base_url=url, timeout=10, verify=verify) as http:
        if bundle is not None:
            check_app(http, colour, bundle, "through the LB")
        health = _expect(http.get("/health"), 200, "health through the LB")
        _served_by(health, colour, "health through the LB")
        if health.json().get("colour") != colour:
            raise SmokeFailed(f"the LB reached {health.json().get('colour')!r}, not {colour}")
        orders = http.get("/api/v1/orders", headers={"Authorization": f"Bearer {user.token}"})
        _served_by(_expect(orders, 200, "orders through the LB"), colour, "orders through the LB")
        if orders.json().get("count", 0) < 1:
            raise SmokeFailed("the smoke order is not listed through the LB")


def run_hook(command: str, phase: str, url: str, colour: str, timeout: float = 60) -> None:
    """A team's own extra check: any command, told the phase, URL and colour."""
    env = {
        **os.environ,
        "ECHOBASE_SMOKE_PHASE": phase,
        "ECHOBASE_SMOKE_URL": url,
        "ECHOBASE_SMOKE_COLOUR": colour,
    }
    result = subprocess.run(  # noqa: S602 - the operator's own command, like a git hook
        command, shell=True, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-500:]
        raise SmokeFailed(f"smoke hook failed ({phase}, exit {result.returncode}): {output}")


def remove_user(database: DatabaseCredentials, username: str) -> None:
    """The smoke user and (by cascade) its order: smoke tests leave no data behind."""
    conn = app_connection(database)
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM users WHERE username = %s", (username,))
    finally:
        conn.close()


def _order_count(database: DatabaseCredentials, order_uid: str) -> int:
    conn = app_connection(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM orders WHERE order_uid = %s", (order_uid,))
            row = cur.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()
