"""The order page's reference behaviours (issue 18), as a person meets them in the browser
through the load balancer over HTTPS: the total is a read-only number, a decimal quantity
orders its whole part, "Recommended for you" selects products, and the session in the page
needs only a username, while the cookie stays the authority. Hostile values in either
storage never break a page. Every test also fails on any script error, CSP refusal or dialog
the page produced."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import Page, expect

from bluegreen_support import BlueGreenSystem
from browser_support import (
    XSS_NAME,
    assert_clean,
    end_session,
    login,
    new_username,
    place_order,
    query,
    register,
    screenshot,
    session_user,
    set_storage_item,
    storage_item,
)

pytestmark = pytest.mark.timeout(600)

RECOMMENDATIONS = "recommendedProducts"
MARKUP = "<img src=x onerror=alert(1)>"
SELECT = "select[name=productName]"
TOTAL = "input[name=totalPrice]"
QUANTITY = "input[name=quantity]"


@pytest.fixture(scope="module")
def catalogue(live_system: BlueGreenSystem) -> list[dict]:
    """The real products, as the sign-in answer lists them (cost a JSON number), plus the
    exact cost for the expectations."""
    rows = query(live_system, "SELECT id, name, cost, sku FROM products ORDER BY id")
    assert len(rows) >= 3, rows
    return [{"id": i, "name": n, "cost": float(c), "sku": s, "exact": c} for i, n, c, s in rows]


def as_stored(products: list[dict]) -> str:
    return json.dumps([{k: p[k] for k in ("id", "name", "cost", "sku")} for p in products])


def plain(amount: Decimal) -> str:
    """What the total field holds for ``amount``: the number, without trailing zeros."""
    return format(amount.normalize(), "f")


def wait_for_catalogue(page: Page, product_id: int) -> None:
    """The products arrive after the page; a recommendation selects only a loaded one."""
    expect(page.locator(f"{SELECT} option[value='{product_id}']")).to_have_count(1)


def recommendation_entries(page: Page):
    return page.locator("section.recommendations [role=button]")


def stored_orders_of(bg: BlueGreenSystem, username: str, count: int, seconds: float = 10):
    """The user's stored orders once there are ``count``: the processor writes them a moment
    after the 201."""
    deadline = time.monotonic() + seconds
    while True:
        rows = query(
            bg,
            "SELECT product_name, quantity, total_price FROM orders o"
            " JOIN users u ON u.id = o.user_id WHERE u.username = %s ORDER BY o.id",
            username,
        )
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"{len(rows)} of {count} orders after {seconds} s"
        time.sleep(0.2)


# --- the total and the quantity ----------------------------------------------------------------


def test_total_is_a_read_only_number_holding_the_plain_amount(page: Page) -> None:
    register(page, new_username())
    total = page.locator(TOTAL)
    assert total.get_attribute("type") == "number"
    assert total.get_attribute("readonly") is not None
    assert not total.is_editable()
    expect(total).to_have_value("0")
    wait_for_catalogue(page, 7)
    page.select_option(SELECT, "7")  # Keyboard, 49.99
    page.fill(QUANTITY, "3")
    expect(total).to_have_value("149.97")
    expect(page.locator("form")).to_contain_text("$149.97")  # the formatted amount beside it

    place_order(page, 7, 3)
    expect(page.locator(SELECT)).to_have_value("")
    expect(page.locator(QUANTITY)).to_have_value("1")
    expect(total).to_have_value("0")
    assert_clean(page)


def test_a_decimal_quantity_orders_its_whole_part(page: Page, live_system) -> None:
    username = new_username()
    register(page, username)
    wait_for_catalogue(page, 7)
    page.select_option(SELECT, "7")
    page.fill(QUANTITY, "2.5")
    expect(page.locator(TOTAL)).to_have_value("99.98")  # 2 * 49.99
    with page.expect_request(
        lambda r: r.url.endswith("/api/v1/orders") and r.method == "POST"
    ) as sent:
        page.click("button[type=submit]")
    assert sent.value.post_data_json == {"productId": 7, "quantity": 2}
    page.locator(".message.success").wait_for()
    stored = stored_orders_of(live_system, username, 1)
    assert [(n, q, f"{t:.2f}") for n, q, t in stored] == [("Keyboard", 2, "99.98")]

    # A quantity whose whole part is 0 is refused in the page; nothing is sent.
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.select_option(SELECT, "7")
    page.fill(QUANTITY, "0.5")
    expect(page.locator(TOTAL)).to_have_value("0")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text(
        "Quantity must be a whole number from 1 to 10000"
    )
    assert posted == []
    assert_clean(page)


# --- recommendations ---------------------------------------------------------------------------


def test_recommendations_are_buttons_that_select_the_product(page: Page, catalogue) -> None:
    register(page, new_username())
    chosen = catalogue[:3]
    set_storage_item(page, "localStorage", RECOMMENDATIONS, as_stored(chosen))
    page.reload()
    expect(page.get_by_role("heading", name="Recommended for you", exact=True)).to_be_visible()
    entries = recommendation_entries(page)
    expect(entries).to_have_count(3)
    for index, product in enumerate(chosen):
        entry = entries.nth(index)
        assert entry.get_attribute("tabindex") == "0"
        expect(entry).to_contain_text(product["name"])
        expect(entry).to_contain_text(f"${product['exact']:.2f}")
        expect(entry).to_contain_text(product["sku"])
    wait_for_catalogue(page, chosen[2]["id"])
    screenshot(page, "order-page-recommendations")

    entries.nth(0).click()
    expect(page.locator(SELECT)).to_have_value(str(chosen[0]["id"]))
    expect(page.locator(TOTAL)).to_have_value(plain(chosen[0]["exact"]))
    entries.nth(1).focus()
    page.keyboard.press("Enter")
    expect(page.locator(SELECT)).to_have_value(str(chosen[1]["id"]))
    page.fill(QUANTITY, "2")
    expect(page.locator(TOTAL)).to_have_value(plain(chosen[1]["exact"] * 2))
    entries.nth(2).press("Enter")
    expect(page.locator(SELECT)).to_have_value(str(chosen[2]["id"]))
    assert page.locator("[role=alert]").count() == 0
    assert_clean(page)


def test_a_recommendation_not_in_the_catalogue_shows_an_error(page: Page, catalogue) -> None:
    register(page, new_username())
    unknown = max(p["id"] for p in catalogue) + 1000
    stored = [
        {"id": unknown, "name": "Withdrawn Widget", "cost": 1.5, "sku": "WW-1"},
        {"name": "Widget Without Id", "cost": 2, "sku": "WW-2"},
    ]
    set_storage_item(page, "localStorage", RECOMMENDATIONS, json.dumps(stored))
    page.reload()
    wait_for_catalogue(page, catalogue[0]["id"])
    entries = recommendation_entries(page)
    entries.nth(0).click()
    alert = page.locator("[role=alert]")
    expect(alert).to_have_text("Withdrawn Widget is not available to order")
    expect(page.locator(SELECT)).to_have_value("")
    entries.nth(1).press("Enter")
    expect(alert).to_have_text("Widget Without Id is not available to order")
    expect(page.locator(SELECT)).to_have_value("")
    assert_clean(page)


def many_keyboards(count: int) -> str:
    return json.dumps(
        [{"id": 7, "name": f"Keyboard {i}", "cost": 49.99, "sku": "KB-202"} for i in range(count)]
    )


# name: (what localStorage.recommendedProducts holds, the entries' texts the page shows)
HOSTILE_RECOMMENDATIONS: dict[str, tuple[str, list[str]]] = {
    "not JSON": ("{not json", []),
    "null": ("null", []),
    "an object": ('{"id": 7, "name": "Keyboard"}', []),
    "a string": (json.dumps(MARKUP), []),
    "junk entries": (json.dumps([None, 1, "Keyboard", [], {}, {"name": 5}, {"id": 7}]), []),
    "wrong-typed fields": (
        json.dumps([{"id": "7", "name": "Typed Wrong", "cost": "lots", "sku": {"a": 1}}]),
        ["Typed Wrong"],
    ),
    "markup": (
        json.dumps([{"id": 7, "name": MARKUP, "cost": 49.99, "sku": "<script>alert(2)</script>"}]),
        [f"{MARKUP} $49.99 SKU: <script>alert(2)</script>"],
    ),
    "a huge name": (
        json.dumps([{"id": 7, "name": "x" * 1_000_000, "cost": 1, "sku": "HUGE"}]),
        [f"{'x' * 119}… $1.00 SKU: HUGE"],
    ),
    "thousands of entries": (
        many_keyboards(5000),
        [f"Keyboard {i} $49.99 SKU: KB-202" for i in range(5)],
    ),
}


def test_hostile_recommendations_never_break_the_page(page: Page) -> None:
    register(page, new_username())
    entries = recommendation_entries(page)
    for case, (stored, shown) in HOSTILE_RECOMMENDATIONS.items():
        set_storage_item(page, "localStorage", RECOMMENDATIONS, stored)
        page.reload()
        expect(page.locator("h1"), case).to_have_text("Echobase Order System")
        expect(page.get_by_role("heading", name="Recommended for you"), case).to_be_visible()
        expect(entries, case).to_have_count(len(shown))
        texts = [" ".join(entries.nth(i).text_content().split()) for i in range(len(shown))]
        assert texts == shown, case
        if not shown:
            expect(page.locator("section.recommendations"), case).to_contain_text(
                "No recommendations yet"
            )
        assert (
            page.locator("section.recommendations img, section.recommendations script").count() == 0
        )
        # The rest of the page still works.
        wait_for_catalogue(page, 7)
        page.select_option(SELECT, "7")
        expect(page.locator(TOTAL), case).to_have_value("49.99")
    assert page.problems.dialogs == []
    assert_clean(page)


# --- the session in the page -------------------------------------------------------------------


def test_register_stays_open_while_signed_in(page: Page) -> None:
    register(page, new_username(), "First Person")
    page.goto("/register")
    expect(page.locator("h1")).to_have_text("Create Account")
    assert page.url.endswith("/register")
    register(page, new_username(), "Second Person")  # signing up again signs in as the new one
    expect(page.locator("body")).to_contain_text("Logged in as: Second Person")
    page.goto("/login")
    page.wait_for_url("**/orders")  # /login still sends a signed-in user on
    assert_clean(page)


def test_a_username_only_session_with_a_valid_cookie_shows_the_order_page(page: Page) -> None:
    username = new_username()
    register(page, username, "Full Name Unused")
    set_storage_item(page, "sessionStorage", "user", json.dumps({"username": username}))
    page.reload()
    expect(page.locator("h1")).to_have_text("Echobase Order System")
    expect(page.locator("body")).to_contain_text(f"Logged in as: {username}")
    wait_for_catalogue(page, 7)  # the cookie let the catalogue load
    page.goto("/my-orders")
    expect(page.locator("body")).to_contain_text("No orders yet")
    assert_clean(page)


# sessionStorage.user values that are nobody: the page sends to /login and stays whole.
NOT_A_USER = ["{not json", "[]", '"str"', '{"username": 5}', "null", '{"fullName": "Ada"}']


def test_hostile_session_users_never_break_the_page(page: Page) -> None:
    register(page, new_username())  # a valid cookie throughout
    for stored in NOT_A_USER:
        set_storage_item(page, "sessionStorage", "user", stored)
        page.goto("/orders")
        page.wait_for_url("**/login")
        expect(page.locator("h1"), stored).to_have_text("Login")
    for user, greeting in (
        ({"username": MARKUP}, MARKUP),
        (
            {"username": "someone", "fullName": XSS_NAME},
            XSS_NAME,
        ),
        ({"username": "someone", "fullName": 5, "id": "x", "email": []}, "someone"),
    ):
        set_storage_item(page, "sessionStorage", "user", json.dumps(user))
        page.goto("/orders")
        expect(page.locator("h1")).to_have_text("Echobase Order System")
        expect(page.locator("header")).to_contain_text(f"Logged in as: {greeting}")
        assert page.locator("header img, header script").count() == 0
    assert page.problems.dialogs == []
    assert_clean(page)


def test_a_401_clears_the_stored_user_and_recommendations(page: Page, catalogue) -> None:
    register(page, new_username())
    set_storage_item(page, "localStorage", RECOMMENDATIONS, as_stored(catalogue[:2]))
    end_session(page)
    page.goto("/orders")
    page.wait_for_url("**/login")
    expect(page.locator("h1")).to_have_text("Login")
    assert session_user(page) is None
    assert storage_item(page, "localStorage", RECOMMENDATIONS) is None
    assert_clean(page)


def test_logout_removes_the_recommendations(page: Page, catalogue) -> None:
    register(page, new_username())
    set_storage_item(page, "localStorage", RECOMMENDATIONS, as_stored(catalogue[:2]))
    page.reload()
    expect(recommendation_entries(page)).to_have_count(2)
    page.click("text=Logout")
    page.wait_for_url("**/login")
    assert storage_item(page, "localStorage", RECOMMENDATIONS) is None
    assert_clean(page)


def test_sign_up_and_sign_in_keep_the_answers_recommendations(
    page: Page, live_system: BlueGreenSystem, catalogue
) -> None:
    """Real recommendations, from the order history through the MCP service: someone's
    order makes products popular; a newcomer's answers carry them, the page stores and shows
    exactly what each answer said, and logout removes it."""
    register(page, new_username())
    place_order(page, catalogue[-1]["id"], 1)
    page.click("text=Logout")
    page.wait_for_url("**/login")
    health = live_system.system.plan("devlocal").mcp_health_url
    deadline = time.monotonic() + 20
    while httpx.get(health, timeout=5).json()["checks"]["ranking"]["products"] == 0:
        assert time.monotonic() < deadline, "the order was never ranked"
        time.sleep(0.2)

    username = new_username()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/register")) as answer:
        register(page, username)
    signed_up = answer.value.json()["recommendedProducts"]
    assert 1 <= len(signed_up) <= 5, signed_up
    popular = signed_up[0]
    assert json.loads(storage_item(page, "localStorage", RECOMMENDATIONS) or "null") == signed_up
    entries = recommendation_entries(page)
    expect(entries).to_have_count(len(signed_up))
    expect(entries.filter(has_text=popular["name"])).to_contain_text(popular["sku"])

    page.click("text=Logout")
    page.wait_for_url("**/login")
    assert storage_item(page, "localStorage", RECOMMENDATIONS) is None
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/login")) as answer:
        login(page, username)
    page.wait_for_url("**/orders")
    assert answer.value.status == 200, answer.value.text()[:300]
    signed_in = answer.value.json()["recommendedProducts"]
    # Not signed_up again necessarily: the ranking moves while the first order is stored.
    assert 1 <= len(signed_in) <= 5, signed_in
    assert json.loads(storage_item(page, "localStorage", RECOMMENDATIONS) or "null") == signed_in
    expect(entries).to_have_count(len(signed_in))
    popular = signed_in[0]
    wait_for_catalogue(page, popular["id"])
    entries.filter(has_text=popular["name"]).click()
    expect(page.locator(SELECT)).to_have_value(str(popular["id"]))
    screenshot(page, "order-page-recommendations-from-the-service")
    assert_clean(page)
