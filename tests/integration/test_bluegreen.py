"""Blue-green through the real CLI: deploy, switch, rollback, locks, failing gates, safe
down. One durable layer and two releases (this tree, and HEAD plus a commit) per module;
tests run in file order and each leaves a known live colour."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bluegreen_support import (
    TEST_SERVICE_SETTINGS,
    BlueGreenSystem,
    database,
    git,
    lb_client,
    second_commit,
    stored_orders,
)
from echobase.app.core.config import GatewaySettings
from echobase.app.queues import DEAD_LETTER_QUEUE, ORDER_QUEUE
from echobase.platform.bluegreen.lock import deploy_lock
from echobase.platform.bluegreen.pipeline import target_colour
from echobase.platform.durable.mariadb import app_connection
from echobase.platform.release import build_release
from echobase.platform.render.nginx import PLATFORM_METRICS_PATH
from echobase.platform.runtime.services import supervisor_for
from echobase.platform.stack import COLOURS
from tests_support import (
    SHIPPED_HEAD,
    TEST_STEP,
    revision_script,
    wait_until,
    within_one_rate_window,
)

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def bg() -> Iterator[BlueGreenSystem]:
    system = BlueGreenSystem.create()
    try:
        yield system
    finally:
        system.destroy()


def active(bg: BlueGreenSystem) -> str:
    return bg.system.ok("active").stdout.strip()


def deploy(bg: BlueGreenSystem, *args: str, release: str | None = None) -> dict:
    result = bg.system.cli("deploy", "--json", "--release", release or bg.release_a.id, *args)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def test_target_is_the_idle_colour():
    assert target_colour("none") == "green"
    assert target_colour("green") == "blue"
    assert target_colour("blue") == "green"
    assert target_colour("blue", "blue") == "blue"


def test_first_deploy_goes_to_green_and_switches(bg):
    assert active(bg) == "none"
    outcome = deploy(bg)
    assert (outcome["from"], outcome["to"], outcome["result"]) == ("none", "green", "ok")
    steps = [step["step"] for step in outcome["steps"]]
    assert steps[0] == "migrations"
    assert any("smoke test on green" in s for s in steps)
    assert any("through the load balancer" in s for s in steps)
    assert active(bg) == "green"
    with lb_client(bg) as lb:
        health = lb.get("/health")
        assert health.status_code == 200
        assert health.headers["x-served-by"] == "green"
        assert health.json()["version"] == bg.release_a.id
        assert lb.get("/metrics").status_code == 404  # for Prometheus only, on its own port
    # the smoke user and its order were removed again
    conn = app_connection(database(bg))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM users WHERE username LIKE 'smoke\\_%%'")
            assert cur.fetchone() == (0,)
    finally:
        conn.close()


def test_second_deploy_goes_to_blue_with_the_other_release_and_rollback_returns(bg):
    outcome = deploy(bg, release=bg.release_b.id)
    assert (outcome["from"], outcome["to"]) == ("green", "blue")
    with lb_client(bg) as lb:
        assert lb.get("/health").json()["version"] == bg.release_b.id
    status = json.loads(bg.system.ok("status", "--json").stdout)
    releases = {c["colour"]: c["release"] for c in status["colours"]}
    assert releases == {"blue": bg.release_b.id, "green": bg.release_a.id}
    assert all(c["healthy"] for c in status["colours"])
    assert status["live"] == "blue"
    # Prometheus discovers both colours from the files the deploys wrote
    targets_dir = bg.system.plan("devlocal").prometheus.targets_dir
    for colour in ("blue", "green"):
        groups = json.loads((targets_dir / f"{colour}.json").read_text())
        assert {g["labels"]["service"] for g in groups} == {"sqs", "api-gateway", "order-processor"}
        assert {g["labels"]["colour"] for g in groups} == {colour}
    direct = bg.system.plan("devlocal").stack.ports.of("devlocal")["lb_blue"]
    metrics = httpx.get(f"http://127.0.0.1:{direct}/metrics", timeout=10)
    assert metrics.status_code == 200 and "echobase_orders_accepted_total" in metrics.text
    rolled = json.loads(bg.system.ok("rollback", "--json").stdout)
    assert (rolled["from"], rolled["to"], rolled["action"]) == ("blue", "green", "rollback")
    assert active(bg) == "green"
    assert json.loads(bg.system.ok("switch", "blue", "--json").stdout)["to"] == "blue"
    assert active(bg) == "blue"


def test_db_upgrade_migrates_with_the_live_release_s_own_tool(bg):
    result = json.loads(bg.system.ok("db", "upgrade", "--env", "devlocal", "--json").stdout)
    # blue is live with release b, whose migrations its deploy applied already.
    assert result["release"] == bg.release_b.id
    assert result["from"] == result["to"] and result["to"]


def test_platform_metrics_count_the_deploys_switches_and_rollbacks_so_far(bg):
    """After the two tests above: deploys A to green and B to blue, a rollback to green (A)
    and a switch to blue (B), which is live."""
    with lb_client(bg) as lb:
        answer = lb.get(PLATFORM_METRICS_PATH)
    assert answer.status_code == 200, answer.text
    samples = {
        (s.name, s.labels.get("colour"), s.labels.get("release")): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    a, b = bg.release_a.id, bg.release_b.id
    assert samples == {
        ("echobase_live_colour", "blue", None): 1,
        ("echobase_live_colour", "green", None): 0,
        ("echobase_colour_traffic_percent", "blue", None): 100,
        ("echobase_colour_traffic_percent", "green", None): 0,
        ("echobase_deploys_total", "green", a): 1,
        ("echobase_deploys_total", "blue", b): 1,
        ("echobase_rollbacks_total", "green", a): 1,
        ("echobase_switches_total", "blue", b): 1,
    }
    # Each colour's queue server reports its queues for Prometheus.
    sqs = bg.system.plan("devlocal").stack.ports.of("blue")["sqs"]
    queues = httpx.get(f"http://127.0.0.1:{sqs}/metrics", timeout=10).text
    for queue in (ORDER_QUEUE, DEAD_LETTER_QUEUE):
        for state in ("visible", "in_flight", "delayed"):
            assert f'echobase_queue_messages{{queue="{queue}",state="{state}"}}' in queues


def test_blue_and_green_count_one_rate_limit(bg):
    """Both colours run here (different releases, blue live), each behind its own direct port
    of the real load balancer: a client's requests count in one shared window whichever
    colour answers, and the limit one colour reached refuses on the other."""
    limit = int(TEST_SERVICE_SETTINGS["ECHOBASE_RATE_LIMIT_MAX"])
    window = GatewaySettings.model_fields["rate_limit_window_seconds"].default
    ports = bg.system.plan("devlocal").stack.ports.of("devlocal")
    colours = {c: httpx.Client(base_url=f"http://127.0.0.1:{ports[f'lb_{c}']}") for c in COLOURS}

    def ask(colour: str) -> httpx.Response:
        r = colours[colour].get("/api/v1/products", timeout=10)
        assert r.headers["x-served-by"] == colour
        return r

    within_one_rate_window(window, needed=10)
    bg.system.query("devlocal", "DELETE FROM rate_limit_windows")
    try:
        answers = [ask(colour) for colour in ("blue", "green") * 3]
        # Anonymous: counted before authentication refuses.
        assert [r.status_code for r in answers] == [401] * 6
        remaining = [int(r.headers["ratelimit-remaining"]) for r in answers]
        assert remaining == list(range(limit - 1, limit - 7, -1))
        # A client that has used all but two of the window: the last two go to either
        # colour, and then both refuse.
        bg.system.query("devlocal", "UPDATE rate_limit_windows SET hits = %s", [limit - 2])
        last = [ask("green"), ask("blue")]
        assert [r.status_code for r in last] == [401, 401]
        assert [r.headers["ratelimit-remaining"] for r in last] == ["1", "0"]
        for colour in ("blue", "green"):
            refused = ask(colour)
            assert refused.status_code == 429, refused.text
            assert refused.headers["ratelimit-remaining"] == "0"
            assert 1 <= int(refused.headers["retry-after"]) <= window
        rows = bg.system.query("devlocal", "SELECT bucket, hits FROM rate_limit_windows")
        assert rows == [("ip:127.0.0.1", limit + 2)]
    finally:
        # The later deploys' smoke tests come from this address too.
        bg.system.query("devlocal", "DELETE FROM rate_limit_windows")
        for client in colours.values():
            client.close()


# A refused command does a second or two of work; waiting for a lock held for the whole
# command would never end. Far between the two, and far above a busy machine's noise.
FAIL_FAST_SECONDS = 15


def deploy_lock_file(bg: BlueGreenSystem) -> Path:
    return (bg.system.plan("devlocal").home / "deploy.lock").resolve()


def opened(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open: a command waiting for the deploy lock
    keeps the lock file open while it retries."""
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(descriptor) == str(path):
                return True
        except OSError:
            continue
    return False


