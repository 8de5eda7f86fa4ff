"""The load balancer for real: Debian's nginx, a self-signed certificate, and tiny HTTP servers
standing in for the blue and green gateways and for Prometheus."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from echobase.platform.bluegreen import event_metrics, history
from echobase.platform.durable.credentials import self_signed_certificate
from echobase.platform.durable.nginx import (
    LoadBalancerError,
    apply_config,
    apply_text,
    current_active,
    htpasswd_line,
    install_certificate,
    install_htpasswd,
    install_routing,
    prepare,
    set_routing,
)
from echobase.platform.durable.prometheus import write_targets
from echobase.platform.monitoring.settings import MonitoringSettings
from echobase.platform.render import prometheus, routing
from echobase.platform.render.durable import platform_metrics_target
from echobase.platform.render.nginx import (
    LIVE_COLOUR_METRIC,
    PLATFORM_METRICS_PATH,
    PROMETHEUS_BURST,
    ROUTING_PATH,
    TRAFFIC_WEIGHT_METRIC,
    LoadBalancerSpec,
    render_config,
    server_command,
)
from echobase.platform.render.prometheus import PrometheusSpec
from echobase.platform.runtime.machine import nginx_worker_user
from echobase.platform.runtime.processes import spawn, terminate, wait_http

SECURITY_HEADERS = {
    "strict-transport-security": "max-age=31536000",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
PROM_USER = "prometheus-admin"


# --- stand-ins for the gateways and Prometheus ------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # so nginx can keep connections to us alive
    server: _StandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # The real gateway sends its own security headers; nginx's must win, once.
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.send_header("X-Served-By", "spoofed-by-upstream")
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, body: bytes = b"") -> None:
        name = self.server.name
        if self.path.endswith("/missing"):
            self._answer(404, {"detail": "Not Found", "from": name})
            return
        if self.path.endswith("/overloaded"):
            self._answer(503, {"detail": "busy", "from": name})
            return
        self._answer(
            200,
            {
                "colour": name,
                "path": self.path,
                "version": self.request_version,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_length": len(body),
            },
        )

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle(self.rfile.read(int(self.headers.get("Content-Length", "0"))))


class _StandIn(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)


class Upstream:
    """A colour's gateway that can go down (including its kept-alive connections) and return."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self._server: _StandIn | None = None

    def start(self) -> None:
        self._server = _StandIn(self.name, self.port)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for conn in list(server.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# --- the load balancer under test --------------------------------------------------------------


@dataclasses.dataclass
class LB:
    spec: LoadBalancerSpec
    process: subprocess.Popen[bytes]
    client: httpx.Client
    password: str
    upstreams: dict[str, Upstream]
    prometheus: Upstream
    reloads: int = 0

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.spec.https_port}"

    def direct(self, colour: str) -> str:
        return f"http://127.0.0.1:{self.spec.direct_ports[colour]}"

    def reload(self) -> None:
        self.reloads += 1
        os.kill(self.process.pid, signal.SIGHUP)

    def switch(self, colour: str | None) -> None:
        """The routing state only: nginx reads it on the next request, nothing reloads."""
        reloads = self.reloads
        set_routing(self.spec, colour)
        assert current_active(self.spec) == colour
        assert self._active_env() == f"{colour or 'none'}\n"
        assert self.reloads == reloads

    def _active_env(self) -> str | None:
        try:
            return self.client.get(self.https + "/.active-env").text
        except httpx.RemoteProtocolError:
            # An old worker closes its idle keep-alive connections when it hands over; a
            # request racing that close sees a disconnect and, being idempotent, is retried.
            return None


