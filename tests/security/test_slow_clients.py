"""Slow clients on loopback (slowloris): request heads and bodies trickled a byte at a time, or
stalled, are cut off by the server within its deadline while everyone else is still served;
directly at a gateway and through the load balancer over TLS. Bounded: a few dozen sockets,
a deadline of a minute at most."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest

from conftest import ALLOWED_ORIGIN
from echobase.platform.runtime.processes import free_port

pytestmark = pytest.mark.timeout(300)
CLIENTS = 12  # of each kind
SLOW_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
SLOW_BODY = (
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Origin: " + ALLOWED_ORIGIN.encode() + b"\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
)


class SlowClient:
    """One connection that sends ``head`` and then, if ``trickle``, a byte at every tick."""

    def __init__(
        self, port: int, head: bytes, trickle: bool, tls: ssl.SSLContext | None = None
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
        if head:
            self.sock.sendall(head)
        self.sock.settimeout(0.02)
        self.trickle, self.answer, self.closed = trickle, b"", False

    def tick(self) -> None:
        try:
            while data := self.sock.recv(65536):
                self.answer += data
            self.closed = True  # an orderly close by the server
        except (TimeoutError, ssl.SSLWantReadError):
            pass
        except OSError:
            self.closed = True
        if self.trickle and not self.closed:
            try:
                self.sock.send(b"a")
            except (TimeoutError, ssl.SSLWantWriteError):
                pass
            except OSError:
                self.closed = True

    @property
    def status(self) -> int | None:
        if not self.answer.startswith(b"HTTP/1.1 "):
            return None
        return int(self.answer.split(b" ", 2)[1])

    def close(self) -> None:
        self.sock.close()


def run_slow_clients(
    clients: list[SlowClient], serve_others: Callable[[], int], deadline: float
) -> int:
    """Tick every client until the server has closed them all (or the deadline passes),
    asking for a normal answer at every tick; returns how many normal answers were 200."""
    served, ends = 0, time.monotonic() + deadline
    try:
        while time.monotonic() < ends and not all(c.closed for c in clients):
            for client in clients:
                client.tick()
            served += serve_others() == 200
            time.sleep(0.25)
        return served
    finally:
        for client in clients:
            client.close()


KINDS = {
    "idle": (b"", False),
    "slow head": (SLOW_HEAD, True),
    "slow body": (SLOW_BODY, True),
    "stalled body": (SLOW_BODY, False),
}


def _slow_clients(
    port: int, kinds: list[str], tls: ssl.SSLContext | None = None
) -> dict[str, list[SlowClient]]:
    return {kind: [SlowClient(port, *KINDS[kind], tls) for _ in range(CLIENTS)] for kind in kinds}


def _assert_cut_off(groups: dict[str, list[SlowClient]], served: int) -> None:
    still_open = {kind: sum(not c.closed for c in group) for kind, group in groups.items()}
    assert not any(still_open.values()), f"connections the server never closed: {still_open}"
    assert served >= 3, served  # the server kept answering everyone else meanwhile
    for kind, group in groups.items():
        for client in group:
            # Cut off without an answer, or told why: never an error of the server's own.
            assert client.status in (None, 400, 408), (kind, client.answer[:200])


def test_gateway_cuts_off_slow_heads_and_bodies_and_serves_others(gateway_factory):
    gw = gateway_factory(
        "gw-slow", ECHOBASE_HEADER_TIMEOUT_SECONDS="2", ECHOBASE_BODY_TIMEOUT_SECONDS="2"
    )
    port = int(gw.url.rsplit(":", 1)[1])
    groups = _slow_clients(port, list(KINDS))
    with httpx.Client(base_url=gw.url, timeout=10) as other:
        served = run_slow_clients(
            [c for group in groups.values() for c in group],
            lambda: other.get("/health").status_code,
            deadline=45,
        )
    _assert_cut_off(groups, served)
    # A body too slow is told so by the gateway's edge, as JSON.
    for client in groups["slow body"] + groups["stalled body"]:
        assert client.status == 408, client.answer[:300]
        assert b'"Request Timeout"' in client.answer
    assert gw.get("/health").status_code == 200


def test_load_balancer_cuts_off_slow_clients_and_serves_others(live):
    # Not a body trickled without pause: nginx restarts its body timer at every byte, and
    # since it buffers the whole body before passing it on, the gateway never waits for one.
    kinds = ["idle", "slow head", "stalled body"]
    groups = _slow_clients(live.port("lb_https"), kinds, live.tls_context())
    with live.lb() as other:
        served = run_slow_clients(
            [c for group in groups.values() for c in group],
            lambda: other.get("/health").status_code,
            deadline=60,  # nginx: 10 s for a head, 15 s without a byte of the body
        )
    _assert_cut_off(groups, served)


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_a_bad_head_deadline_stops_the_gateway_at_start_up(backing, value):
    """Not a silent fall-back to some default: the operator learns which setting is wrong."""
    env = backing.gateway_env(
        backing.new_queues(), free_port(), ECHOBASE_HEADER_TIMEOUT_SECONDS=value
    )
    started = subprocess.run(
        [sys.executable, "-m", "echobase.app.gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "header_timeout_seconds" in started.stderr, started.stderr[-2000:]
