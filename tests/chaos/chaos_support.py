"""The chaos harness: a steady order load through the load balancer while faults are injected
into a whole blue-green system, then the books are balanced.

A scenario is a list of faults of one kind, each at a random moment (the seed is printed),
with a switch after the first and a rollback after the second, so traffic moves between the
colours while things break. After each fault the harness waits for the system to be whole
again and records how long that took. When the load has stopped, every order the API
acknowledged with a 201 must be stored exactly once, or be in a dead-letter queue with its
reason.

Sizes: ``ECHOBASE_CHAOS=full`` runs the long form; the default is the short form that CI runs.
Everything targets loopback, and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import signal
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bluegreen_support import BlueGreenSystem, stored_orders
from durable_support import alive, children, cmdline
from echobase.platform.durable.credentials import aws_client
from echobase.platform.durable.plan import DurablePlan
from echobase.platform.ephemeral.plan import GATEWAY_WORKERS, ColourPlan, other_colour
from echobase.platform.runtime.services import supervisor_for
from echobase.platform.runtime.supervisor import Supervisor
from load_support import LoadUser, Sample
from tests_support import receive_all

ENV = "devlocal"
OUTCOMES: list[Outcome] = []  # for the table at the end of the run
FULL = os.environ.get("ECHOBASE_CHAOS", "short") == "full"
SEED = int(os.environ.get("ECHOBASE_CHAOS_SEED", str(random.SystemRandom().randrange(10**6))))
USERS = 6
ORDER_MIX = (("POST", "/api/v1/orders"), ("POST", "/api/v1/orders"), ("GET", "/api/v1/products"))
THINK_SECONDS = 0.03
REPEATS = 6 if FULL else 3  # faults per kill scenario
RESTARTS = 3  # faults per restart scenario
OUTAGES = 3 if FULL else 2  # database outages, OUTAGE_SECONDS each
GAP_SECONDS = (2.0, 6.0) if FULL else (1.0, 2.5)  # load between a recovery and the next fault
OUTAGE_SECONDS = 20.0
RECOVERY_LIMIT_SECONDS = 90.0
# The queues' visibility timeout (30 s): a SIGKILLed processor's batch reappears after it.
SETTLE_LIMIT_SECONDS = 75.0
# The gateway's own budget for an answer; the client gives up later than that.
ANSWER_LIMIT_SECONDS = 10.0
CLIENT_TIMEOUT_SECONDS = 20.0


def answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Outcome:
    """One scenario's books."""

    scenario: str
    faults: int
    accepted: int
    stored: int
    duplicates: int
    lost: int
    dead_lettered: dict[str, str]
    stored_without_201: int
    failed: Counter[str]
    recovery_seconds: list[float]
    slowest_answer: float
    requests: int
    settle_seconds: float  # from the load's end until every accepted order was accounted for

    def row(self) -> list[str]:
        failed = ", ".join(f"{why} {n}" for why, n in self.failed.most_common()) or "-"
        return [
            self.scenario,
            str(self.faults),
            str(self.requests),
            str(self.accepted),
            str(self.stored),
            str(self.duplicates),
            str(self.lost),
            str(len(self.dead_lettered)),
            f"{sum(self.failed.values())} ({failed})",
            f"{max(self.recovery_seconds):.2f}",
            f"{self.slowest_answer:.2f}",
            f"{self.settle_seconds:.1f}",
        ]


COLUMNS = [
    "scenario",
    "faults",
    "requests",
    "accepted (201)",
    "stored",
    "duplicates",
    "lost",
    "in DLQ",
    "failed requests",
    "recovery max s",
    "slowest answer s",
    "all stored after s",
]