def _distinct_free_ports(count: int) -> list[int]:
    # Held open together so that no two of them can be the same port.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def lb() -> Iterator[LB]:
    home = Path(tempfile.mkdtemp(prefix="eb-", dir="/tmp"))
    ports = _distinct_free_ports(7)
    upstreams = {"blue": Upstream("blue", ports[0]), "green": Upstream("green", ports[1])}
    prometheus = Upstream("prometheus", ports[2])
    spec = LoadBalancerSpec(
        env="ci",
        home=home,
        host="127.0.0.1",
        http_port=ports[3],
        https_port=ports[4],
        direct_ports={"blue": ports[5], "green": ports[6]},
        upstreams={colour: up.port for colour, up in upstreams.items()},
        prometheus_port=prometheus.port,
        cert_file=home / "tls.crt",
        key_file=home / "tls.key",
        htpasswd_file=home / "htpasswd",
        worker_user=nginx_worker_user(),
    )
    password = secrets.token_urlsafe(24)
    process: subprocess.Popen[bytes] | None = None
    client: httpx.Client | None = None
    try:
        for up in (*upstreams.values(), prometheus):
            up.start()
        prepare(spec)
        cert_pem, key_pem = self_signed_certificate(["127.0.0.1"])
        install_certificate(spec, cert_pem, key_pem)
        install_htpasswd(spec, htpasswd_line(PROM_USER, password))
        install_routing(spec, routing.RoutingState(None))
        apply_config(spec, reload=lambda: None)  # nothing runs yet: the first start reads it
        process = spawn(server_command(spec), home / "logs" / "stdout.log")
        try:
            wait_http(f"http://127.0.0.1:{spec.direct_ports['blue']}/health", 15, process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(
                f"nginx did not start: {spec.error_log.read_text()[-2000:]}"
            ) from exc
        tls = ssl.create_default_context(cadata=cert_pem)
        client = httpx.Client(verify=tls, timeout=10, follow_redirects=False)
        yield LB(spec, process, client, password, upstreams, prometheus)
    finally:
        if client is not None:
            client.close()
        if process is not None:
            terminate(process)
        for up in (*upstreams.values(), prometheus):
            up.stop()
        shutil.rmtree(home, ignore_errors=True)


def _assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], (name, response.headers)
    assert "nginx/" not in response.headers.get("server", "")


# --- the scenarios -----------------------------------------------------------------------------


def test_no_colour_live_at_first(lb: LB) -> None:
    assert current_active(lb.spec) is None
    response = lb.client.get(lb.https + "/.active-env")
    assert response.status_code == 200
    assert response.text == "none\n"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["cache-control"] == "no-store"
    for path in ("/", "/api/x", "/health"):
        response = lb.client.get(lb.https + path)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": "no colour is live"}
        assert response.headers["x-served-by"] == "none"
        _assert_security_headers(response)


def test_http_redirects_to_https_keeping_host_path_and_query(lb: LB) -> None:
    url = f"http://127.0.0.1:{lb.spec.http_port}/api/orders?page=2&size=10"
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 301
    expected = f"https://127.0.0.1:{lb.spec.https_port}/api/orders?page=2&size=10"
    assert response.headers["location"] == expected
    named = httpx.get(url, headers={"Host": "shop.example:8080"})
    assert named.headers["location"].startswith(f"https://shop.example:{lb.spec.https_port}/api/")


def test_switching_colours_moves_live_traffic(lb: LB) -> None:
    for colour in ("blue", "green", "blue"):
        lb.switch(colour)
        assert routing.parse_state(lb.spec.routing.state.read_text()).live == colour
        response = lb.client.get(lb.https + "/api/x?q=1")
        assert response.status_code == 200
        assert response.headers.get_list("x-served-by") == [colour]
        seen = response.json()
        assert seen["colour"] == colour
        assert seen["path"] == "/api/x?q=1"
        assert seen["version"] == "HTTP/1.1"  # upstream keepalive needs 1.1
        assert seen["headers"]["x-forwarded-proto"] == "https"
        assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert seen["headers"]["host"] == "127.0.0.1"
        _assert_security_headers(response)
        assert lb.client.get(lb.https + "/health").json()["colour"] == colour


def test_direct_ports_reach_each_colour_whichever_is_live(lb: LB) -> None:
    for live in ("green", "blue"):
        lb.switch(live)
        for colour in ("blue", "green"):
            response = httpx.get(lb.direct(colour) + "/api/ping")
            assert response.status_code == 200
            assert response.json()["colour"] == colour
            assert response.headers.get_list("x-served-by") == [colour]
            assert response.json()["headers"]["x-forwarded-proto"] == "http"


