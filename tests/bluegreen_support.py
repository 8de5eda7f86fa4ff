"""A durable layer plus releases built from two different commits, for the blue-green tests
and benchmarks: everything in a temporary state directory on free ports."""

from __future__ import annotations

import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from durable_support import DurableSystem
from echobase.app.core.secrets import DatabaseCredentials
from echobase.platform.release import build_release, clone_with_commit
from echobase.platform.render.release import Release

REPO = Path(__file__).resolve().parent.parent
# Fast and permissive where tests need it; the same keys a team would put in echobase.toml.
TEST_SERVICE_SETTINGS = {
    "ECHOBASE_BCRYPT_ROUNDS": "4",
    "ECHOBASE_RATE_LIMIT_MAX": "1000000",
    "ECHOBASE_WAIT_TIME_SECONDS": "2",
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def second_commit(workdir: Path) -> Path:
    """A clone of this repository's HEAD with one more commit (a different release)."""
    note = '"""A second commit for the blue-green tests."""\nNOTE = "b"\n'
    files = {"src/echobase/app/release_note.py": note}
    return clone_with_commit(REPO, workdir / "src-b", files, "second release")


@dataclass
class BlueGreenSystem:
    system: DurableSystem
    release_a: Release  # this working tree
    release_b: Release  # HEAD plus one commit
    workdir: Path

    @classmethod
    def create(
        cls,
        env: str = "devlocal",
        services: dict[str, str] | None = None,
        monitoring: dict[str, float] | None = None,
    ) -> BlueGreenSystem:
        system = DurableSystem.create(
            services={**TEST_SERVICE_SETTINGS, **(services or {})}, monitoring=monitoring
        )
        workdir = Path(tempfile.mkdtemp(prefix="eb-src-", dir="/tmp"))
        release_a, _ = build_release(system.home, REPO, None)
        release_b, _ = build_release(system.home, second_commit(workdir), "HEAD")
        system.ok("durable", "setup", env)
        return cls(system, release_a, release_b, workdir)

    def destroy(self) -> None:
        self.system.destroy()  # supervisord's shutdown stops the colours too
        subprocess.run(["rm", "-rf", str(self.workdir)], check=False)


@contextmanager
def deployed(
    services: dict[str, str] | None = None, monitoring: dict[str, float] | None = None
) -> Iterator[BlueGreenSystem]:
    """A whole system with release A live (on green), torn down afterwards."""
    bg = BlueGreenSystem.create(services=services, monitoring=monitoring)
    try:
        bg.system.ok("deploy", "--release", bg.release_a.id, timeout=300)
        yield bg
    finally:
        bg.destroy()


def lb_tls(bg: BlueGreenSystem) -> ssl.SSLContext:
    """Trusts the LB's own certificate."""
    cert = bg.system.plan("devlocal").load_balancer.cert_file
    return ssl.create_default_context(cafile=str(cert))


def lb_client(bg: BlueGreenSystem, **options: Any) -> httpx.Client:
    """An HTTPS client of the LB (production traffic's way in)."""
    plan = bg.system.plan("devlocal")
    return httpx.Client(base_url=plan.lb_url, verify=lb_tls(bg), **{"timeout": 10, **options})


def database(bg: BlueGreenSystem) -> DatabaseCredentials:
    return DatabaseCredentials.from_secret(
        bg.system.secret("devlocal", "echobase/database/credentials")
    )


def stored_orders(bg: BlueGreenSystem, uids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(uids), 1000):
        chunk = uids[start : start + 1000]
        marks = ",".join(["%s"] * len(chunk))
        rows = bg.system.query(
            "devlocal",
            f"SELECT order_uid, COUNT(*) FROM orders WHERE order_uid IN ({marks})"
            " GROUP BY order_uid",
            chunk,
        )
        found.update({str(uid): n for uid, n in rows})
    return found
