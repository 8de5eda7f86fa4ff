"""A canary under real users, for the canary tests and ``bench/canary.py``: logged-in users
ordering through the load balancer while ``echobase deploy --canary`` runs, each keeping
its cookies as a browser does, and what each of them saw.

A user's bucket is the cookie nginx gave it; the canary's buckets are read from the routing
state while the canary runs (its seed), so the test knows exactly which users a canary
could reach, not only roughly how many."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluegreen_support import BlueGreenSystem, lb_tls, stored_orders
from echobase.platform.release import build_release, clone_with_commit
from echobase.platform.render import routing
from echobase.platform.render.release import Release
from echobase.platform.stack import render_config_toml
from load_support import LoadUser

REPO = Path(__file__).resolve().parent.parent
CONFIG = "src/echobase/app/core/config.py"
FAULT_DEFAULT = "fault_order_error_ratio: float = Field(default=0.0, ge=0, le=1)"
# Orders only, and a pause a person would take: the canary's share stays readable and the
# two cores keep up.
ORDERING = (("POST", "/api/v1/orders"), ("GET", "/api/v1/orders"))
ORDERS_STORED_SECONDS = 60


def bad_release(bg: BlueGreenSystem, error_ratio: float) -> Release:
    """HEAD plus one commit whose gateway answers 500 to ``error_ratio`` of the orders (the
    test-only fault setting's default changed, as a bad change to the code would)."""
    text = (REPO / CONFIG).read_text()
    assert text.count(FAULT_DEFAULT) == 1, "the fault setting moved: update canary_support"
    bad = text.replace(FAULT_DEFAULT, FAULT_DEFAULT.replace("0.0", repr(error_ratio)))
    source = clone_with_commit(REPO, bg.workdir / "src-bad", {CONFIG: bad}, "a bad release")
    release, _ = build_release(bg.system.home, source, "HEAD")
    return release


def set_analysis(bg: BlueGreenSystem, services: dict[str, str], **analysis: object) -> None:
    """Rewrite the system's [analysis] (each CLI call reads echobase.toml again)."""
    text = render_config_toml(bg.system.ports, services, analysis=analysis)
    (bg.system.home / "echobase.toml").write_text(text)


@dataclass
class CanaryRun:
    users: list[LoadUser]
    result: Any  # the deploy's CompletedProcess
    seconds: float
    canary_buckets: set[int] = field(default_factory=set)  # every canary seen while it ran
    shares: list[int] = field(default_factory=list)  # the canary percentages seen, in order

    def bucket(self, user: LoadUser) -> int | None:
        assert user.http is not None
        value = user.http.cookies.get(routing.BUCKET_COOKIE)
        return None if value is None else int(value)

    def samples(self) -> list[Any]:
        return [sample for user in self.users for sample in user.samples]

    def users_who(self, test: Any) -> list[LoadUser]:
        return [user for user in self.users if any(test(s) for s in user.samples)]

    def served(self) -> Counter[str | None]:
        return Counter(s.served_by for s in self.samples() if s.status is not None)


def run_canary(
    bg: BlueGreenSystem,
    deploy_args: list[str],
    users: int,
    think_seconds: float = 1.0,
    settle_seconds: float = 2.0,
) -> CanaryRun:
    """Users order through the LB while ``echobase deploy ...deploy_args`` runs; the load
    starts before the deploy and stops ``settle_seconds`` after it returns."""
    plan = bg.system.plan("devlocal")
    stop = threading.Event()
    load = [
        LoadUser(
            index,
            plan.lb_url,
            lb_tls(bg),
            stop,
            time.monotonic() + 900,
            mix=ORDERING,
            think_seconds=think_seconds,
        )
        for index in range(users)
    ]
    for user in load:
        user.login()
    threads = [threading.Thread(target=user.run, daemon=True) for user in load]
    for thread in threads:
        thread.start()
    state_file = plan.load_balancer.routing.state
    run = CanaryRun(load, None, 0.0)
    watching = threading.Event()

    def watch_state() -> None:
        while not watching.is_set():
            try:
                state = routing.parse_state(state_file.read_text())
            except (OSError, ValueError):
                state = None
            if state is not None and state.canary is not None:
                run.canary_buckets |= {
                    b for b in range(routing.BUCKETS) if state.route(b) == state.canary.colour
                }
                if not run.shares or run.shares[-1] != state.canary.percent:
                    run.shares.append(state.canary.percent)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_state, daemon=True)
    watcher.start()
    try:
        time.sleep(2)  # the load is steady before the deploy begins
        started = time.monotonic()
        run.result = bg.system.cli("deploy", *deploy_args, "--json", timeout=600)
        run.seconds = time.monotonic() - started
        time.sleep(settle_seconds)
    finally:
        stop.set()
        watching.set()
        for thread in threads:
            thread.join(timeout=60)
        watcher.join(timeout=5)
    assert not any(thread.is_alive() for thread in threads)
    return run


def wait_stored(bg: BlueGreenSystem, uids: list[str]) -> dict[str, int]:
    """Every accepted order's row count, once all are in (or the time is up)."""
    deadline = time.monotonic() + ORDERS_STORED_SECONDS
    while True:
        stored = stored_orders(bg, uids)
        if len(stored) == len(uids) or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


def outcome(run: CanaryRun) -> dict[str, Any]:
    """The deploy's --json answer."""
    return dict(json.loads(run.result.stdout))