def test_a_colour_that_is_down_answers_json_not_html(lb: LB) -> None:
    lb.switch("green")
    green = lb.upstreams["green"]
    green.stop()
    try:
        response = httpx.get(lb.direct("green") + "/api/ping")
        assert response.status_code in (502, 503)
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": "green is unavailable", "colour": "green"}
        assert response.headers["x-served-by"] == "green"

        live = lb.client.get(lb.https + "/api/orders")
        assert live.status_code == 503
        assert live.json() == {"error": "green is unavailable", "colour": "green"}
        assert live.headers["x-served-by"] == "green"
        _assert_security_headers(live)

        # The other colour is untouched.
        assert httpx.get(lb.direct("blue") + "/api/ping").json()["colour"] == "blue"
    finally:
        green.start()
    assert lb.client.get(lb.https + "/api/orders").json()["colour"] == "green"


def test_the_apis_own_errors_pass_through_untouched(lb: LB) -> None:
    lb.switch("blue")
    for base in (lb.https, lb.direct("blue")):
        missing = (lb.client if base == lb.https else httpx).get(base + "/api/missing")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "Not Found", "from": "blue"}
        overloaded = (lb.client if base == lb.https else httpx).get(base + "/api/overloaded")
        assert overloaded.status_code == 503
        assert overloaded.json() == {"detail": "busy", "from": "blue"}


def test_prometheus_needs_the_right_credentials(lb: LB) -> None:
    url = lb.https + "/prometheus/api/v1/query?query=up"
    anonymous = lb.client.get(url)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    _assert_security_headers(anonymous)
    assert lb.client.get(url, auth=(PROM_USER, "wrong")).status_code == 401
    assert lb.client.get(url, auth=("nobody-else", lb.password)).status_code == 401

    allowed = lb.client.get(url, auth=(PROM_USER, lb.password))
    assert allowed.status_code == 200
    seen = allowed.json()
    assert seen["colour"] == "prometheus"
    assert seen["path"] == "/prometheus/api/v1/query?query=up"  # the route prefix survives
    assert "authorization" not in seen["headers"]
    _assert_security_headers(allowed)


def test_prometheus_down_is_json_too(lb: LB) -> None:
    lb.prometheus.stop()
    try:
        response = lb.client.get(lb.https + "/prometheus/graph", auth=(PROM_USER, lb.password))
        assert response.status_code == 503
        assert response.json() == {"error": "prometheus is unavailable"}
        _assert_security_headers(response)
    finally:
        lb.prometheus.start()


def test_bodies_up_to_the_limit_go_through_the_temp_dirs(lb: LB) -> None:
    lb.switch("blue")
    big = b"x" * (1536 * 1024)  # over nginx's in-memory buffer: written to client_body_temp
    response = lb.client.post(lb.https + "/api/orders", content=big)
    assert response.status_code == 200, response.text
    assert response.json()["body_length"] == len(big)
    too_big = lb.client.post(lb.https + "/api/orders", content=b"x" * (3 * 1024 * 1024))
    assert too_big.status_code == 413
    _assert_security_headers(too_big)


def test_a_broken_config_is_never_applied(lb: LB) -> None:
    lb.switch("blue")
    before = lb.spec.config_path.read_bytes()
    reloads = lb.reloads
    broken = render_config(lb.spec)
    broken += "echobase_no_such_directive on;\n"
    with pytest.raises(LoadBalancerError, match='unknown directive "echobase_no_such_directive"'):
        apply_text(lb.spec, broken, lb.reload)
    assert lb.spec.config_path.read_bytes() == before
    assert not lb.spec.new_config_path.exists()
    assert lb.reloads == reloads
    assert current_active(lb.spec) == "blue"
    response = lb.client.get(lb.https + "/api/x")
    assert response.status_code == 200 and response.json()["colour"] == "blue"


def test_a_broken_or_missing_routing_state_fails_closed_to_the_last_good_one(lb: LB) -> None:
    lb.switch("green")
    state = lb.spec.routing.state
    for broken in ('{"live": "purple"}', "not json", ""):
        state.write_text(broken)
        assert lb._active_env() == "green\n"
        assert lb.client.get(lb.https + "/api/x").json()["colour"] == "green"
    state.unlink()
    assert lb._active_env() == "green\n"
    assert current_active(lb.spec) == "green"
    # Neither file: no colour is live, never a guessed one.
    lb.spec.routing.last_good.unlink()
    assert lb._active_env() == "none\n"
    assert lb.client.get(lb.https + "/api/x").status_code == 503
    lb.switch("blue")  # writes both again
    assert lb.client.get(lb.https + "/api/x").json()["colour"] == "blue"