def render_table(outcomes: list[Outcome]) -> str:
    rows = [COLUMNS, *(o.row() for o in outcomes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    mode = "full" if FULL else "short"
    return f"chaos ({mode} form, seed {SEED}):\n" + "\n".join(lines)


@dataclass
class Chaos:
    bg: BlueGreenSystem
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))

    def __post_init__(self) -> None:
        self.supervisor: Supervisor = supervisor_for(self.bg.system.home)
        self.durable: DurablePlan = self.bg.system.plan(ENV)
        self.lb = self.durable.load_balancer(None)
        self.verify = ssl.create_default_context(cafile=str(self.lb.cert_file))
        self.probe = httpx.Client(timeout=2, verify=self.verify)
        self.outages: list[tuple[float, float]] = []  # (down, back up), monotonic

    def close(self) -> None:
        self.probe.close()

    # --- names and places, all from the one description of the stack ----------------

    def colour(self, colour: str) -> ColourPlan:
        return ColourPlan(self.durable.stack, colour, ENV, python=Path(), release_id="")

    def colour_program(self, colour: str, role: str) -> str:
        return self.colour(colour).service(role).name

    def durable_program(self, role: str) -> str:
        return self.durable.service(role).name

    def live(self) -> str:
        return self.bg.system.ok("active").stdout.strip()

    def pid(self, program: str) -> int:
        info = self.supervisor.info(program)
        assert info is not None and info.pid, f"{program} is not running"
        return info.pid

    # --- health ---------------------------------------------------------------------

    def colour_whole(self, colour: str) -> bool:
        plan = self.colour(colour)
        gateway = self.supervisor.info(plan.service("api-gateway").name)
        if gateway is None or gateway.state != "RUNNING":
            return False
        workers = [pid for pid in children(gateway.pid) if "spawn_main" in cmdline(pid)]
        return (
            len(workers) == GATEWAY_WORKERS
            and answers(self.probe, plan.health_url("api-gateway"))
            and answers(self.probe, plan.health_url("order-processor"))
        )

    def whole(self) -> bool:
        """Both colours serve with all their workers, and the LB routes to the live one."""
        return all(self.colour_whole(colour) for colour in ("blue", "green")) and answers(
            self.probe, f"{self.durable.lb_url}/health"
        )

    def wait_whole(self, since: float, extra: Callable[[], bool] = lambda: True) -> float:
        deadline = time.monotonic() + RECOVERY_LIMIT_SECONDS
        while not (self.whole() and extra()):
            assert time.monotonic() < deadline, "the system did not recover on its own"
            time.sleep(0.05)
        return time.monotonic() - since

    # --- faults: each returns the recovery time, from the fault's end ------------------

    def kill_gateway_worker(self) -> float:
        program = self.colour_program(self.live(), "api-gateway")
        master = self.pid(program)
        workers = [pid for pid in children(master) if "spawn_main" in cmdline(pid)]
        victim = self.rng.choice(workers)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        log = self.durable.stack.logs_dir / f"{program}.log"

        def replaced() -> bool:
            # uvicorn logs this once the new worker has loaded the app, just before serving.
            text = log.read_text(errors="replace")
            return any(
                f"Started server process [{pid}]" in text
                for pid in children(master)
                if pid not in workers and "spawn_main" in cmdline(pid)
            )

        return self.wait_whole(killed, replaced)

    def kill_gateway(self) -> float:
        program = self.colour_program(self.live(), "api-gateway")
        master = self.pid(program)
        workers = children(master)
        os.kill(master, signal.SIGKILL)
        killed = time.monotonic()

        def replaced() -> bool:
            info = self.supervisor.info(program)
            return (
                info is not None
                and info.pid not in (0, master)
                and not any(alive(pid) for pid in workers)
            )

        return self.wait_whole(killed, replaced)

    def kill_processor(self) -> float:
        program = self.colour_program(self.live(), "order-processor")
        victim = self.pid(program)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        return self.wait_whole(killed, lambda: self.pid(program) != victim)

    def restart(self, role: str, down_seconds: float = 0.0) -> float:
        """Stop a durable service (for ``down_seconds``) and start it again."""
        program = self.durable_program(role)
        live = self.live()
        self.supervisor.stop(program)
        down = time.monotonic()
        time.sleep(down_seconds)
        back = time.monotonic()  # the service's own start counts as recovery
        self.supervisor.start(program)
        self.outages.append((down, time.monotonic()))
        recovery = self.wait_whole(back)
        assert self.live() == live, "the live colour changed across a restart"
        return recovery

    # --- the scenario -------------------------------------------------------------------

    def run(self, name: str, fault: Callable[[], float], count: int) -> tuple[Outcome, Load]:
        load = Load.start(self)
        recoveries: list[float] = []
        try:
            time.sleep(1.0)
            for index in range(count):
                recoveries.append(fault())
                if index == 0:
                    self.bg.system.ok("switch", other_colour(self.live()))
                elif index == 1:
                    self.bg.system.ok("rollback")
                time.sleep(self.rng.uniform(*GAP_SECONDS))
        finally:
            load.stop()
        return self.balance(name, count, load, recoveries), load

    def balance(self, name: str, faults: int, load: Load, recoveries: list[float]) -> Outcome:
        uids = load.accepted()
        stopped = time.monotonic()
        deadline = stopped + SETTLE_LIMIT_SECONDS
        settle_seconds = float("inf")
        while True:
            stored = stored_orders(self.bg, uids)
            dead = self.dead_lettered()
            settled = all(uid in stored or uid in dead for uid in uids)
            if settled:
                settle_seconds = min(settle_seconds, time.monotonic() - stopped)
            if (settled and self.queues_empty()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        rows = rows_per_order(self.bg, load.usernames())
        samples = load.samples()
        failed = Counter(failure(s) for s in samples if failure(s) is not None)
        # A POST that failed on the way back (a worker killed after its send) may still be
        # stored, without a 201. More such orders than failed POSTs would mean a request
        # was carried out twice (the client's one resend, say): duplicates.
        unanswered = sum(s.method == "POST" and s.status != 201 for s in samples)
        extra = len(set(rows) - set(uids))
        answered = [s.seconds for s in samples if s.status is not None]
        return Outcome(
            scenario=name,
            faults=faults,
            accepted=len(uids),
            stored=sum(uid in stored for uid in uids),
            duplicates=sum(n - 1 for n in rows.values()) + max(0, extra - unanswered),
            lost=sum(uid not in stored and uid not in dead for uid in uids),
            dead_lettered={uid: dead[uid] for uid in uids if uid in dead},
            stored_without_201=extra,
            failed=failed,
            recovery_seconds=recoveries,
            slowest_answer=max(answered, default=0.0),
            requests=len(samples),
            settle_seconds=settle_seconds,
        )

    def sqs(self, colour: str) -> Any:
        return aws_client("sqs", self.colour(colour).sqs_url)

    def queues_empty(self) -> bool:
        for colour in ("blue", "green"):
            queues = self.colour(colour).queues
            attributes = self.sqs(colour).get_queue_attributes(
                QueueUrl=queues.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            if any(int(value) for value in attributes.values()):
                return False
        return True

    def dead_lettered(self) -> dict[str, str]:
        """Order id -> reason, for every order in either colour's DLQ (left in place)."""
        found: dict[str, str] = {}
        for colour in ("blue", "green"):
            sqs = self.sqs(colour)
            dlq = self.colour(colour).queues.dlq_url
            # A short visibility: the messages are back in place for the next look.
            got = receive_all(sqs, dlq, 20, VisibilityTimeout=2, MessageAttributeNames=["All"])
            for message in got:
                reason = message.get("MessageAttributes", {}).get("FailureReason", {})
                why = reason.get("StringValue") or "redrive: received too many times"
                try:
                    found[str(json.loads(message["Body"])["orderId"])] = why
                except (ValueError, KeyError, TypeError):
                    found[message["MessageId"]] = why
        return found


def failure(sample: Sample) -> str | None:
    if sample.error is not None:
        return sample.error.split(":", 1)[0]
    if sample.status is not None and not 200 <= sample.status < 300:
        return f"HTTP {sample.status}"
    return None


@dataclass
class Load:
    """Logged-in users ordering through the LB until stopped (or a hard time limit)."""

    users: list[LoadUser]
    threads: list[threading.Thread]
    stop_event: threading.Event

    @classmethod
    def start(cls, chaos: Chaos, limit_seconds: float = 600) -> Load:
        stop = threading.Event()
        deadline = time.monotonic() + limit_seconds
        users = [
            LoadUser(
                index,
                chaos.durable.lb_url,
                chaos.verify,
                stop,
                deadline,
                mix=ORDER_MIX,
                think_seconds=THINK_SECONDS,
                timeout=CLIENT_TIMEOUT_SECONDS,
            )
            for index in range(USERS)
        ]
        for user in users:
            user.login()
        threads = [threading.Thread(target=user.run, name=f"chaos-{user.index}") for user in users]
        for thread in threads:
            thread.start()
        return cls(users, threads, stop)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=CLIENT_TIMEOUT_SECONDS * 2 + 5)
        assert not any(thread.is_alive() for thread in self.threads), "a load user hung"

    def samples(self) -> list[Sample]:
        return [sample for user in self.users for sample in user.samples]

    def accepted(self) -> list[str]:
        return [uid for user in self.users for uid in user.order_uids]

    def usernames(self) -> list[str]:
        return [user.username for user in self.users]


def rows_per_order(bg: BlueGreenSystem, usernames: list[str]) -> dict[str, int]:
    """order uid -> rows, for every order these users have in the database."""
    marks = ",".join(["%s"] * len(usernames))
    rows = bg.system.query(
        ENV,
        "SELECT o.order_uid, COUNT(*) FROM orders o JOIN users u ON u.id = o.user_id"
        f" WHERE u.username IN ({marks}) GROUP BY o.order_uid",
        usernames,
    )
    return {str(uid): n for uid, n in rows}
