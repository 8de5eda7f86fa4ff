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

from bluegreen_support import REPO, BlueGreenSystem, lb_client, stored_orders
from durable_support import alive, children, cmdline
from echobase.platform.durable.credentials import aws_client
from echobase.platform.durable.layer import unsupervised
from echobase.platform.render.durable import DurablePlan
from echobase.platform.render.ephemeral import ColourPlan, other_colour
from echobase.platform.runtime.machine import this_machine
from echobase.platform.runtime.orphans import group_members
from echobase.platform.runtime.services import supervisor_for
from echobase.platform.runtime.supervisor import Supervisor
from load_support import LoadUser, Sample
from tests_support import receive_all, sign_up

from .books import Books, Verdict, balance

ENV = "devlocal"
OUTCOMES: list[Outcome] = []  # for the table at the end of the run
FULL = os.environ.get("ECHOBASE_CHAOS", "short") == "full"
SEED = int(os.environ.get("ECHOBASE_CHAOS_SEED", str(random.SystemRandom().randrange(10**6))))
USERS = 6
# More than one, whatever the machine's default (one on 2 CPUs): a worker's death, its
# replacement by uvicorn and an orphaned worker are what the gateway scenarios are about.
GATEWAY_WORKERS = 2
ORDER_MIX = (("POST", "/api/v1/orders"), ("POST", "/api/v1/orders"), ("GET", "/api/v1/products"))
RECOMMENDED = "/api/v1/products/recommended"
# The recommendations service's own scenario also asks for recommendations. The others keep
# the mix their figures were measured with: one more GET per loop on kept-alive connections
# is one more chance of the reload race a switch causes (issue 20), which a non-resending
# client sees as a failed request.
RECOMMENDING_MIX = (*ORDER_MIX, ("GET", RECOMMENDED))
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
KILLS = 3 if FULL else 2  # faults per SIGKILL-a-durable-process scenario: switch + rollback
QUEUED_ORDERS = 1000  # waiting in the live queue when its server is killed


def answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Outcome:
    """One scenario's books and their verdict (books.balance)."""

    scenario: str
    faults: int
    verdict: Verdict
    dead_lettered: dict[str, str | None]
    failed: Counter[str]
    recovery_seconds: list[float]
    slowest_answer: float
    requests: int
    settle_seconds: float  # from the load's end until every accepted order was accounted for
    notes: list[str] = field(default_factory=list)  # what the scenario measured besides

    @property
    def accepted(self) -> int:
        return self.verdict.accepted

    def row(self) -> list[str]:
        failed = ", ".join(f"{why} {n}" for why, n in self.failed.most_common()) or "-"
        v = self.verdict
        return [
            self.scenario,
            str(self.faults),
            str(self.requests),
            str(v.accepted),
            str(v.stored),
            str(v.duplicates),
            str(v.lost),
            str(v.dlq),
            str(v.expected_dlq),
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
    "DLQ expected",
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
    notes = [f"  {o.scenario}: {note}" for o in outcomes for note in o.notes]
    return (
        f"chaos ({mode} form, seed {SEED}):\n"
        + "\n".join(lines)
        + ("\nnotes:\n" + "\n".join(notes) if notes else "")
    )


@dataclass
class Chaos:
    bg: BlueGreenSystem
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))

    def __post_init__(self) -> None:
        self.supervisor: Supervisor = supervisor_for(self.bg.system.home)
        self.durable: DurablePlan = self.bg.system.plan(ENV)
        self.lb = self.durable.load_balancer
        self.verify = ssl.create_default_context(cafile=str(self.lb.cert_file))
        self.probe = httpx.Client(timeout=2, verify=self.verify)
        self.outages: list[tuple[float, float]] = []  # (down, back up), monotonic
        self.dlq_before: set[str] = set()  # DLQ entries from before the scenario
        self.notes: list[str] = []
        self.load: Load | None = None

    def close(self) -> None:
        self.probe.close()

    # --- names and places, all from the one description of the stack ----------------

    def colour(self, colour: str) -> ColourPlan:
        return ColourPlan(
            self.durable.stack, colour, ENV, python=Path(), release_id="", machine=this_machine()
        )

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

    def kill_durable(self, role: str, healthy: Callable[[], bool]) -> tuple[float, float]:
        """SIGKILL a durable service's process (supervisor restarts it); returns (recovery,
        seconds until ``healthy`` first held, i.e. the service itself answered again)."""
        program = self.durable_program(role)
        live = self.live()
        victim = self.pid(program)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        answered: list[float] = []

        def back() -> bool:
            info = self.supervisor.info(program)
            if info is None or info.pid in (None, victim) or not healthy():
                return False
            if not answered:
                answered.append(time.monotonic() - killed)
            return True

        recovery = self.wait_whole(killed, back)
        assert self.live() == live, "the live colour changed across a kill"
        return recovery, answered[0]

    def kill_mariadb(self) -> float:
        """SIGKILL mariadbd under load: InnoDB crash recovery, with the key fetched again from
        the secrets store by the launcher (encryption at rest)."""
        log = self.durable.database.log_file
        before = log.stat().st_size if log.exists() else 0
        killed = time.monotonic()
        recovery, answered = self.kill_durable("mariadb", self.database_answers)
        self.outages.append((killed, killed + answered))
        with log.open("rb") as handle:
            handle.seek(before)
            text = handle.read().decode(errors="replace")
        # MariaDB 10.11 says "Starting crash recovery from checkpoint LSN=...": proof that
        # the kill left work for the redo log, not a clean shutdown.
        crash = [line.split("] ", 1)[-1] for line in text.splitlines() if "crash recovery" in line]
        assert crash, f"no InnoDB crash recovery in {log} after the kill:\n{text[-2000:]}"
        self.notes.append(f"database answered {answered:.2f} s after the kill; {crash[0]}")
        return recovery

    def database_answers(self) -> bool:
        try:
            self.bg.system.query(ENV, "SELECT 1")
            return True
        except Exception:
            return False

    def kill_secrets(self) -> float:
        """SIGKILL the secrets store while a writer keeps changing a secret: every write it
        acknowledged before the kill must be in the journal it replays."""
        writer = SecretWriter(self.bg.system.secrets_client(ENV))
        writer.start()
        try:
            assert writer.wait_writes(20), "the secret writer made no progress"
            client = self.bg.system.secrets_client(ENV)
            recovery, answered = self.kill_durable(
                "secrets", lambda: answers(self.probe, f"{self.durable.secrets_url}/moto-api/")
            )
            acknowledged = writer.pause()
            value = int(client.get_secret_value(SecretId=SecretWriter.NAME)["SecretString"])
            # The write in flight at the kill may or may not have reached the journal;
            # nothing acknowledged may be missing.
            assert value >= acknowledged, f"journal lost writes: {value} < {acknowledged}"
            assert self.bg.system.secret_values(ENV), "the durable secrets are gone"
            self.notes.append(
                f"store answered {answered:.2f} s after the kill; {acknowledged} writes "
                f"acknowledged, {value} replayed"
            )
        finally:
            writer.stop()
        return recovery

    def kill_nginx(self) -> float:
        """SIGKILL nginx's master only: its workers live on, holding the ports (what a crash
        of the master leaves); the launcher must retire them before the new master binds."""
        program = self.durable_program("nginx")
        master = self.pid(program)
        workers = children(master)
        recovery, answered = self.kill_durable(
            "nginx",
            lambda: (
                not any(alive(pid) for pid in workers)
                and answers(self.probe, f"{self.durable.lb_url}/health")
            ),
        )
        self.notes.append(f"old workers gone and LB answering {answered:.2f} s after the kill")
        return recovery

    def kill_prometheus(self) -> float:
        ready = self.durable.prometheus.ready_url
        recovery, answered = self.kill_durable("prometheus", lambda: answers(self.probe, ready))
        self.notes.append(f"Prometheus ready {answered:.2f} s after the kill (WAL replayed)")
        return recovery

    def kill_mcp(self) -> float:
        """SIGKILL the recommendations service under load: the gateways answer the
        recommended list (empty) meanwhile and get real lists again by themselves."""
        probe = self.shopper()
        killed = time.monotonic()
        recovery, answered = self.kill_durable(
            "mcp", lambda: answers(self.probe, self.durable.mcp_health_url)
        )
        listed = wait_for(lambda: bool(recommended(probe)), RECOVERY_LIMIT_SECONDS) - killed
        probe.close()
        self.notes.append(
            f"service answered {answered:.2f} s after the kill; the live gateway listed "
            f"recommendations again after {listed:.2f} s"
        )
        return recovery

    def shopper(self) -> httpx.Client:
        """A signed-in user who never orders: anything ordered at all is recommended to them."""
        client = lb_client(self.bg, headers={"Origin": self.durable.lb_url})
        sign_up(client, f"probe_{self.rng.randrange(10**9)}", "Chaos Probe")
        return client

    def source_of_live(self) -> Path:
        """The checkout a user would run `echobase up` from: the one the live colour runs,
        so that up recovers and finds nothing to deploy."""
        release = (self.durable.stack.ephemeral_dir(self.live()) / "release").read_text().strip()
        return REPO if release == self.bg.release_a.id else self.bg.workdir / "src-b"

    def kill_supervisord(self) -> float:
        """SIGKILL supervisord under load; traffic must keep flowing through the orphans;
        then `echobase up`, and every program must run under the new supervisord."""
        source = self.source_of_live()
        old = self.supervisor.daemon_pid()
        assert old is not None
        before = {info.name: info.pid for info in self.supervisor.all_info()}
        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        assert self.load is not None
        accepted = len(self.load.accepted())
        deadline = killed + 30
        while len(self.load.accepted()) < accepted + 50:  # traffic flows, unsupervised
            assert time.monotonic() < deadline, "no orders accepted after supervisord died"
            time.sleep(0.05)
        orphans = unsupervised(self.durable.stack)
        assert {o.program for o in orphans} == set(before), orphans
        flowing = time.monotonic() - killed
        unsupervised_orders = len(self.load.accepted()) - accepted
        began = time.monotonic()
        result = self.bg.system.ok("up", cwd=source, timeout=300)
        print(f"echobase up after SIGKILL supervisord:\n{result.stderr}")  # with -s: each step
        assert "recovered:" in result.stderr and "already up to date" in result.stderr, (
            result.stderr[-3000:]
        )
        up_seconds = time.monotonic() - began
        new = self.supervisor.daemon_pid()
        assert new not in (None, old)
        after = {info.name: info for info in self.supervisor.all_info()}
        assert set(after) == set(before)
        for name, info in after.items():
            assert info.state == "RUNNING" and info.pid != before[name], (name, info)
        assert unsupervised(self.durable.stack) == []
        recovery = self.wait_whole(began)
        self.notes.append(
            f"{unsupervised_orders} orders accepted in the {flowing:.1f} s "
            f"unsupervised before `echobase up`; up took {up_seconds:.1f} s"
        )
        return recovery

    def kill_queue_server(self) -> float:
        """With the live processor stopped (SIGSTOP) until over QUEUED_ORDERS orders wait in
        the queue, SIGKILL the live colour's queue server, then let the processor go on.
        Needs a queue server that keeps its queue across a crash (a journal)."""
        colour = self.live()
        plan = self.colour(colour)
        processor = self.pid(self.colour_program(colour, "order-processor"))
        program = self.colour_program(colour, "sqs")
        victim = self.pid(program)
        os.kill(processor, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 180
            while self.queue_depth(colour) <= QUEUED_ORDERS:
                assert time.monotonic() < deadline, "the queue did not fill"
                time.sleep(0.2)
            queued = self.queue_depth(colour)
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
        finally:
            os.kill(processor, signal.SIGCONT)
        assert self.load is not None

        def served() -> bool:
            assert self.load is not None
            return any(
                s.status == 201 and s.started + s.seconds > killed for s in self.load.samples()
            )

        first_201 = wait_for(served, RECOVERY_LIMIT_SECONDS) - killed
        recovery = self.wait_whole(
            killed,
            lambda: self.pid(program) != victim and answers(self.probe, plan.health_url("sqs")),
        )
        self.notes.append(
            f"{queued} queued at the kill; first 201 through the LB {first_201:.2f} s after "
            f"it, colour whole after {recovery:.2f} s"
        )
        return recovery

    def power_loss(self) -> float:
        """Every process of the system at once: supervisord and every program's process
        group, stopped first (SIGSTOP) so none reacts to another's death, then SIGKILLed.
        Then `echobase up`."""
        source = self.source_of_live()  # asked of the LB, so while it answers
        daemon = self.supervisor.daemon_pid()
        assert daemon is not None
        groups = [info.pid for info in self.supervisor.all_info() if info.pid]
        victims = [daemon, *(pid for group in groups for pid in group_members(group))]
        for pid in victims:
            os.kill(pid, signal.SIGSTOP)
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: not any(alive(pid) for pid in victims), 30)
        result = self.bg.system.ok("up", cwd=source, timeout=300)
        assert "already up to date" in result.stderr, result.stderr[-3000:]
        recovery = self.wait_whole(killed)
        self.notes.append(f"{len(victims)} processes killed; whole again {recovery:.1f} s later")
        return recovery

    def queue_depth(self, colour: str) -> int:
        attributes = self.sqs(colour).get_queue_attributes(
            QueueUrl=self.colour(colour).queues.queue_url,
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    # --- the scenario -------------------------------------------------------------------

    def run(
        self,
        name: str,
        fault: Callable[[], float],
        count: int,
        mix: tuple[tuple[str, str], ...] = ORDER_MIX,
    ) -> tuple[Outcome, Load]:
        self.dlq_before = set(self.dead_lettered())
        self.notes = []
        self.outages.clear()
        load = Load.start(self, mix=mix)
        self.load = load
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
        samples = load.samples()
        failed = Counter(failure(s) for s in samples if failure(s) is not None)
        answered = [s.seconds for s in samples if s.status is not None]
        # Every entry that reached a DLQ during the scenario, ours or not: an order whose
        # POST got no 201 counts as much as an acknowledged one.
        new_dead = {key: why for key, why in dead.items() if key not in self.dlq_before}
        books = Books(
            accepted=uids,
            rows=rows_per_order(self.bg, load.usernames()),
            dead_lettered=new_dead,
            unanswered_posts=sum(s.method == "POST" and s.status != 201 for s in samples),
            expected_dlq=0,  # every fault here is transient
        )
        return Outcome(
            scenario=name,
            faults=faults,
            verdict=balance(books),
            dead_lettered=new_dead,
            failed=failed,
            recovery_seconds=recoveries,
            slowest_answer=max(answered, default=0.0),
            requests=len(samples),
            settle_seconds=settle_seconds,
            notes=self.notes,
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

    def dead_lettered(self) -> dict[str, str | None]:
        """Order id -> the processor's FailureReason (None: moved by the redrive policy),
        for every message in either colour's DLQ (left in place)."""
        found: dict[str, str | None] = {}
        for colour in ("blue", "green"):
            sqs = self.sqs(colour)
            dlq = self.colour(colour).queues.dlq_url
            # A short visibility: the messages are back in place for the next look.
            got = receive_all(sqs, dlq, 20, VisibilityTimeout=2, MessageAttributeNames=["All"])
            for message in got:
                reason = message.get("MessageAttributes", {}).get("FailureReason", {})
                why = reason.get("StringValue")
                try:
                    found[str(json.loads(message["Body"])["orderId"])] = why
                except (ValueError, KeyError, TypeError):
                    found[message["MessageId"]] = why
        return found


def recommended(client: httpx.Client) -> list[dict[str, Any]]:
    try:
        answer = client.get(RECOMMENDED)
    except httpx.HTTPError:
        return []
    return answer.json()["recommendedProducts"] if answer.status_code == 200 else []


def wait_for(condition: Callable[[], bool], limit: float) -> float:
    """Poll until ``condition`` holds; the monotonic time it first did."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"not within {limit:.0f} s"
        time.sleep(0.05)
    return time.monotonic()


class SecretWriter:
    """Changes one secret as fast as the store lets it, remembering the last value the
    store acknowledged: the journal's promise is that none of those is lost."""

    NAME = "echobase/chaos/journal-probe"

    def __init__(self, client: Any) -> None:
        self.client = client
        self.acknowledged = 0
        self.writes = 0
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-secret-writer")

    def start(self) -> None:
        try:
            self.acknowledged = int(
                self.client.get_secret_value(SecretId=self.NAME)["SecretString"]
            )
        except self.client.exceptions.ResourceNotFoundException:
            self.client.create_secret(Name=self.NAME, SecretString="0")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                time.sleep(0.02)
                continue
            value = self.acknowledged + 1
            try:
                self.client.put_secret_value(SecretId=self.NAME, SecretString=str(value))
            except Exception:  # the store is down: try again, it is what a client does
                time.sleep(0.05)
                continue
            self.acknowledged = value
            self.writes += 1

    def wait_writes(self, count: int) -> bool:
        deadline = time.monotonic() + 30
        while self.writes < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.writes >= count

    def pause(self) -> int:
        """Stop writing (after the write in flight) and return the last acknowledged."""
        self._paused.set()
        time.sleep(0.2)  # let a write in flight finish or fail
        return self.acknowledged

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


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
    def start(
        cls, chaos: Chaos, mix: tuple[tuple[str, str], ...] = ORDER_MIX, limit_seconds: float = 600
    ) -> Load:
        stop = threading.Event()
        deadline = time.monotonic() + limit_seconds
        users = [
            LoadUser(
                index,
                chaos.durable.lb_url,
                chaos.verify,
                stop,
                deadline,
                mix=mix,
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
