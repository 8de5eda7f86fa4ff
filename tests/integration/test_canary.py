"""Canary releases for real: nginx, both colours' gateways and processors, MariaDB and a
Prometheus scraping every second, with users ordering through the load balancer.

A bad release (its gateway answers 500 to half of the orders of more than one item, a bug
its one-item smoke test cannot see) deployed as a 10 % canary
with step-by-step promotion asked for is aborted by the analysis at 10 %: only users in the
canary's buckets ever saw an error, and every order answered 201 is stored exactly once. A
good release passes every step to 100 %. The commands (canary, promote, abort) and what
status and history say of the weights are checked on the way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest

from bluegreen_support import TEST_SERVICE_SETTINGS, BlueGreenSystem, deployed, lb_client
from canary_support import bad_release, outcome, run_canary, set_analysis, wait_stored

pytestmark = pytest.mark.timeout(900)

# Prometheus scrapes every second, so the analysis has figures within seconds.
MONITORING = {
    "scrape_interval_seconds": 1,
    "evaluation_interval_seconds": 1,
    "rate_window_seconds": 2,
}
USERS = 100
ANALYSIS = {
    "step_seconds": 15,  # a bad canary undetected in 15 s would move on to 50 %
    "after_switch_seconds": 4,
    "interval_seconds": 1,
    "min_requests": 10,
    "steps": (10, 50, 100),
}


@pytest.fixture(scope="module")
def bg() -> Iterator[BlueGreenSystem]:
    with deployed(monitoring=MONITORING) as system:  # release A live on green
        yield system


def _history(bg: BlueGreenSystem) -> list[dict[str, object]]:
    return list(json.loads(bg.system.ok("history", "--json").stdout))


def test_canary_promote_and_abort_move_a_share_of_users_and_say_so(bg: BlueGreenSystem) -> None:
    set_analysis(bg, TEST_SERVICE_SETTINGS, step_seconds=0, after_switch_seconds=0)
    bg.system.ok("deploy", "--release", bg.release_b.id, "--no-switch", timeout=300)
    refused = bg.system.cli("canary", "green", "10")
    assert refused.returncode == 1 and "green is live" in refused.stderr
    assert bg.system.cli("canary", "blue", "0").returncode == 2  # a usage error

    moved = json.loads(bg.system.ok("canary", "blue", "10", "--json").stdout)
    assert (moved["action"], moved["result"]) == ("canary", "ok")
    assert moved["weights"] == {"blue": 10, "green": 90}
    status = json.loads(bg.system.ok("status", "--json").stdout)
    assert status["live"] == "green"
    assert status["canary"] == {"colour": "blue", "percent": 10}
    assert {c["colour"]: c["weight"] for c in status["colours"]} == {"blue": 10, "green": 90}
    table = bg.system.ok("status").stdout
    assert "canary: blue takes 10 % of users" in table
    with lb_client(bg) as client:
        assert client.get("/.active-env").text == "green\n"
        assert client.get("/.routing").json()["weights"] == {"blue": 10, "green": 90}
    # Another deploy waits for the canary to end.
    busy = bg.system.cli("deploy", "--release", bg.release_a.id)
    assert busy.returncode == 1 and "a canary runs" in busy.stderr

    # A colour with users cannot be stopped, even a canary's.
    busy = bg.system.cli("down", "blue")
    assert busy.returncode == 1 and "serves 10 % of users" in busy.stderr

    stepped = json.loads(bg.system.ok("canary", "blue", "60", "--json").stdout)
    assert stepped["weights"] == {"blue": 60, "green": 40}
    assert bg.system.ok("active").stdout.strip() == "blue"  # the majority's colour

    aborted = json.loads(bg.system.ok("abort", "--json").stdout)
    assert (aborted["action"], aborted["weights"]) == ("abort", {"blue": 0, "green": 100})
    assert bg.system.cli("abort").returncode == 1  # nothing left to abort
    assert bg.system.cli("promote").returncode == 1

    bg.system.ok("canary", "blue", "25")
    promoted = json.loads(bg.system.ok("promote", "--json").stdout)
    assert (promoted["action"], promoted["to"]) == ("promote", "blue")
    assert promoted["weights"] == {"blue": 100, "green": 0}
    events = _history(bg)[-5:]
    assert [(e["action"], e["weights"]) for e in events] == [
        ("canary", {"blue": 10, "green": 90}),
        ("canary", {"blue": 60, "green": 40}),
        ("abort", {"blue": 0, "green": 100}),
        ("canary", {"blue": 25, "green": 75}),
        ("promote", {"blue": 100, "green": 0}),
    ]
    assert "blue 25 % / green 75 %" in bg.system.ok("history").stdout
    bg.system.ok("switch", "green")  # back as the other tests expect: A live on green


def test_a_bad_canary_is_aborted_by_its_analysis_and_only_its_users_saw_errors(
    bg: BlueGreenSystem,
) -> None:
    set_analysis(bg, TEST_SERVICE_SETTINGS, **ANALYSIS)
    bad = bad_release(bg, error_ratio=0.5)
    run = run_canary(bg, ["--release", bad.id, "--canary", "10", "--promote"], USERS)

    assert run.result.returncode == 1, run.result.stderr[-3000:]
    assert "canary aborted" in run.result.stderr
    answer = outcome(run)
    assert (answer["result"], answer["weights"]) == ("aborted", {"blue": 0, "green": 100})
    assert "5xx" in answer["detail"]
    assert run.shares == [10], "the bad canary went past its first step"
    event = _history(bg)[-1]
    assert (event["action"], event["result"], event["release"]) == ("deploy", "aborted", bad.id)
    assert "5xx" in str(event["detail"])
    with lb_client(bg) as client:
        assert "canary" not in client.get("/.routing").json()

    # Who saw an error: only users whose bucket was the canary's, never more users than it.
    errors = run.users_who(lambda s: s.status is not None and s.status >= 500)
    on_canary = [u for u in run.users if run.bucket(u) in run.canary_buckets]
    assert len(run.canary_buckets) == 10
    assert errors, "the bad release failed nobody: the analysis had nothing to catch"
    assert all(run.bucket(u) in run.canary_buckets for u in errors)
    assert all(
        s.served_by == "blue" for u in errors for s in u.samples if s.status and s.status >= 500
    )
    # Buckets come from a hash of each user's token: about 10 % of users, 5 sigma at most.
    assert len(on_canary) <= USERS * 0.1 + 5 * math.sqrt(USERS * 0.1 * 0.9)
    failures = [s for s in run.samples() if s.error is not None]
    assert not failures, [(s.method, s.error) for s in failures[:5]]

    # Nothing acknowledged is lost: every 201, from either colour, stored exactly once.
    uids = [uid for user in run.users for uid in user.order_uids]
    assert len(uids) == len(set(uids)) > 0
    stored = wait_stored(bg, uids)
    assert stored == dict.fromkeys(uids, 1)
    print(
        f"\nbad canary: {USERS} users, {len(run.samples())} requests, served by "
        f"{dict(run.served())}; aborted in {run.seconds:.1f}s; {len(on_canary)} users in the "
        f"canary's buckets, {len(errors)} saw an error; {len(uids)} orders, all stored once"
    )


def test_a_good_canary_passes_each_step_to_everyone(bg: BlueGreenSystem) -> None:
    set_analysis(bg, TEST_SERVICE_SETTINGS, **{**ANALYSIS, "step_seconds": 6})
    run = run_canary(bg, ["--release", bg.release_b.id, "--canary", "10", "--promote"], USERS)

    assert run.result.returncode == 0, run.result.stderr[-3000:]
    answer = outcome(run)
    assert (answer["result"], answer["to"], answer["weights"]) == (
        "ok",
        "blue",
        {"blue": 100, "green": 0},
    )
    assert run.shares == [10, 50]
    analyses = [step for step in answer["steps"] if step["step"].startswith("analysis")]
    assert [step["result"] for step in analyses] == ["pass", "pass", "pass"]  # 10, 50, after
    failures = [s for s in run.samples() if s.error is not None or (s.status or 0) >= 500]
    assert not failures, [(s.method, s.status, s.error) for s in failures[:5]]
    uids = [uid for user in run.users for uid in user.order_uids]
    assert wait_stored(bg, uids) == dict.fromkeys(uids, 1)
    print(
        f"\ngood canary: {USERS} users, {len(run.samples())} requests, served by "
        f"{dict(run.served())}; 10 -> 50 -> 100 % in {run.seconds:.1f}s"
    )
