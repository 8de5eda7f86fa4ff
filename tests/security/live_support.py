"""A whole deployed system for the attack suite: the durable layer (MariaDB, the secrets store,
nginx, Prometheus) and a release of this working tree live behind the load balancer, in a
temporary state directory on free ports."""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass

import httpx

from bluegreen_support import REPO, TEST_SERVICE_SETTINGS
from durable_support import DurableSystem
from echobase.platform.release import build_release
from echobase.platform.render.durable import DurablePlan

ENV = "devlocal"
# Small enough to reach in a test, large enough for every other module's few API calls;
# a long window so that it does not roll over in the middle of a test.
LIVE_RATE_LIMIT = 40
LIVE_RATE_WINDOW = 3600


@dataclass
class LiveSystem:
    system: DurableSystem
    release_id: str

    @property
    def plan(self) -> DurablePlan:
        return self.system.plan(ENV)

    @property
    def lb_url(self) -> str:
        return str(self.plan.lb_url)

    @property
    def cert_file(self) -> str:
        return str(self.plan.load_balancer.cert_file)

    @property
    def origin(self) -> dict[str, str]:
        """The Origin header of the live app's own pages (the origin the gateway allows)."""
        return {"Origin": self.lb_url}

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert_file)

    def lb(self) -> httpx.Client:
        return httpx.Client(base_url=self.lb_url, verify=self.tls_context(), timeout=20)

    def port(self, name: str, group: str = ENV) -> int:
        return self.system.ports[group][name]

    def query(self, sql: str) -> list[tuple]:
        return self.system.query(ENV, sql)

    def clear_rate_limit(self) -> None:
        self.query("DELETE FROM rate_limit_windows")


def account(prefix: str, **overrides: object) -> dict[str, object]:
    """A registration body for a new user, with any field replaced."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    body: dict[str, object] = {
        "username": name,
        "email": f"{name}@example.com",
        "fullName": "Security Check",
        "password": "Secur1ty-Passw0rd",
    }
    return {**body, **overrides}


def register(client: httpx.Client, origin: dict[str, str], prefix: str) -> dict[str, object]:
    """Register a new user through ``client`` (which keeps the session cookie)."""
    body = account(prefix)
    r = client.post("/api/v1/auth/register", json=body, headers=origin)
    assert r.status_code == 201, r.text
    return body


def create_live_system() -> LiveSystem:
    settings = {
        **TEST_SERVICE_SETTINGS,
        "ECHOBASE_RATE_LIMIT_MAX": str(LIVE_RATE_LIMIT),
        "ECHOBASE_RATE_LIMIT_WINDOW_SECONDS": str(LIVE_RATE_WINDOW),
        "ECHOBASE_LOG_LEVEL": "debug",  # the hygiene scan reads the most talkative logs
    }
    system = DurableSystem.create(services=settings)
    try:
        release, _ = build_release(system.home, REPO, None)
        system.ok("durable", "setup", ENV)
        system.ok("deploy", "--json", "--release", release.id, timeout=300)
    except BaseException:
        system.destroy()
        raise
    return LiveSystem(system, release.id)