@contextmanager
def waiting_at_the_lock(
    bg: BlueGreenSystem, *args: str
) -> Iterator[tuple[subprocess.Popen[str], float]]:
    """``echobase ARGS`` started while this test holds the deploy lock, once it is seen
    waiting for it (and when that was); stopped by its pid if the test ends before it does."""
    process = bg.system.start_cli(*args)
    lock_file = deploy_lock_file(bg)
    try:
        wait_until(
            lambda: process.poll() is not None or opened(process.pid, lock_file),
            60,
            f"echobase {' '.join(args)} to reach the deploy lock",
        )
        seen = time.monotonic()
        if process.poll() is not None:
            pytest.fail(f"exited without waiting at the lock: {process.communicate()[1]}")
        yield process, seen
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.mark.parametrize("command", ["switch", "deploy"])
def test_a_held_lock_refuses_at_once_naming_the_holder_and_changes_nothing(bg, command):
    live = active(bg)
    idle = target_colour(live)
    supervisor = supervisor_for(bg.system.home)
    idle_services = [service.name for service in bg.system.stack.colour_services(idle)]
    idle_pids = {name: supervisor.info(name).pid for name in idle_services}
    events = len(json.loads(bg.system.ok("history", "--json").stdout))
    args = ["switch", idle] if command == "switch" else ["deploy", "--release", bg.release_a.id]
    with deploy_lock(bg.system.plan("devlocal").home):
        started = time.monotonic()
        refused = bg.system.cli(*args)
        assert time.monotonic() - started < FAIL_FAST_SECONDS
    assert refused.returncode == 1, refused.stderr
    assert f"pid {os.getpid()}" in refused.stderr and "since" in refused.stderr
    assert "--lock-wait" in refused.stderr
    assert active(bg) == live
    assert {name: supervisor.info(name).pid for name in idle_services} == idle_pids
    assert len(json.loads(bg.system.ok("history", "--json").stdout)) == events


