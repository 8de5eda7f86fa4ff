"""The load balancer as an attacker meets it, on a deployed system: HTTPS only, old TLS
refused, security headers and no version banner on every kind of answer, observability paths
closed without credentials, and every listening socket of the system on loopback."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from pathlib import Path

import httpx
import pytest

from durable_support import children
from echobase.platform.durable.credentials import self_signed_certificate
from security.live_support import register

pytestmark = pytest.mark.timeout(600)
LEGACY = "DEFAULT:@SECLEVEL=0"  # lets this client offer TLS 1.0/1.1 at all


def _tls_version(version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(LEGACY)
    with warnings.catch_warnings():  # setting TLS 1.0/1.1 is deprecated, which is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    return context


def _name(version: ssl.TLSVersion) -> str:
    return version.name.replace("_", ".")  # as SSLSocket.version() spells it


def _handshake(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return str(tls.version())


def _legacy_server(tmp_path: Path) -> socket.socket:
    """A TLS server that accepts 1.0 and 1.1: proof that this client can really offer them,
    so that nginx refusing them is nginx's doing."""
    cert, key = self_signed_certificate(["127.0.0.1"])
    (tmp_path / "c.pem").write_text(cert)
    (tmp_path / "k.pem").write_text(key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    server.set_ciphers(LEGACY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.TLSv1
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            server.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_1_0_and_1_1_are_refused(live, tmp_path, version):
    listener = _legacy_server(tmp_path)
    try:
        assert _handshake(listener.getsockname()[1], _tls_version(version)) == _name(version)
    finally:
        listener.close()
    with pytest.raises(ssl.SSLError):
        _handshake(live.port("lb_https"), _tls_version(version))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_served(live, version):
    assert _handshake(live.port("lb_https"), _tls_version(version)) == _name(version)


def test_plain_http_only_redirects_to_https(live):
    url = f"http://127.0.0.1:{live.port('lb_http')}"
    for method, path in (("GET", "/"), ("GET", "/api/v1/products?x=1"), ("POST", "/api/v1/orders")):
        r = httpx.request(method, url + path, follow_redirects=False, timeout=10)
        assert r.status_code == 301, (method, path, r.text)
        assert r.headers["location"] == f"{live.lb_url}{path}"
        assert "echobase_token" not in r.text
        _assert_no_banner(r)
    # The HTTPS port does not speak plain HTTP either.
    r = httpx.get(f"http://127.0.0.1:{live.port('lb_https')}/", timeout=10)
    assert r.status_code == 400
    _assert_no_banner(r)


def _assert_no_banner(r: httpx.Response) -> None:
    assert r.headers.get("server", "nginx") == "nginx", r.headers  # server_tokens off
    assert "x-powered-by" not in r.headers
    assert "nginx/" not in r.text and "uvicorn" not in r.text.lower()


def _assert_security_headers(r: httpx.Response, label: str) -> None:
    h = r.headers
    assert h.get_list("strict-transport-security") == ["max-age=31536000"], (label, h)
    assert h.get_list("x-content-type-options") == ["nosniff"], (label, h)
    assert h.get_list("x-frame-options") == ["DENY"], (label, h)
    _assert_no_banner(r)


def test_every_kind_of_answer_has_the_security_headers_and_no_banner(live):
    with live.lb() as lb:
        answers = {
            "app page": lb.get("/"),
            "app route": lb.get("/orders"),
            "api 401": lb.get("/api/v1/products"),
            "api 404": lb.get("/api/v1/nowhere"),
            "api 403": lb.post("/api/v1/auth/logout", headers={"Origin": "https://evil.test"}),
            "health": lb.get("/health"),
            "metrics 404": lb.get("/metrics"),
            "prometheus 401": lb.get("/prometheus/"),
            "nginx 413": lb.post("/api/v1/auth/login", content=b"x" * (3 * 1024 * 1024)),
            "nginx 400": lb.get("/", headers={"Host": ""}),
        }
    for label, r in answers.items():
        _assert_security_headers(r, label)
    assert answers["nginx 413"].status_code == 413
    assert answers["nginx 400"].status_code == 400
    page = answers["app page"]
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    api = answers["api 401"]
    assert api.headers["content-type"].startswith("application/json")
    assert api.headers["content-security-policy"].startswith("default-src 'none'")


OBSERVABILITY = [
    "/prometheus/",
    "/prometheus/graph",
    "/prometheus/metrics",
    "/prometheus/api/v1/query?query=up",
    "/prometheus/api/v1/targets",
    "/prometheus/api/v1/status/config",
    "/prometheus/federate?match[]=up",
    "/prometheus/-/ready",
    "/prometheus/api/v1/alerts",
    "/prometheus/api/v1/query_exemplars?query=up",
    "/prometheus/consoles/echobase.html",
    "/prometheus/classic/static/js/prom_console.js",
    "/%70rometheus/api/v1/targets",
    "/assets/../prometheus/api/v1/targets",
]
# Refused: 401 from basic auth, or 429 once guessing outruns nginx's throttle for it.
REFUSED = {401, 429}


def _assert_nothing_from_prometheus(r: httpx.Response, label: str) -> None:
    assert '"activeTargets"' not in r.text and "scrape_configs" not in r.text, label
    assert "prometheus_build_info" not in r.text and '"resultType"' not in r.text, label


def test_prometheus_refuses_without_credentials(live):
    with live.lb() as lb:
        for path in OBSERVABILITY:
            for auth in (None, ("prometheus", "wrong-password"), ("", "")):
                r = lb.get(path, auth=auth)
                assert r.status_code in REFUSED, (path, auth, r.status_code)
                _assert_nothing_from_prometheus(r, path)
        for path in ("/prometheus/-/reload", "/prometheus/-/quit", "/prometheus/api/v1/write"):
            assert lb.post(path).status_code in REFUSED, path
        r = lb.put("/prometheus/api/v1/admin/tsdb/delete_series?match[]=up")
        assert r.status_code in REFUSED
        # Paths are case-sensitive: another case is not Prometheus but the app's page.
        other = lb.get("/PROMETHEUS/api/v1/targets")
        assert other.status_code == 200 and other.headers["content-type"].startswith("text/html")
        _assert_nothing_from_prometheus(other, "upper case")


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "/api/v1/metrics", "/api/metrics"])
def test_service_metrics_are_not_served_in_production(live, path):
    with live.lb() as lb:
        r = lb.get(path)
    # 404, or the app's page for a path the SPA owns: never the exposition format.
    assert r.status_code == 404 or r.headers["content-type"].startswith("text/html"), path
    assert "echobase_orders_accepted_total" not in r.text
    assert "process_cpu_seconds_total" not in r.text
    assert "# TYPE" not in r.text


