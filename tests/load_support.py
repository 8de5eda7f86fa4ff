"""Clients of the load balancer: logged-in users ordering the way a browser would (shared by
the zero-downtime test and the chaos suite), and plain clients that never resend.

A switch reloads nothing (nginx reads the routing state per request), but nginx still
reloads for a real config change and the chaos suite kills it. A reload's old workers close
their *idle* keep-alive connections at once, without reading them; a request written on such
a connection at that instant is never read by nginx. Browsers resend a request that fails
that way on a reused connection, whatever its method, and so does ``LoadUser``, once, and
only then (see ``never_read_by_nginx``), counting it. Every other failure is recorded as it
happened. ``NeverResending`` is the client an SDK or another service is: any failure is final.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests_support import sign_up

PASSWORD = "Passw0rdOk"
# What each user repeats: browse the catalogue, look at its orders, place one.
BROWSE_AND_ORDER = (
    ("GET", "/api/v1/products"),
    ("GET", "/api/v1/orders"),
    ("POST", "/api/v1/orders"),
)


@dataclass
class Sample:
    started: float  # monotonic, before the first attempt
    method: str
    path: str
    status: int | None = None
    served_by: str | None = None
    seconds: float = 0.0  # both attempts when resent
    error: str | None = None
    resent: str | None = None  # why the first attempt provably never reached nginx


@dataclass
class LoadUser:
    index: int
    url: str
    verify: ssl.SSLContext
    stop: threading.Event
    deadline: float
    mix: tuple[tuple[str, str], ...] = BROWSE_AND_ORDER
    think_seconds: float = 0.04  # between a user's requests: steady load, CPU left over
    timeout: float = 15.0
    samples: list[Sample] = field(default_factory=list)
    order_uids: list[str] = field(default_factory=list)
    username: str = ""
    http: httpx.Client | None = None
    token: str = ""

    def login(self) -> None:
        self.http = httpx.Client(
            base_url=self.url,
            verify=self.verify,
            timeout=self.timeout,
            headers={"Origin": self.url},
        )
        self.username = f"zd{self.index}_{uuid.uuid4().hex[:8]}"
        sign_up(self.http, self.username, f"Load user {self.index}", PASSWORD)
        login = self.http.post(
            "/api/v1/auth/login", json={"username": self.username, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        # The cookie is Secure and this client keeps no cookie jar of its own for it: the
        # token goes back as a bearer header, as an API client would send it.
        self.token = login.headers["set-cookie"].split("=", 1)[1].split(";", 1)[0].strip('"')

    def run(self) -> None:
        requests = 0
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                for method, path in self.mix:
                    body = (
                        {"productId": 1 + requests % 11, "quantity": 1 + requests % 3}
                        if method == "POST"
                        else None
                    )
                    self.samples.append(self.request(method, path, body))
                    requests += 1
                    time.sleep(self.think_seconds)
        finally:
            assert self.http is not None
            self.http.close()

    def request(self, method: str, path: str, body: dict[str, int] | None) -> Sample:
        sample = Sample(time.monotonic(), method, path)
        assert self.http is not None
        for attempt in (1, 2):
            events: list[str] = []
            try:
                response = self.http.request(
                    method,
                    path,
                    json=body,
                    headers={"Authorization": f"Bearer {self.token}"},
                    extensions={"trace": lambda name, _info, seen=events: seen.append(name)},
                )
            except httpx.TransportError as exc:
                why = never_read_by_nginx(exc, events)
                if attempt == 1 and why is not None:
                    sample.resent = why
                    continue
                sample.error = f"{type(exc).__name__}: {exc}"
                break
            sample.status = response.status_code
            sample.served_by = response.headers.get("x-served-by")
            if response.status_code == 201 and method == "POST":
                self.order_uids.append(str(response.json()["order"]["orderId"]))
            break
        sample.seconds = time.monotonic() - sample.started
        return sample


def never_read_by_nginx(exc: httpx.TransportError, events: list[str]) -> str | None:
    """Why this failed attempt cannot have been read by nginx, or None if it may have been.

    Only one case qualifies: the attempt went out on a kept-alive connection (no new TCP
    connection in its trace) and that connection ended before any response headers came
    back. nginx closes a connection before answering only when it has read nothing from it
    (an idle keep-alive connection, closed by a worker that a reload retires)."""
    reused = "connection.connect_tcp.started" not in events
    no_headers = (
        "http11.receive_response_headers.failed" in events
        and "http11.receive_response_headers.complete" not in events
    )
    if not (reused and no_headers):
        return None
    if isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc):
        return "kept-alive connection closed before any response"
    if isinstance(exc, httpx.ReadError) and "reset" in str(exc).lower():
        return "kept-alive connection reset before any response"
    return None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class NeverResending:
    """One request after another on one kept-alive connection (Python's http.client, what
    many SDKs and service-to-service clients speak), never resent: a failure is counted and
    the next request opens a new connection. ``fresh``: a new connection for every request.
    Stops by itself at ``deadline``."""

    url: str
    verify: ssl.SSLContext
    method: str
    path: str
    stop: threading.Event
    deadline: float
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    fresh: bool = False
    answered: Counter[str] = field(default_factory=Counter)  # X-Served-By of each 2xx
    failed: Counter[str] = field(default_factory=Counter)  # exception or status -> count
    order_uids: list[str] = field(default_factory=list)

    def run(self) -> None:
        host = urllib.parse.urlsplit(self.url)
        connection: http.client.HTTPSConnection | None = None
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            if connection is None:
                connection = http.client.HTTPSConnection(
                    host.hostname or "127.0.0.1", host.port, timeout=15, context=self.verify
                )
            headers = {**self.headers, "Connection": "close"} if self.fresh else self.headers
            try:
                connection.request(self.method, self.path, self.body, headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.failed[type(exc).__name__] += 1
                connection.close()
                connection = None
                continue
            if 200 <= response.status < 300:
                self.answered[response.getheader("X-Served-By") or "?"] += 1
                if self.method == "POST":
                    self.order_uids.append(str(json.loads(data)["order"]["orderId"]))
            else:
                self.failed[f"HTTP {response.status}"] += 1
            if self.fresh:
                connection.close()
                connection = None
        if connection is not None:
            connection.close()
