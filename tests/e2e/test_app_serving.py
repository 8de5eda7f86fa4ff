"""How the load balancer serves a colour's browser app: the release's own files, the SPA
fallback, cache headers by kind of file, and a Content-Security-Policy with no inline code."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from bluegreen_support import BlueGreenSystem
from echobase.platform import frontend
from echobase.platform.release import load_release
from echobase.platform.render.nginx import ASSETS_CACHE, CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.timeout(600)


def live_release(bg: BlueGreenSystem, lb_http: httpx.Client):
    meta = lb_http.get("/api/v1/meta").json()
    return meta["colour"], load_release(bg.system.home, meta["release"])


def assets_of(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/assets/[^"]+)"', html)


def test_the_page_is_the_live_release_index(live_system, lb_http) -> None:
    colour, release = live_release(live_system, lb_http)
    assert release.bundle is not None and release.frontend is not None
    page = lb_http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.content == (release.bundle / "index.html").read_bytes()
    assert page.headers["x-served-by"] == colour
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["strict-transport-security"].startswith("max-age=")
    assert page.headers["x-frame-options"] == "DENY"
    assert "nginx/" not in page.headers.get("server", "")
    # the policy leaves nothing inline to allow: every script is a file
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("path", ["/login", "/orders", "/my-orders", "/a/deep/unknown/path"])
def test_client_routes_fall_back_to_index(live_system, lb_http, path: str) -> None:
    _, release = live_release(live_system, lb_http)
    page = lb_http.get(path)
    assert page.status_code == 200
    assert page.content == (release.bundle / "index.html").read_bytes()
    assert page.headers["cache-control"] == "no-cache"


def test_hashed_assets_are_cached_for_good(live_system, lb_http) -> None:
    _, release = live_release(live_system, lb_http)
    assets = assets_of(lb_http.get("/").text)
    kinds = {a.rsplit(".", 1)[1] for a in assets}
    assert {"js", "css"} <= kinds, assets
    for asset in assets:
        answer = lb_http.get(asset)
        assert answer.status_code == 200, asset
        assert answer.headers["cache-control"] == ASSETS_CACHE
        assert answer.content == (release.bundle / asset.lstrip("/")).read_bytes()
        expected = "javascript" if asset.endswith(".js") else "text/css"
        assert expected in answer.headers["content-type"]
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_a_missing_asset_is_a_404_that_is_not_cached(lb_http) -> None:
    answer = lb_http.get("/assets/index-00000000.js")
    assert answer.status_code == 404
    assert (
        "cache-control" not in answer.headers or "immutable" not in answer.headers["cache-control"]
    )


def test_the_api_is_still_the_gateway(live_system, lb_http) -> None:
    colour, release = live_release(live_system, lb_http)
    meta = lb_http.get("/api/v1/meta")
    assert meta.headers["content-type"] == "application/json"
    assert meta.json() == {"colour": colour, "release": release.id, "version": release.version}
    # The gateway's own, stricter policy for JSON stays on its answers.
    assert meta.headers["content-security-policy"].startswith("default-src 'none'")
    assert lb_http.get("/health").json()["colour"] == colour
    assert lb_http.get("/api/v1/nope").status_code == 404
    assert lb_http.get("/api/v1/orders").status_code == 401
    assert lb_http.get("/metrics").status_code == 404


def test_each_colour_link_points_at_its_release(live_system, lb_http) -> None:
    colour, release = live_release(live_system, lb_http)
    assert frontend.published(live_system.system.home, colour) == release.bundle.resolve()
    direct = live_system.system.plan("devlocal").stack.ports.of("devlocal")[f"lb_{colour}"]
    page = httpx.get(f"http://127.0.0.1:{direct}/orders", timeout=10)
    assert page.status_code == 200
    assert page.headers["x-served-by"] == colour
    assert page.content == (release.bundle / "index.html").read_bytes()


def test_a_colour_without_an_app_answers_503(live_system, lb_http) -> None:
    colour, _ = live_release(live_system, lb_http)
    idle = "blue" if colour == "green" else "green"
    assert frontend.published(live_system.system.home, idle) is None  # never deployed yet
    port = live_system.system.plan("devlocal").stack.ports.of("devlocal")[f"lb_{idle}"]
    page = httpx.get(f"http://127.0.0.1:{port}/orders", timeout=10)
    assert page.status_code == 503
    assert page.json() == {"error": f"{idle} has no app", "colour": idle}
    assert page.headers["cache-control"] == "no-store"


def test_status_reports_the_colours_app(live_system, lb_http) -> None:
    colour, release = live_release(live_system, lb_http)
    status = json.loads(live_system.system.ok("status", "--json").stdout)
    entry = next(c for c in status["colours"] if c["colour"] == colour)
    app = next(s for s in entry["services"] if s["role"] == "frontend")
    assert (app["state"], app["healthy"]) == ("PUBLISHED", True)
    assert entry["healthy"] is True
    direct = live_system.system.plan("devlocal").stack.ports.of("devlocal")[f"lb_{colour}"]
    assert app["port"] == direct
    # A link pointing elsewhere is reported, and makes the colour unhealthy for a switch.
    frontend.publish(live_system.system.home, colour, None)
    try:
        status = json.loads(live_system.system.ok("status", "--json").stdout)
        entry = next(c for c in status["colours"] if c["colour"] == colour)
        app = next(s for s in entry["services"] if s["role"] == "frontend")
        assert (app["state"], app["healthy"], entry["healthy"]) == ("ABSENT", False, False)
        assert lb_http.get("/").status_code == 503
    finally:
        frontend.publish(live_system.system.home, colour, release.bundle)
    assert lb_http.get("/").status_code == 200
