"""What a person does in the browser, through the load balancer over HTTPS: sign up, sign in,
order, read the history, sign out, and stay signed in across a colour switch. Every test
also fails on any script error, CSP refusal or dialog the page produced."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from bluegreen_support import BlueGreenSystem
from browser_support import (
    PASSWORD,
    XSS_NAME,
    assert_clean,
    deploy,
    end_session,
    login,
    new_username,
    place_order,
    query,
    register,
    screenshot,
    session_user,
)
from echobase.app.core.security import hash_password

pytestmark = pytest.mark.timeout(600)


def history_rows(page, count: int, seconds: float = 10):
    """The history table's rows once it lists ``count`` orders: the processor stores them a
    moment after the 201, so the page is refreshed (its own button) until then."""
    rows = page.locator("table.orders-table tbody tr")
    deadline = time.monotonic() + seconds
    while rows.count() < count:
        assert time.monotonic() < deadline, f"fewer than {count} orders after {seconds} s"
        page.click("button:has-text('Refresh')")
        page.wait_for_timeout(300)
    return rows


# --- signed out ------------------------------------------------------------------------------


def test_signed_out_visitor_lands_on_login(page) -> None:
    page.goto("/")
    page.wait_for_url("**/login")
    assert page.locator("h1").count() == 1
    assert "Login" in page.locator("h1").inner_text()
    assert page.locator("input[name=password]").get_attribute("type") == "password"
    assert page.locator("button[type=submit]").inner_text().strip() == "Login"
    assert page.locator('a[href="/register"]').count() == 1
    screenshot(page, "login")
    assert_clean(page)


@pytest.mark.parametrize("path", ["/orders", "/my-orders", "/no/such/page"])
def test_protected_and_unknown_pages_redirect_to_login(page, path: str) -> None:
    page.goto(path)
    page.wait_for_url("**/login")
    assert_clean(page)


def test_wrong_password_shows_an_alert_and_stays_signed_out(page, live_system) -> None:
    username = new_username()
    register(page, username)
    page.click("text=Logout")
    page.wait_for_url("**/login")
    login(page, username, "WrongPassw0rd")
    alert = page.locator("[role=alert]")
    alert.wait_for()
    assert "Invalid username or password" in alert.inner_text()
    assert page.url.endswith("/login")
    assert session_user(page) is None
    screenshot(page, "login-error")
    assert_clean(page)


def test_register_page_checks_the_password_live(page) -> None:
    page.goto("/register")
    expect(page.locator("h1")).to_have_text("Create Account")
    checklist = page.locator("li:has(.sr-only)")
    assert checklist.count() == 4
    assert checklist.locator(".sr-only", has_text=re.compile("^Not met$")).count() == 4
    page.fill("input[name=password]", "abc")
    assert checklist.locator(".sr-only", has_text=re.compile("^Met$")).count() == 1
    page.fill("input[name=password]", PASSWORD)
    assert checklist.locator(".sr-only", has_text=re.compile("^Met$")).count() == 4
    assert page.locator('a[href="/login"]').count() == 1
    screenshot(page, "register")
    # client-side checks stop a mismatch before any request is sent
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/auth/" in r.url else None)
    page.fill("input[name=username]", new_username())
    page.fill("input[name=email]", "someone@example.com")
    page.fill("input[name=fullName]", "Someone")
    page.fill("input[name=confirmPassword]", "Passw0rdY")
    page.click("button[type=submit]")
    page.locator("[role=alert]").wait_for()
    assert requests == []
    assert page.url.endswith("/register")
    assert_clean(page)


def test_a_script_as_full_name_is_refused_as_text(page) -> None:
    page.goto("/register")
    page.fill("input[name=username]", new_username())
    page.fill("input[name=email]", "x@example.com")
    page.fill("input[name=fullName]", XSS_NAME)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=confirmPassword]", PASSWORD)
    page.click("button[type=submit]")
    page.locator("[role=alert]").wait_for()
    assert page.url.endswith("/register")
    assert page.problems.dialogs == []
    assert_clean(page)


# --- signed in -------------------------------------------------------------------------------


def test_register_order_and_see_history(page, live_system: BlueGreenSystem) -> None:
    username = new_username()
    register(page, username, "Grace Hopper")
    expect(page.locator("h1")).to_have_text("Echobase Order System")
    expect(page.locator("body")).to_contain_text("Logged in as: Grace Hopper")
    user = session_user(page)
    assert user is not None
    assert set(user) == {"id", "username", "email", "fullName"}
    assert user["username"] == username
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["echobase_token"]["httpOnly"] is True
    assert cookies["echobase_token"]["secure"] is True
    assert page.evaluate("() => document.cookie") == ""  # the token is out of the script's reach

    select = page.locator("select[name=productName]")
    options = select.locator("option")
    expect(options).to_have_count(12)  # the catalogue arrives after the page
    assert options.first.get_attribute("value") == ""
    labels = [options.nth(i).inner_text() for i in range(1, options.count())]
    assert len(labels) == 11
    names = [label.split(" — $")[0] for label in labels]
    assert names == sorted(names)
    assert "Keyboard — $49.99" in labels
    submit = page.locator("button[type=submit]")
    assert submit.is_disabled()
    assert page.locator("input[name=quantity]").input_value() == "1"
    assert page.locator("input[name=totalPrice]").get_attribute("readonly") is not None
    page.select_option("select[name=productName]", "7")  # Keyboard, 49.99
    page.fill("input[name=quantity]", "3")
    assert page.locator("input[name=totalPrice]").input_value() == "149.97"  # a plain number
    assert submit.is_enabled()
    screenshot(page, "orders")

    first = place_order(page, 7, 3)
    assert page.locator("select[name=productName]").input_value() == ""  # the form reset
    assert page.locator("input[name=quantity]").input_value() == "1"
    screenshot(page, "orders-success")
    second = place_order(page, 10, 2)  # Mouse, 29.99
    assert first != second

    page.click("text=View Order History")
    page.wait_for_url("**/my-orders")
    expect(page.locator("h1")).to_have_text("Order History")
    rows = history_rows(page, 2)
    texts = [rows.nth(i).inner_text() for i in range(2)]
    assert "Mouse" in texts[0] and "$59.98" in texts[0]  # newest first
    assert "Keyboard" in texts[1] and "$149.97" in texts[1]
    stored = query(
        live_system,
        "SELECT product_name, quantity, total_price FROM orders o JOIN users u ON u.id = o.user_id"
        " WHERE u.username = %s ORDER BY o.id",
        username,
    )
    assert [(n, q, f"{t:.2f}") for n, q, t in stored] == [
        ("Keyboard", 3, "149.97"),
        ("Mouse", 2, "59.98"),
    ]
    screenshot(page, "order-history")
    assert_clean(page)


def test_history_columns_sort_both_ways(page) -> None:
    register(page, new_username())
    for product, quantity in ((3, 1), (11, 4), (1, 2)):
        place_order(page, product, quantity)
    page.goto("/my-orders")
    history_rows(page, 3)
    header = page.locator("table.orders-table thead th")
    names = [header.nth(i).inner_text().strip(" ▲▼\n") for i in range(header.count())]
    assert names == [
        "Date",
        "Product",
        "SKU",
        "Quantity",
        "Total",
        "Status",
    ]
    date = page.locator("th", has_text="Date")
    assert date.get_attribute("aria-sort") == "descending"

    def column(index: int) -> list[str]:
        cells = page.locator(f"table.orders-table tbody tr td:nth-child({index})")
        return [cells.nth(i).inner_text().strip() for i in range(cells.count())]

    assert column(2) == ["Quantum Stabilizer", "Webcam", "Neural Interface Module"]
    product = page.locator("th", has_text="Product")
    product.locator("button").click()
    assert product.get_attribute("aria-sort") == "ascending"
    assert date.get_attribute("aria-sort") == "none"
    assert column(2) == ["Neural Interface Module", "Quantum Stabilizer", "Webcam"]
    product.locator("button").click()
    assert product.get_attribute("aria-sort") == "descending"
    assert column(2) == ["Webcam", "Quantum Stabilizer", "Neural Interface Module"]
    total = page.locator("th", has_text="Total")
    total.locator("button").click()
    totals = column(5)
    assert all(re.fullmatch(r"\$\d+\.\d\d", t) for t in totals), totals
    values = [float(t[1:]) for t in totals]
    assert values == sorted(values) or values == sorted(values, reverse=True)
    total.locator("button").click()
    assert [float(t[1:]) for t in column(5)] == sorted(values, reverse=values == sorted(values))
    assert_clean(page)


def test_empty_history_says_so(page) -> None:
    register(page, new_username())
    page.click("text=View Order History")
    page.wait_for_url("**/my-orders")
    expect(page.locator("body")).to_contain_text("No orders yet")
    assert page.locator("table.orders-table").count() == 0
    page.click("text=Place New Order")
    page.wait_for_url("**/orders")
    assert_clean(page)


def test_reload_keeps_the_session_and_logout_ends_it(page) -> None:
    register(page, new_username(), "Reload Tester")
    page.reload()
    page.locator("h1", has_text="Echobase Order System").wait_for()
    expect(page.locator("body")).to_contain_text("Logged in as: Reload Tester")
    page.goto("/")
    page.wait_for_url("**/orders")
    logout = page.locator("button", has_text="Logout")
    assert logout.get_attribute("type") == "button"
    with page.expect_request("**/api/v1/auth/logout") as request:
        logout.click()
    assert request.value.method == "POST"
    page.wait_for_url("**/login")
    assert page.evaluate("() => sessionStorage.length") == 0
    assert "echobase_token" not in {c["name"] for c in page.context.cookies()}
    page.goto("/orders")
    page.wait_for_url("**/login")
    assert_clean(page)


def test_any_401_signs_the_user_out(page) -> None:
    register(page, new_username())
    end_session(page)
    with page.expect_response(
        lambda r: r.url.endswith("/api/v1/orders") and r.request.method == "GET"
    ) as listing:
        page.goto("/my-orders")
    # What the page was told, so a failure says whether the sign-out or the answer was wrong.
    assert listing.value.status == 401, (listing.value.status, listing.value.text()[:300])
    page.wait_for_url("**/login")
    assert session_user(page) is None
    assert_clean(page)


def test_stored_markup_in_a_name_is_shown_as_text(page, live_system) -> None:
    # The API refuses such a name at sign-up; a row written some other way (an import, an
    # older release) must still only ever be text on the page.
    username = new_username("xss")
    hashed = hash_password(PASSWORD, 4)
    query(
        live_system,
        "INSERT INTO users (username, email, full_name, password_hash) VALUES (%s, %s, %s, %s)",
        username,
        f"{username}@example.com",
        XSS_NAME,
        hashed,
    )
    login(page, username)
    page.locator("h1:has-text('Echobase Order System'), [role=alert]").first.wait_for()
    assert page.locator("[role=alert]").count() == 0, page.locator("[role=alert]").inner_text()
    expect(page.locator("body")).to_contain_text(f"Logged in as: {XSS_NAME}")
    assert page.locator("script", has_text="alert(1)").count() == 0
    page.reload()
    page.locator("h1", has_text="Echobase Order System").wait_for()
    expect(page.locator("body")).to_contain_text(f"Logged in as: {XSS_NAME}")
    assert page.problems.dialogs == []
    assert_clean(page)


def test_keyboard_alone_signs_in_with_visible_focus(page) -> None:
    username = new_username()
    register(page, username)
    page.click("text=Logout")
    page.wait_for_url("**/login")
    page.locator("input[name=username]").focus()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.getAttribute('name')")
    assert focused == "password"
    outline = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth, s.boxShadow]; }"
    )
    assert outline[0] != "none" or outline[2] != "none", outline
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/orders")
    assert_clean(page)


def test_every_input_has_a_label(page) -> None:
    for path in ("/login", "/register"):
        page.goto(path)
        unlabelled = page.evaluate(
            "() => [...document.querySelectorAll('input, select')]"
            ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))"
            ".map(e => e.name)"
        )
        assert unlabelled == [], (path, unlabelled)
    register(page, new_username())
    unlabelled = page.evaluate(
        "() => [...document.querySelectorAll('input, select')]"
        ".filter(e => !(e.labels && e.labels.length)).map(e => e.name)"
    )
    assert unlabelled == []
    assert_clean(page)


# --- the colour that served the page ---------------------------------------------------------


def footer_colour(page) -> str:
    colour = page.locator("footer [data-testid=colour]")
    colour.wait_for()
    page.wait_for_function(
        "() => ['blue','green'].includes("
        "document.querySelector('footer [data-testid=colour]').textContent.trim())"
    )
    return colour.inner_text().strip()


def test_signed_in_user_survives_a_switch(page, live_system: BlueGreenSystem) -> None:
    """Deploy another release to the idle colour and switch while the user sits on /orders;
    the session holds, the next order succeeds, and a reload shows the new colour."""
    register(page, new_username(), "Switch Watcher")
    before = footer_colour(page)
    release_before = page.locator("footer [data-testid=release]").inner_text().strip()
    screenshot(page, "orders-before-switch")
    other = (
        live_system.release_b
        if release_before == live_system.release_a.id
        else (live_system.release_a)
    )
    outcome = deploy(live_system, other.id)
    assert outcome["from"] == before and outcome["to"] != before
    # Still the page the user had open: no reload, and the form works against the new colour.
    message_id = place_order(page, 2, 1)
    assert message_id
    assert session_user(page) is not None
    page.reload()
    assert footer_colour(page) == outcome["to"]
    assert page.locator("footer [data-testid=release]").inner_text().strip() == other.id
    expect(page.locator("body")).to_contain_text("Logged in as: Switch Watcher")
    screenshot(page, "orders-after-switch")
    page.goto("/my-orders")
    history_rows(page, 1)
    assert_clean(page)