def test_applying_the_same_config_does_not_reload(lb: LB) -> None:
    lb.switch("green")
    reloads = lb.reloads
    stat_before = lb.spec.config_path.stat()
    apply_config(lb.spec, lb.reload)
    apply_text(lb.spec, render_config(lb.spec), lb.reload)
    assert lb.reloads == reloads
    assert lb.spec.config_path.stat().st_mtime_ns == stat_before.st_mtime_ns


def test_files_and_workers_belong_to_the_state_directorys_owner(lb: LB) -> None:
    # Workers run as the owner even when the master is root: a www-data worker could not pass
    # through a 0700 home such as /root to the app bundles (issue 16).
    spec = lb.spec
    me = os.geteuid()
    for path in (spec.config_path, spec.cert_file, spec.key_file, spec.htpasswd_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert path.stat().st_uid == me, path
    for path in (spec.home, spec.temp_dir("client_body")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
        assert path.stat().st_uid == me, path
    assert _worker_uids(lb.process.pid) == [me, me]  # worker_processes 2


def _worker_uids(master: int) -> list[int]:
    uids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        # Old workers from a reload may still be draining: count only the current ones.
        if (
            fields.get("PPid", "").strip() == str(master)
            and "shutting down" not in (entry / "cmdline").read_text()
        ):
            uids.append(int(fields["Uid"].split()[0]))
    return sorted(uids)


def test_password_guessing_on_prometheus_is_throttled(lb: LB) -> None:
    """Each guess costs the worker a bcrypt; past the burst, nginx refuses before hashing.

    nginx counts per client address, so the guesses come from an address of their own
    (all of 127/8 is loopback) and start with the whole burst whatever earlier tests sent.
    Then they come in parallel until refused: one after another they would arrive no
    faster than the workers hash, which on a busy machine can be under the 10 per second
    that nginx lets through."""
    url = lb.https + "/prometheus/api/v1/query"
    tls = ssl.create_default_context(cafile=str(lb.spec.cert_file))
    transport = httpx.HTTPTransport(local_address="127.0.0.42", verify=tls)
    statuses: list[int] = []
    with httpx.Client(transport=transport, timeout=30) as guesser:

        def guess(_: int = 0) -> int:
            return guesser.get(url, auth=(PROM_USER, "guess")).status_code

        statuses += [guess() for _ in range(PROMETHEUS_BURST)]
        assert statuses == [401] * PROMETHEUS_BURST, "the burst was not let through"
        with ThreadPoolExecutor(max_workers=8) as pool:
            deadline = time.monotonic() + 60
            while 429 not in statuses:
                assert time.monotonic() < deadline, f"no 429 after {len(statuses)} guesses"
                statuses += pool.map(guess, range(16))
    assert set(statuses) == {401, 429}


# --- the platform's metrics ----------------------------------------------------------------------


def _platform_samples(lb: LB) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = lb.client.get(lb.https + PLATFORM_METRICS_PATH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["cache-control"] == "no-store"
    _assert_security_headers(response)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _live(colour: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (LIVE_COLOUR_METRIC, (("colour", colour),))


def _weight(colour: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (TRAFFIC_WEIGHT_METRIC, (("colour", colour),))


def _gauges(live: str | None, canary: routing.Canary | None = None) -> dict[Any, float]:
    state = routing.RoutingState(live, canary)
    gauges: dict[Any, float] = {_live(c): float(c == state.active) for c in routing.COLOURS}
    gauges.update({_weight(c): share for c, share in state.weights().items()})
    return gauges


def test_platform_metrics_follow_the_live_record_and_the_counters_file(
    lb: LB, tmp_path: Path
) -> None:
    lb.spec.platform_events_file.unlink(missing_ok=True)
    lb.switch("blue")
    # No counters file yet: the gauges alone, no error page in the exposition.
    assert _platform_samples(lb) == _gauges("blue")
    history.record(tmp_path, "deploy", None, "green", "r1", "ok", 1.0)
    history.record(tmp_path, "switch", "green", "blue", "r2", "ok", 1.0)
    event_metrics.publish(tmp_path, lb.spec.platform_events_file)
    lb.switch("green")
    assert _platform_samples(lb) == {
        **_gauges("green"),
        ("echobase_deploys_total", (("colour", "green"), ("release", "r1"))): 1,
        ("echobase_switches_total", (("colour", "blue"), ("release", "r2"))): 1,
    }
    canary = routing.Canary("blue", 70, seed=3)
    set_routing(lb.spec, routing.RoutingState("green", canary))
    # The majority colour is "live"; both colours' shares of users.
    assert _platform_samples(lb).items() >= _gauges("green", canary).items()
    assert _platform_samples(lb)[_live("blue")] == 1
    lb.switch(None)
    samples = _platform_samples(lb)
    assert (samples[_live("blue")], samples[_live("green")]) == (0, 0)
    assert (samples[_weight("blue")], samples[_weight("green")]) == (0, 0)
    # The file itself is reachable only through the metrics page.
    assert lb.client.get(lb.https + "/.platform-events").status_code == 404


def test_prometheus_scrapes_the_platform_metrics_trusting_the_lbs_certificate(
    lb: LB, tmp_path: Path
) -> None:
    lb.switch("blue")
    port = _distinct_free_ports(1)[0]
    spec = PrometheusSpec(
        env="ci",
        home=tmp_path / "prometheus",
        host="127.0.0.1",
        port=port,
        external_url=f"http://127.0.0.1:{port}/prometheus/",
        settings=MonitoringSettings(scrape_interval_seconds=1),
        # What the scrape job needs for a target on the LB's HTTPS port: its certificate.
        tls_ca_file=lb.spec.cert_file,
    )
    spec.home.mkdir()
    spec.config_file.write_text(prometheus.render_config(spec))
    write_targets(spec, "durable", [platform_metrics_target(lb.spec)])
    process = spawn(prometheus.server_command(spec), tmp_path / "prometheus.log")
    try:
        wait_http(spec.ready_url, 60, process, ok=200)
        api = f"http://127.0.0.1:{port}/prometheus/api/v1"

        def live_colour_scraped() -> bool:
            query = {"query": f"{LIVE_COLOUR_METRIC} == 1"}
            result = httpx.get(api + "/query", params=query, timeout=5).json()["data"]["result"]
            return [r["metric"]["colour"] for r in result] == ["blue"]

        deadline = time.monotonic() + 30
        while not live_colour_scraped():
            targets = httpx.get(api + "/targets", timeout=5).json()["data"]["activeTargets"]
            assert time.monotonic() < deadline, targets
            time.sleep(0.2)
        (target,) = httpx.get(api + "/targets", timeout=5).json()["data"]["activeTargets"]
        assert target["health"] == "up" and target["scrapeUrl"].startswith("https://")
        assert target["labels"]["service"] == "nginx"
    finally:
        terminate(process)


# --- canary ------------------------------------------------------------------------------------


def _bucket(response: httpx.Response) -> int | None:
    """The bucket nginx gave a user without one (its Set-Cookie), if it gave one."""
    cookies = [c for c in response.headers.get_list("set-cookie") if c.startswith("echobase_")]
    if not cookies:
        return None
    assert len(cookies) == 1, cookies
    name_value, *attributes = [part.strip() for part in cookies[0].split(";")]
    assert name_value.split("=")[0] == routing.BUCKET_COOKIE
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} <= set(attributes)
    return int(name_value.split("=")[1])


def test_a_canary_sends_its_share_of_users_and_each_user_stays_on_one_colour(lb: LB) -> None:
    lb.switch("blue")
    assert _bucket(lb.client.get(lb.https + "/api/x")) is None  # no canary: no cookie
    canary = routing.Canary("green", 20, seed=37)
    state = routing.RoutingState("blue", canary)
    reloads = lb.reloads
    set_routing(lb.spec, state)
    served: dict[int, str] = {}
    users_on_green = 0
    for _ in range(400):  # new users: no cookie, no token
        lb.client.cookies.clear()
        response = lb.client.get(lb.https + "/api/x")
        bucket = _bucket(response)
        assert bucket is not None and 0 <= bucket < 100
        colour = response.headers["x-served-by"]
        # The script and the Python model agree on every user's colour.
        assert colour == state.route(bucket) == response.json()["colour"]
        served[bucket] = colour
        users_on_green += colour == "green"
    assert sum(state.route(b) == "green" for b in range(100)) == 20  # the canary's buckets
    # 400 users at random: about 20 % on the canary (binomial: 80 +- 8; 5 sigma either side).
    assert 40 <= users_on_green <= 120, users_on_green
    assert len(served) > 90  # the buckets are spread
    # A user with a bucket stays put, for the app's pages, its files and its API calls alike.
    lb.client.cookies.clear()
    for bucket, colour in list(served.items())[:20]:
        cookie = {"Cookie": f"{routing.BUCKET_COOKIE}={bucket}"}
        for path in ("/", "/api/orders", "/health", "/api/x?again=1"):
            response = lb.client.get(lb.https + path, headers=cookie)
            assert response.headers["x-served-by"] == colour, (bucket, path)
            assert _bucket(response) is None  # already has one
    # An API client that keeps no cookies is kept on one colour by its token.
    for token in ("a", "b", "c", "d", "e", "f"):
        headers = {"Authorization": f"Bearer token-{token}"}
        colours = set()
        for _ in range(5):
            lb.client.cookies.clear()
            colours.add(lb.client.get(lb.https + "/api/x", headers=headers).headers["x-served-by"])
        assert len(colours) == 1, token
    assert lb.reloads == reloads  # weights change like a switch: without a reload


def test_raising_a_canarys_share_only_adds_users_and_the_majority_is_active(lb: LB) -> None:
    lb.switch("blue")
    on_green: dict[int, set[int]] = {}
    for percent in (10, 50, 60, 99):
        state = routing.RoutingState("blue", routing.Canary("green", percent, seed=81))
        set_routing(lb.spec, state)
        on_green[percent] = {
            bucket
            for bucket in range(100)
            if lb.client.get(
                lb.https + "/api/x", headers={"Cookie": f"{routing.BUCKET_COOKIE}={bucket}"}
            ).headers["x-served-by"]
            == "green"
        }
        assert len(on_green[percent]) == percent
        majority = "green" if percent > 50 else "blue"
        assert lb._active_env() == f"{majority}\n"
        answer = lb.client.get(lb.https + ROUTING_PATH)
        assert answer.headers["cache-control"] == "no-store"
        assert answer.json() == {
            "active": majority,
            "live": "blue",
            "weights": {"blue": 100 - percent, "green": percent},
            "canary": {"colour": "green", "percent": percent},
        }
        assert routing.parse_weights_answer(answer.text).weights() == state.weights()
    assert on_green[10] <= on_green[50] <= on_green[60] <= on_green[99]
    lb.switch("green")  # a full switch ends the canary
    assert lb.client.get(lb.https + ROUTING_PATH).json() == {
        "active": "green",
        "live": "green",
        "weights": {"blue": 0, "green": 100},
    }


@pytest.mark.parametrize(
    "canary",
    [
        {"colour": "green", "percent": 0, "seed": 1},
        {"colour": "green", "percent": 100, "seed": 1},
        {"colour": "blue", "percent": 10, "seed": 1},  # the live colour itself
        {"colour": "green", "percent": 10},  # no seed
        {"colour": "green", "percent": "10", "seed": 1},
    ],
)
def test_a_broken_canary_fails_closed_to_the_last_good_state(
    lb: LB, canary: dict[str, Any]
) -> None:
    good = routing.RoutingState("green", routing.Canary("blue", 30, seed=5))
    set_routing(lb.spec, good)
    lb.spec.routing.state.write_text(json.dumps({"live": "blue", "canary": canary}))
    with pytest.raises(ValueError):
        routing.parse_state(lb.spec.routing.state.read_text())
    assert lb.client.get(lb.https + ROUTING_PATH).json()["canary"] == {
        "colour": "blue",
        "percent": 30,
    }
    assert current_active(lb.spec) == "green"