def test_lock_wait_gives_up_when_its_wait_is_over(bg):
    live = active(bg)
    wait = 3  # long enough to be seen waiting on a busy machine
    args = ("switch", target_colour(live), "--lock-wait", str(wait))
    with deploy_lock(bg.system.plan("devlocal").home):
        started = time.monotonic()
        with waiting_at_the_lock(bg, *args) as (process, _):
            _, stderr = process.communicate(timeout=60)
        gave_up_after = time.monotonic() - started
    assert process.returncode == 1, stderr
    assert f"pid {os.getpid()}" in stderr
    assert gave_up_after >= wait  # the contract: never before the wait is over
    assert active(bg) == live


def test_lock_wait_proceeds_once_a_held_lock_is_released(bg):
    assert active(bg) == "blue"
    held = 3.0
    with ExitStack() as holding:
        holding.enter_context(deploy_lock(bg.system.plan("devlocal").home))
        with waiting_at_the_lock(bg, "switch", "green", "--lock-wait", "60") as (process, since):
            time.sleep(held)  # the holder's work, for which the switch must wait
            assert process.poll() is None, "gave up on the lock with most of --lock-wait left"
            holding.close()  # the holder is done
            _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert time.monotonic() - since >= held
    assert active(bg) == "green"


def test_switch_refuses_an_absent_or_unhealthy_colour(bg):
    supervisor = supervisor_for(bg.system.home)
    supervisor.stop("echobase-blue-api-gateway")
    try:
        refused = bg.system.cli("switch", "blue")
        assert refused.returncode == 1 and "not running healthy" in refused.stderr
        # The refusal names what failed, and only that.
        assert "echobase-blue-api-gateway (stopped)" in refused.stderr, refused.stderr
        assert "order-processor" not in refused.stderr
        assert active(bg) == "green"
        rollback = bg.system.cli("rollback")
        assert rollback.returncode == 1
        assert "echobase-blue-api-gateway (stopped)" in rollback.stderr, rollback.stderr
        assert active(bg) == "green"
    finally:
        supervisor.start("echobase-blue-api-gateway")


