"""The services' HTTP protocol writes a response's head with its body: a worker killed between
the two leaves nothing half-sent for the load balancer to pass on as a cut connection.

Real uvicorn processes, real sockets, a real SIGKILL; uvicorn's own protocol is run beside
ours to show what the test would see without the change.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from echobase.platform.runtime.processes import free_port

OURS = "echobase.app.core.http_protocol:HttpProtocol"
UVICORN_OWN = "httptools"
SERVER = """
import asyncio, os, signal, sys, uvicorn

async def app(scope, receive, send):
    head = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    await send(head)
    if scope["path"] == "/killed-between":
        os.kill(os.getpid(), signal.SIGKILL)
    if scope["path"] == "/slow-body":
        await asyncio.sleep(0.6)
    await send({"type": "http.response.body", "body": b"whole"})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=sys.argv[2], lifespan="off",
            log_level="warning")
"""


@contextmanager
def server(protocol: str) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "ECHOBASE_HEADER_TIMEOUT_SECONDS": "5"}
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port), protocol], env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.05)
        yield port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def request(port: str | int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize(
    ("protocol", "left_behind"),
    [(OURS, b""), (UVICORN_OWN, b"HTTP/1.1 200 OK")],
    ids=["ours: nothing", "uvicorn's own: a head without its body"],
)
def test_a_worker_killed_between_head_and_body_sends_no_half_response(
    protocol: str, left_behind: bytes
) -> None:
    with server(protocol) as port, request(port, "/killed-between") as sock:
        received = read_until_closed(sock)
    assert received.startswith(left_behind) and (left_behind or received == b"")
    if left_behind:
        assert not received.endswith(b"whole")


def test_the_head_waits_for_the_body_and_keep_alive_still_works() -> None:
    with server(OURS) as port, request(port, "/slow-body") as sock:
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(65536)  # the head is held while the body is not ready
        sock.settimeout(5)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 OK") and first.endswith(b"\r\n\r\nwhole")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        second = read_until_closed(sock)
        assert second.startswith(b"HTTP/1.1 200 OK") and second.endswith(b"whole")
