"""Pure parts of blue-green: a colour's plan (programs, settings, targets), the deploy lock
and the history file."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from echobase.platform.bluegreen import history
from echobase.platform.bluegreen.lock import LockHeld, deploy_lock
from echobase.platform.durable.credentials import generate
from echobase.platform.render.ephemeral import ColourPlan, gateway_workers, other_colour
from echobase.platform.stack import Stack, StackConfigError, resolve_ports


def plan(
    tmp_path: Path, colour: str = "blue", settings: dict[str, str] | None = None
) -> ColourPlan:
    stack = Stack(tmp_path, resolve_ports(), service_settings=settings or {})
    return ColourPlan(stack, colour, "devlocal", tmp_path / "rel" / "venv/bin/python", "0.1.0-abc")


def test_colour_programs_follow_the_seed_names_and_ports(tmp_path):
    blue, green = plan(tmp_path, "blue"), plan(tmp_path, "green")
    assert [p.name for p in blue.programs()] == [
        "echobase-blue-sqs",
        "echobase-blue-order-processor",
        "echobase-blue-api-gateway",
    ]
    assert blue.service("api-gateway").port == 3102 and green.service("api-gateway").port == 3101
    assert blue.service("sqs").port == 4667 and green.service("sqs").port == 4666
    assert blue.queues.queue_url == "http://127.0.0.1:4667/123456789012/order-processing-queue"
    assert blue.direct_url == "http://127.0.0.1:8080"
    assert other_colour("blue") == "green" and other_colour("green") == "blue"
    with pytest.raises(StackConfigError):
        other_colour("red")


def test_services_run_the_release_isolated_with_plain_settings_only(tmp_path):
    blue = plan(tmp_path)
    gateway = blue.program("api-gateway")
    assert gateway.command[:3] == (str(tmp_path / "rel" / "venv/bin/python"), "-I", "-m")
    env = dict(gateway.environment)
    assert env["ECHOBASE_COLOUR"] == "blue" and env["ECHOBASE_RELEASE"] == "0.1.0-abc"
    assert env["ECHOBASE_SECRETS_ENDPOINT_URL"] == "http://127.0.0.1:4566"  # the env's store
    assert env["ECHOBASE_SQS_ENDPOINT_URL"] == "http://127.0.0.1:4667"  # the colour's own
    assert env["ECHOBASE_TRUSTED_PROXIES"] == "127.0.0.1"
    assert "https://127.0.0.1" in env["ECHOBASE_ALLOWED_ORIGINS"].split(",")
    secrets = generate("127.0.0.1", 3306).as_secret_strings().values()
    for program in blue.programs():
        text = " ".join(program.command) + json.dumps(dict(program.environment))
        assert not any(value in text for value in secrets)


def test_a_colour_gateway_runs_one_worker_per_two_cpus_by_default(tmp_path):
    assert [gateway_workers(cpus) for cpus in (1, 2, 3, 8)] == [1, 1, 1, 4]
    colour = plan(tmp_path)
    env = dict(colour.program("api-gateway").environment)
    assert env["ECHOBASE_WORKERS"] == str(gateway_workers(colour.machine.cpus))


def test_team_settings_apply_but_cannot_move_a_service(tmp_path):
    tuned = plan(tmp_path, settings={"ECHOBASE_RATE_LIMIT_MAX": "5", "ECHOBASE_WORKERS": "4"})
    env = dict(tuned.program("api-gateway").environment)
    assert env["ECHOBASE_RATE_LIMIT_MAX"] == "5" and env["ECHOBASE_WORKERS"] == "4"
    (tmp_path / "echobase.toml").write_text('[services]\nECHOBASE_PORT = "1"\n')
    with pytest.raises(StackConfigError, match="ECHOBASE_PORT"):
        Stack.load(tmp_path, cwd=tmp_path)


def test_scrape_targets_carry_env_colour_service_and_release(tmp_path):
    targets = plan(tmp_path, "green").scrape_targets()
    assert {t.labels["service"] for t in targets} == {"sqs", "api-gateway", "order-processor"}
    assert all(t.labels["colour"] == "green" and t.labels["env"] == "devlocal" for t in targets)
    assert {t.address for t in targets} == {"127.0.0.1:4666", "127.0.0.1:3101", "127.0.0.1:3201"}


def _hold(directory: str, seconds: float) -> None:
    with deploy_lock(Path(directory)):
        time.sleep(seconds)


def test_the_deploy_lock_names_its_holder_and_can_be_waited_for(tmp_path):
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(str(tmp_path), 1.0))
    holder.start()
    deadline = time.monotonic() + 5
    while not (tmp_path / "deploy.holder").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(LockHeld, match=f"pid {holder.pid}"), deploy_lock(tmp_path):
        pass
    with deploy_lock(tmp_path, wait_seconds=10):
        assert json.loads((tmp_path / "deploy.holder").read_text())["pid"] != holder.pid
    holder.join()


def test_history_appends_and_skips_a_torn_line(tmp_path):
    history.record(tmp_path, "deploy", None, "green", "r1", "ok", 4.81)
    history.record(tmp_path, "rollback", "green", "blue", "r0", "ok", 0.2)
    with (tmp_path / "history.jsonl").open("a") as handle:
        handle.write('{"at": "2026')  # a crash mid-write
    events = history.read(tmp_path)
    assert [(e.action, e.source, e.target) for e in events] == [
        ("deploy", "none", "green"),
        ("rollback", "green", "blue"),
    ]
    assert (tmp_path / "history.jsonl").stat().st_mode & 0o777 == 0o600