def test_a_failing_health_gate_never_switches_and_leaves_live_untouched(bg, tmp_path):
    source = second_commit(tmp_path)
    gateway_main = source / "src" / "echobase" / "app" / "gateway" / "__main__.py"
    gateway_main.write_text("raise SystemExit('this release cannot start')\n")
    git(source, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qam", "broken")
    broken, _ = build_release(bg.system.home, source, "HEAD")
    live_pid = supervisor_for(bg.system.home).info("echobase-green-api-gateway").pid
    result = bg.system.cli("deploy", "--release", broken.id)
    assert result.returncode == 1
    assert "health gate failed" in result.stderr
    assert "echobase-blue-api-gateway" in result.stderr
    assert "this release cannot start" in result.stderr  # its last log lines
    assert active(bg) == "green"
    assert supervisor_for(bg.system.home).info("echobase-green-api-gateway").pid == live_pid
    with lb_client(bg) as lb:
        assert lb.get("/health").headers["x-served-by"] == "green"


def test_a_failing_post_promotion_smoke_switches_back(bg):
    hook = 'test "$ECHOBASE_SMOKE_PHASE" = pre'
    result = bg.system.cli("deploy", "--release", bg.release_b.id, "--smoke-hook", hook)
    assert result.returncode == 1
    assert "switched back to green" in result.stderr
    assert active(bg) == "green"
    events = json.loads(bg.system.ok("history", "--json").stdout)
    assert events[-1]["result"] == "rolled back"
    assert events[-1]["target"] == "blue"


def test_down_refuses_the_live_colour_and_an_unknown_live_colour(bg):
    refused = bg.system.cli("down", "green")
    assert refused.returncode == 1 and "is live" in refused.stderr
    supervisor = supervisor_for(bg.system.home)
    supervisor.stop("echobase-devlocal-durable-nginx")
    try:
        blind = bg.system.cli("down", "blue")
        assert blind.returncode == 1 and "does not answer" in blind.stderr
        assert supervisor.info("echobase-blue-api-gateway").state == "RUNNING"
    finally:
        supervisor.start("echobase-devlocal-durable-nginx")
    assert active(bg) == "green"


def test_down_of_a_colour_with_200_queued_orders_loses_none(bg):
    """Blue's processor is stopped so 200 orders pile up in blue's queue; `down blue` must
    hand them to green (live), whose processor stores each exactly once."""
    deploy(bg, "--colour", "blue", "--no-switch", release=bg.release_b.id)
    supervisor = supervisor_for(bg.system.home)
    supervisor.stop("echobase-blue-order-processor")
    direct = bg.system.plan("devlocal").stack.ports.of("devlocal")["lb_blue"]
    origin = f"http://127.0.0.1:{direct}"
    uids: list[str] = []
    with httpx.Client(base_url=origin, timeout=10, headers={"Origin": origin}) as http:
        name = f"q_{uuid.uuid4().hex[:10]}"
        body = {
            "username": name,
            "email": f"{name}@example.com",
            "fullName": "Queued",
            "password": "Passw0rdOk",
        }
        assert http.post("/api/v1/auth/register", json=body).status_code == 201
        login = http.post("/api/v1/auth/login", json={"username": name, "password": "Passw0rdOk"})
        token = login.headers["set-cookie"].split("=", 1)[1].split(";", 1)[0]
        auth = {"Authorization": f"Bearer {token}"}
        for _ in range(200):
            r = http.post("/api/v1/orders", json={"productId": 2, "quantity": 1}, headers=auth)
            assert r.status_code == 201, r.text
            uids.append(r.json()["order"]["orderId"])
    assert stored_orders(bg, uids) == {}
    result = bg.system.ok("down", "blue", "--drain-timeout", "2")
    assert "200 moved to the live colour" in result.stderr
    deadline = time.monotonic() + 30
    while True:
        counts = stored_orders(bg, uids)
        if len(counts) == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(counts) == 200 and set(counts.values()) == {1}
    status = json.loads(bg.system.ok("status", "--json").stdout)
    blue = next(c for c in status["colours"] if c["colour"] == "blue")
    assert blue["release"] is None and blue["services"] == []


def test_history_records_who_from_to_release_result(bg):
    events = json.loads(bg.system.ok("history", "--json").stdout)
    actions = [e["action"] for e in events]
    assert {"deploy", "switch", "rollback", "down"} <= set(actions)
    first = events[0]
    assert first["source"] == "none" and first["target"] == "green" and first["result"] == "ok"
    assert all(e["who"] and e["at"] and e["seconds"] >= 0 for e in events)
    table = bg.system.ok("history").stdout
    assert "rollback" in table and "rolled back" in table


def test_teardown_refuses_while_a_colour_runs(bg):
    refused = bg.system.cli("durable", "teardown", "devlocal")
    assert refused.returncode == 1 and "green" in refused.stderr


@pytest.mark.parametrize(
    ("name", "upgrade", "refusal"),
    [
        (
            "drop_order_status",
            'op.drop_column("orders", "order_status")',
            "drops column orders.order_status",
        ),
        (
            "rename_order_status",
            """
            op.alter_column(
                "orders",
                "order_status",
                new_column_name="status",
                existing_type=sa.String(20),
                existing_nullable=False,
                existing_server_default="pending",
            )
            """,
            "renames column orders.order_status to status",
        ),
    ],
    ids=["drop", "rename"],
)
def test_a_contracting_migration_is_refused_without_allow_contract(
    bg, tmp_path, name, upgrade, refusal
):
    """A release built from a commit whose migration drops or renames a column the live
    release reads and writes: the real deploy refuses before anything is applied."""
    source = second_commit(tmp_path)
    versions = source / "src" / "echobase" / "app" / "db" / "migrations" / "versions"
    (versions / f"{TEST_STEP}_{name}.py").write_text(revision_script(name, upgrade))
    git(source, "add", "-A")
    git(source, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", name)
    contracting, _ = build_release(bg.system.home, source, "HEAD")
    live = active(bg)
    refused = bg.system.cli("deploy", "--release", contracting.id)
    assert refused.returncode == 1
    assert f"revision {TEST_STEP} {refusal}, which the live release still uses" in refused.stderr
    assert "--allow-contract" in refused.stderr
    assert active(bg) == live
    assert "order_status" in order_columns(bg)  # nothing was applied
    assert bg.system.query("devlocal", "SELECT version_num FROM alembic_version") == [
        (SHIPPED_HEAD,)
    ]


def order_columns(bg: BlueGreenSystem) -> list[str]:
    conn = app_connection(database(bg))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'orders'"
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
