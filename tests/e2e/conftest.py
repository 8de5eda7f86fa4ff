"""A real browser (Debian's Chromium, headless, driven by Playwright) against a whole system:
the durable layer and a release of this working tree, live behind the load balancer over
HTTPS, in a temporary state directory on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bluegreen_support import BlueGreenSystem, deployed, lb_client
from browser_support import CHROMIUM, CHROMIUM_ARGS, PageProblems


# Package scope: torn down once the browser tests are done, before the rest of the suite
# (Playwright's sync API keeps an event loop in this thread while it runs).
@pytest.fixture(scope="package")
def live_system() -> Iterator[BlueGreenSystem]:
    # Popular products re-ranked every second: an order shows in recommendations at once.
    with deployed(services={"ECHOBASE_POPULAR_REFRESH_SECONDS": "1"}) as bg:
        yield bg


@pytest.fixture(scope="package")
def lb_url(live_system: BlueGreenSystem) -> str:
    return live_system.system.plan("devlocal").lb_url


@pytest.fixture(scope="package")
def lb_http(live_system: BlueGreenSystem) -> Iterator[httpx.Client]:
    with lb_client(live_system) as client:
        yield client


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, lb_url: str):
    """A fresh browser context (no cookies, no storage) on the LB's origin."""
    context = browser.new_context(
        base_url=lb_url, ignore_https_errors=True, viewport={"width": 1100, "height": 760}
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems = PageProblems()
    problems.watch(page)
    page.problems = problems
    try:
        yield page
    finally:
        context.close()