def _listening_inodes() -> dict[str, str]:
    """Socket inode -> local address:port of every listening TCP socket (v4 and v6)."""
    found = {}
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            address = fields[1].split(":")[0]
            found[fields[9]] = f"v{family}:{address}"
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


LOOPBACK = {"v4:0100007F", "v6:00000000000000000000000001000000"}


def test_every_listening_socket_of_the_system_is_on_loopback(live):
    root = live.system.supervisord_pid()
    assert root is not None
    pids, todo = set(), [root]
    while todo:
        pid = todo.pop()
        pids.add(pid)
        todo += [child for child in children(pid) if child not in pids]
    listening = _listening_inodes()
    seen = {}
    for pid in pids:
        for inode in _socket_inodes(pid) & set(listening):
            seen[pid] = listening[inode]
            assert listening[inode] in LOOPBACK, (pid, listening[inode])
    assert len(set(seen)) >= 6, seen  # nginx, MariaDB, the store, Prometheus, the colour


def test_state_changes_from_another_origin_are_refused_through_the_lb(live):
    """The origin rule as deployed (the LB's own URL is the one allowed), for a signed-in
    user whose browser a foreign page makes send the session cookie along."""
    with live.lb() as lb:
        register(lb, live.origin, "csrf")
        assert lb.cookies.get("echobase_token")
        order = {"productId": 1, "quantity": 1}
        foreign = [
            "https://evil.test",
            "null",
            f"{live.lb_url}, https://evil.test",
            f"https://evil.test,{live.lb_url}",
            live.lb_url.replace("https://", "http://"),
            f"{live.lb_url}.evil.test",
        ]
        for origin in foreign:
            r = lb.post("/api/v1/orders", json=order, headers={"Origin": origin})
            assert r.status_code == 403, (origin, r.status_code, r.text)
            assert r.json() == {"error": "Forbidden", "message": "Origin validation failed"}
        r = lb.post("/api/v1/orders", json=order, headers={"Referer": "https://evil.test/x"})
        assert r.status_code == 403
        assert lb.post("/api/v1/orders", json=order, headers=live.origin).status_code == 201
