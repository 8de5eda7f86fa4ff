"""`echobase up` and `echobase down --all`: from an empty state directory to a live colour,
again with nothing changed, then everything down and back up with the data intact."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator

import httpx
import pytest

from bluegreen_support import TEST_SERVICE_SETTINGS
from durable_support import DurableSystem, alive
from echobase.platform.runtime.services import supervisor_for

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def system() -> Iterator[DurableSystem]:
    system = DurableSystem.create(services=TEST_SERVICE_SETTINGS)
    try:
        yield system
    finally:
        system.destroy()


def pids(system: DurableSystem) -> dict[str, int]:
    supervisor = supervisor_for(system.home)
    return {info.name: info.pid for info in supervisor.all_info() if info.pid}


def test_up_from_nothing_serves_through_the_load_balancer(system):
    # cwd is the state directory (not a git tree): up builds the clone echobase came from
    result = system.cli("up", "--json", timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    outcome = json.loads(result.stdout)
    assert (outcome["to"], outcome["result"]) == ("green", "ok")
    plan = system.plan("devlocal")
    context = ssl.create_default_context(cafile=str(plan.load_balancer.cert_file))
    with httpx.Client(base_url=outcome["url"], verify=context, timeout=10) as lb:
        health = lb.get("/health")
        assert health.status_code == 200 and health.headers["x-served-by"] == "green"
        assert lb.get("/api/v1/products").status_code == 401  # the API, behind JWT auth
    system.query(
        "devlocal",
        "INSERT INTO users (username, email, full_name, password_hash)"
        " VALUES ('up_kept', 'up@example.com', 'Up', 'x')",
    )


def test_up_again_changes_nothing(system):
    before = pids(system)
    result = system.cli("up", "--json", timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    outcome = json.loads(result.stdout)
    assert outcome["detail"] == "already up to date"
    assert pids(system) == before


def test_down_all_then_up_brings_everything_back_with_the_data(system):
    before = pids(system)
    supervisord = system.supervisord_pid()
    result = system.cli("down", "--all", timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert not any(alive(pid) for pid in before.values())
    assert supervisord is not None and not alive(supervisord)
    again = system.cli("up", "--json", timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert json.loads(again.stdout)["result"] == "ok"
    assert system.ok("active").stdout.strip() in ("blue", "green")
    kept = "SELECT full_name FROM users WHERE username = 'up_kept'"
    assert system.query("devlocal", kept) == [("Up",)]
