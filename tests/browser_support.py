"""Helpers for the browser tests (tests/e2e): Chromium's flags, screenshots, a deploy through
the CLI, what a page reported that a person would call broken, and what a person does on
the pages (sign up, sign in, order) and the storage the app keeps."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bluegreen_support import REPO, BlueGreenSystem, database
from echobase.platform.durable.mariadb import app_connection

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# closed network refuses; root needs --no-sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README names this folder; CI keeps what the run leaves in it.
SCREENSHOTS = Path(os.environ.get("ECHOBASE_SCREENSHOTS", REPO / "artifacts" / "screenshots"))


def deploy(bg: BlueGreenSystem, release_id: str) -> dict:
    result = bg.system.cli("deploy", "--json", "--release", release_id, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


class PageProblems:
    """What a page reported that a person would call broken: script errors, CSP refusals,
    failed requests, and any dialog (an alert() would be an injected script running)."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []

    def watch(self, page) -> None:
        page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

        def on_dialog(dialog) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)

    def unexpected(self, allowed: tuple[str, ...] = ()) -> list[str]:
        errors = [e for e in self.console_errors if not any(a in e for a in allowed)]
        return errors + self.page_errors + [f"dialog: {d}" for d in self.dialogs]


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def query(bg: BlueGreenSystem, sql: str, *args: object) -> list[tuple]:
    """As the app user, with the stored credentials."""
    conn = app_connection(database(bg))
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            rows = list(cur.fetchall())
        conn.commit()
        return rows
    finally:
        conn.close()


PASSWORD = "Passw0rdX"
XSS_NAME = "<script>alert(1)</script>"


def new_username(prefix: str = "web") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def register(page: Page, username: str, full_name: str = "Ada Lovelace") -> None:
    page.goto("/register")
    page.fill("input[name=username]", username)
    page.fill("input[name=email]", f"{username}@example.com")
    page.fill("input[name=fullName]", full_name)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=confirmPassword]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/orders")


def end_session(page: Page) -> None:
    """The session ends on the server's side (its cookie is gone). Requests still in flight
    first: each authenticated answer slides the session forward with a fresh cookie, which
    would otherwise land after the clearing and sign the page back in."""
    page.wait_for_load_state("networkidle")
    page.context.clear_cookies()


def login(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def place_order(page: Page, product_id: int, quantity: int) -> str:
    """Submits the order form; returns the message id the success message shows."""
    page.select_option("select[name=productName]", str(product_id))
    page.fill("input[name=quantity]", str(quantity))
    page.click("button[type=submit]")
    success = page.locator(".message.success")
    success.wait_for()
    match = re.search(r"[0-9a-f]{8}-[0-9a-f-]{27}", success.inner_text())
    assert match, success.inner_text()
    return match[0]


def session_user(page: Page) -> dict | None:
    return page.evaluate("() => JSON.parse(sessionStorage.getItem('user'))")


Storage = Literal["localStorage", "sessionStorage"]


def storage_item(page: Page, storage: Storage, key: str) -> str | None:
    """The raw text the app's origin keeps under ``key`` (None when there is none)."""
    return page.evaluate("([storage, key]) => window[storage].getItem(key)", [storage, key])


def set_storage_item(page: Page, storage: Storage, key: str, value: str) -> None:
    """Writes ``value`` as it is (any text, JSON or not) on the page's origin."""
    page.evaluate(
        "([storage, key, value]) => window[storage].setItem(key, value)", [storage, key, value]
    )


def assert_clean(page: Page) -> None:
    # A 401 from /api/v1/* is the app asking "am I signed in?", not a fault.
    problems = page.problems.unexpected(allowed=("401",))
    assert problems == [], problems
