"""What the durable queue server costs, and how fast a colour heals when it is killed, on a
real deployed system, through the load balancer over TLS, all from one run (issue 17).

    .venv/bin/python bench/queue_durability.py [--rounds 3] [--seconds 20] [--connections 16]
                                               [--kills 3] [--queued 10000] [--ref HEAD]

A private system (temporary state directory, free ports), driven through the real CLI: a
release of ``--ref`` (HEAD by default, so that colleagues' uncommitted edits to the
services stay out of the figures; ``--ref ''`` builds the working tree), the durable layer,
and that release deployed twice, so that both colours run it. Blue's queue server is
durable, as deployed (``--state-dir``). Green's is turned into the old in-memory moto: the
harness re-applies green's supervisor program for its queue server with the same command
less ``--state-dir`` (``Supervisor.apply`` restarts a program whose definition changed) and
creates the queues again. Nothing else differs between the colours (same release, same
gateway and processor, same nginx, same database), and ``echobase switch`` moves the LB's
traffic between them, so the two modes are compared in one system under one load client.

Prints:

1. intake: POST /api/v1/orders through the LB, wrk at ``--connections`` clients (logged-in
   users' JWTs rotating), ``--rounds`` rounds of ``--seconds`` per mode, alternating
   (durable, in-memory, in-memory, durable, ...: a drift of the shared machine hits both
   modes alike), each after a switch and a 3 s warm-up. Orders/s and p99 per round, the
   median per mode, the ratio durable / in-memory (target: >= 0.90), the queue server's CPU
   per order, and group commit: journal entries written per fsync, from the server's own
   counters (``GET /echobase/journal``);
2. recovery: ``--kills`` times, SIGKILL of the live colour's queue server while wrk keeps the
   order load on: time from the kill to its port answering again (supervisord's restart,
   the interpreter's start, the journal's replay), to the first 201 through the LB (an
   order poller, POST every 10 ms), and to the LB's /health answering healthy for good
   (a poller every 20 ms; the gateway caches a healthy check for up to 5 s, so /health
   may stay healthy through a short outage: the degraded answers seen are counted);
3. restart and replay at depth: the processor paused (SIGSTOP), ``--queued`` orders queued,
   SIGKILL of the queue server: kill -> new process -> journal restored (its log line) ->
   port answering, the messages back, and then the processor draining them; beside it the
   in-memory queue server's restart (no journal) on the idle colour, as the baseline.

Needs wrk. On a shared 2-core box the figures move with the neighbours: compare the modes
within one run, and run it more than once.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import ssl
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx

from echobase.app.queues import ensure_queues
from echobase.platform.queue_journal import STATS_PATH
from echobase.platform.render.ephemeral import ColourPlan
from echobase.platform.render.supervisor import Program
from echobase.platform.runtime.services import ServiceRunner, http_answers, supervisor_for
from echobase.platform.runtime.supervisor import Supervisor
from support import (
    BENCH_SERVICE_SETTINGS,
    ENV,
    ORDER_BODY,
    System,
    WrkResult,
    alternating,
    cmdline,
    deploy_both_colours,
    fill_queue,
    first_user,
    intake_arguments,
    pid_of,
    queue_depth,
    register,
    tree_cpu,
    wait_healthy,
    wrk,
    wrk_request_script,
    wrk_row,
)

DURABLE, IN_MEMORY = "durable", "in-memory"
COLOUR_OF = {DURABLE: "blue", IN_MEMORY: "green"}
WARM_UP_SECONDS = 3
KILL_AFTER_SECONDS = 3.0  # of load, before the kill
RECOVERY_WINDOW_SECONDS = 15.0  # after the kill: a recovery slower than this is "not seen"
TARGET_RATIO = 0.90
TARGET_RECOVERY_SECONDS = 5.0
_RESTORED = re.compile(r"^(\S+ \S+) \S+ queue journal .*: (\d+) message\(s\) restored")


# --- group commit, as the server counts it ---------------------------------------------


def journal_stats(system: System, colour: str) -> dict[str, int]:
    """The durable queue server's own counters (appends = fsyncs, entries, compactions)."""
    port = system.stack.colour_service(colour, "sqs").port
    answer = httpx.get(f"{system.stack.url(port)}{STATS_PATH}", timeout=10)
    answer.raise_for_status()
    return {key: int(value) for key, value in answer.json().items()}


def journal_lines(queue_dir: Path) -> tuple[int, int]:
    """(entries, bytes) of a queue server's journal: one entry a line."""
    data = (queue_dir / "journal").read_bytes()
    return data.count(b"\n"), len(data)


# --- the two modes ------------------------------------------------------------------------


def in_memory(program: Program) -> Program:
    """The same queue server program without its journal: the old in-memory moto."""
    command = list(program.command)
    at = command.index("--state-dir")
    return replace(program, command=command[:at] + command[at + 2 :])


def make_in_memory(supervisor: Supervisor, plan: ColourPlan) -> None:
    """Redefine ``plan``'s queue server as in-memory; supervisord restarts it (a changed
    definition), and the colour's queues are created again, at the same URLs."""
    result = supervisor.apply([in_memory(plan.program("sqs"))])
    name = plan.service("sqs").name
    assert name in result.changed, f"{name} was not redefined: {result}"
    ServiceRunner(supervisor).wait(name, lambda: http_answers(plan.health_url("sqs")), 60)
    urls = ensure_queues(sqs_client(plan))
    assert urls == plan.queues, f"{urls} != {plan.queues}"


def sqs_client(plan: ColourPlan) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=plan.sqs_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


# --- intake -------------------------------------------------------------------------------


@dataclass
class Round:
    mode: str
    result: WrkResult
    queue_cpu_ms: float  # the queue server's CPU per good answer
    gateway_cpu_ms: float
    entries: int = 0  # journal lines written during the round (durable only)
    appends: int = 0  # fsyncs of the journal during the round
    compactions: int = 0


def intake_round(
    system: System,
    mode: str,
    lb_url: str,
    script: str,
    connections: int,
    seconds: float,
) -> Round:
    colour = COLOUR_OF[mode]
    system.cli("switch", colour, "--env", ENV)
    wrk(lb_url, script, connections, WARM_UP_SECONDS)
    pids = system.pids()
    queue_pid, gateway_pid = pids[f"{colour} sqs"], pids[f"{colour} api-gateway"]
    before = journal_stats(system, colour) if mode == DURABLE else None
    cpu_before = tree_cpu(queue_pid), tree_cpu(gateway_pid)
    result = wrk(lb_url, script, connections, seconds)
    cpu_after = tree_cpu(queue_pid), tree_cpu(gateway_pid)
    good = max(result.requests - result.bad_status, 1)
    this = Round(
        mode,
        result,
        (cpu_after[0] - cpu_before[0]) / good * 1000,
        (cpu_after[1] - cpu_before[1]) / good * 1000,
    )
    if before is not None:
        time.sleep(0.3)  # the processor's last deletes reach the journal
        after = journal_stats(system, colour)
        this.entries = after["entries"] - before["entries"]
        this.appends = after["appends"] - before["appends"]
        this.compactions = after["compactions"] - before["compactions"]
    return this


# --- recovery -------------------------------------------------------------------------------


class Poller(threading.Thread):
    """One request after another through the LB on a kept-alive connection: (sent,
    received, status), status 0 for a transport error."""

    def __init__(
        self,
        url: str,
        verify: ssl.SSLContext,
        method: str,
        path: str,
        pause: float,
        token: str | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.verify, self.method, self.path = url, verify, method, path
        self.pause, self.token, self.body = pause, token, body
        self.answers: list[tuple[float, float, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        headers = {"Origin": self.url, "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        with httpx.Client(
            base_url=self.url, verify=self.verify, headers=headers, timeout=10
        ) as http:
            while not self.halt.is_set():
                sent = time.monotonic()
                try:
                    status = http.request(self.method, self.path, content=self.body).status_code
                except httpx.TransportError:
                    status = 0
                self.answers.append((sent, time.monotonic(), status))
                time.sleep(self.pause)


def first_answer(answers: list[tuple[float, float, int]], since: float, ok: int) -> float | None:
    """When the first ``ok`` answer to a request sent after ``since`` arrived."""
    return min(
        (got for sent, got, status in answers if sent > since and status == ok), default=None
    )


def healthy_for_good(
    answers: list[tuple[float, float, int]], since: float
) -> tuple[float | None, int]:
    """When /health turned healthy and stayed so (after any degraded answer to a request
    sent after ``since``), as seconds after ``since``, and how many degraded answers there
    were. Never degraded: 0, healthy throughout."""
    after = [(got, status) for sent, got, status in answers if sent > since]
    bad = [i for i, (_, status) in enumerate(after) if status != 200]
    if not bad:
        return (since if after else None), 0
    if bad[-1] + 1 >= len(after):
        return None, len(bad)
    return after[bad[-1] + 1][0], len(bad)


@dataclass
class Restart:
    """One SIGKILL of a queue server and what followed, in seconds after the kill."""

    killed: float  # monotonic clock at the kill
    spawned: float | None  # the new process started (supervisord's restart)
    restored: float | None  # its journal replayed (its log line); None in-memory
    port: float | None  # its port answering HTTP
    messages: int | None  # messages the journal gave back
    journal_entries: int
    journal_bytes: int


def start_time(pid: int) -> float:
    """A process's start, wall clock, from /proc (1/CLK_TCK steps). Its start is kept in
    ticks since boot; /proc/stat's btime is rounded to the second, so the boot's wall time
    comes from CLOCK_BOOTTIME instead."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def restored_line(log: Path, after: float) -> tuple[float, int] | None:
    """(wall time, messages) of the last "restored" line of the queue server's log, if it
    was written after ``after`` (wall clock). The log's stamps have millisecond steps."""
    with log.open("rb") as handle:
        handle.seek(max(0, handle.seek(0, os.SEEK_END) - 65536))
        lines = handle.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        match = _RESTORED.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            return (stamp, int(match.group(2))) if stamp >= after - 0.01 else None
    return None


def kill_queue_server(
    supervisor: Supervisor, plan: ColourPlan, on_kill: Callable[[], None] = lambda: None
) -> Restart:
    """SIGKILL the colour's queue server, then watch supervisord bring it back."""
    name = plan.service("sqs").name
    old = pid_of(supervisor, name)
    durable = "--state-dir" in cmdline(old)
    entries, size = journal_lines(plan.queue_dir) if durable else (0, 0)
    killed_wall, killed = time.time(), time.monotonic()
    os.kill(old, signal.SIGKILL)
    on_kill()
    port = None
    while time.monotonic() - killed < 60:
        if http_answers(plan.health_url("sqs")):
            port = time.monotonic() - killed
            break
        time.sleep(0.005)
    new = pid_of(supervisor, name)
    spawned = start_time(new) - killed_wall if new != old else None
    restored, messages = None, None
    if durable and (line := restored_line(Path(plan.program("sqs").log_file), killed_wall)):
        restored, messages = line[0] - killed_wall, line[1]
    return Restart(killed, spawned, restored, port, messages, entries, size)


@dataclass
class Recovery:
    restart: Restart
    first_201: float | None
    healthy: float | None
    degraded_answers: int
    failed_orders: int  # the poller's orders not answered 201 after the kill
    slowest_order: float  # the poller's longest wait for an answer, from the kill on
    slowest_health: float
    load: WrkResult | None


def recover_under_load(
    system: System,
    supervisor: Supervisor,
    plan: ColourPlan,
    verify: ssl.SSLContext,
    tokens: list[str],
    script: str,
    connections: int,
) -> Recovery:
    lb_url = system.plan().lb_url
    load: list[WrkResult] = []
    loader = threading.Thread(
        target=lambda: load.append(
            wrk(lb_url, script, connections, KILL_AFTER_SECONDS + RECOVERY_WINDOW_SECONDS)
        ),
        daemon=True,
    )
    orders = Poller(lb_url, verify, "POST", "/api/v1/orders", 0.01, tokens[0], ORDER_BODY)
    health = Poller(lb_url, verify, "GET", "/health", 0.02)
    for thread in (loader, orders, health):
        thread.start()
    time.sleep(KILL_AFTER_SECONDS)
    # Returns once the port answers again; the pollers keep going meanwhile.
    restart = kill_queue_server(supervisor, plan)
    killed = restart.killed
    while time.monotonic() - killed < RECOVERY_WINDOW_SECONDS:
        if (
            first_answer(orders.answers, killed, 201)
            and healthy_for_good(health.answers, killed)[0]
        ):
            break
        time.sleep(0.05)
    loader.join()
    # /health must stay healthy for a while before "for good" means anything.
    time.sleep(max(0.0, killed + RECOVERY_WINDOW_SECONDS - time.monotonic()))
    orders.halt.set()
    health.halt.set()
    orders.join()
    health.join()
    first = first_answer(orders.answers, killed, 201)
    healthy, degraded = healthy_for_good(health.answers, killed)
    failed = sum(1 for sent, _, status in orders.answers if sent > killed and status != 201)

    def slowest(answers: list[tuple[float, float, int]]) -> float:
        # Requests sent just before the kill waited for the restart too.
        return max((got - sent for sent, got, _ in answers if got > killed), default=0.0)

    return Recovery(
        restart,
        None if first is None else first - killed,
        None if healthy is None else healthy - killed,
        degraded,
        failed,
        slowest(orders.answers),
        slowest(health.answers),
        load[0] if load else None,
    )


# --- output -------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.2f}"


def median_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if len(known) == len(values) and known else None


def restart_row(label: str, r: Restart) -> str:
    journal = f"journal {r.journal_entries} entries, {r.journal_bytes / 2**20:.1f} MiB"
    restored = "" if r.messages is None else f", {r.messages} messages restored"
    return (
        f"  {label:<34} spawned {seconds(r.spawned)} s  restored {seconds(r.restored)} s"
        f"  port {seconds(r.port)} s  ({journal if r.journal_bytes else 'no journal'}{restored})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    intake_arguments(parser)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs under load")
    parser.add_argument("--queued", type=int, default=10_000)
    args = parser.parse_args()

    system = System.create(BENCH_SERVICE_SETTINGS)
    paused: int | None = None
    try:
        release, bluegreen, plans = deploy_both_colours(system, args.ref)
        durable, memory = plans["blue"], plans["green"]
        supervisor = supervisor_for(system.home)
        make_in_memory(supervisor, memory)
        wait_healthy(bluegreen, "green")
        for mode, plan in ((DURABLE, durable), (IN_MEMORY, memory)):
            command = cmdline(pid_of(supervisor, plan.service("sqs").name))
            assert ("--state-dir" in command) == (mode == DURABLE), (mode, command)
        lb = system.plan()
        verify = ssl.create_default_context(cafile=str(lb.load_balancer.cert_file))
        print(
            f"system in {system.home}: release {release.id} ({args.ref or 'working tree'});"
            f" blue's queue server durable, green's in-memory; {os.cpu_count()} CPUs,"
            f" load average {os.getloadavg()[0]:.2f}"
        )

        tokens = register(lb.lb_url, verify, args.users)
        script = wrk_request_script("POST", "/api/v1/orders", tokens, ORDER_BODY, origin=lb.lb_url)
        c = args.connections
        print(
            f"\nintake: POST /api/v1/orders via the LB (TLS), {c} connections,"
            f" {args.seconds:.0f} s a round after {WARM_UP_SECONDS} s of warm-up"
        )
        rounds: list[Round] = []
        for number, mode in alternating(args.rounds, (DURABLE, IN_MEMORY)):
            this = intake_round(system, mode, lb.lb_url, script, c, args.seconds)
            rounds.append(this)
            extra = f"  queue server CPU {this.queue_cpu_ms:.2f} ms/order"
            if mode == DURABLE:
                per = this.entries / max(this.appends, 1)
                extra += (
                    f", {this.entries} journal entries in {this.appends} fsyncs"
                    f" ({per:.1f}/fsync), {this.compactions} compaction(s)"
                )
            print(wrk_row(f"  round {number + 1} {mode}", this.result, "orders/s"))
            print(f"  {'':<52}{extra}")
        medians = {}
        for mode in (DURABLE, IN_MEMORY):
            mine = [r for r in rounds if r.mode == mode]
            medians[mode] = (
                statistics.median(r.result.rate for r in mine),
                statistics.median(r.result.p99_ms for r in mine),
                statistics.median(r.queue_cpu_ms for r in mine),
                statistics.median(r.gateway_cpu_ms for r in mine),
            )
            rate, p99, queue_cpu, gateway_cpu = medians[mode]
            print(
                f"  median {mode:<10} {rate:8.1f} orders/s  p99 {p99:6.1f} ms"
                f"  CPU ms/order: queue server {queue_cpu:.2f}, gateway {gateway_cpu:.2f}"
            )
        ratio = medians[DURABLE][0] / medians[IN_MEMORY][0]
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(f"  durable / in-memory orders/s: {ratio:.3f} (target >= {TARGET_RATIO}: {verdict})")
        print(f"  durable / in-memory p99: {medians[DURABLE][1] / medians[IN_MEMORY][1]:.2f}")
        entries = sum(r.entries for r in rounds)
        appends = sum(r.appends for r in rounds if r.mode == DURABLE)
        if appends:
            print(f"  group commit: {entries / appends:.1f} journal entries per fsync overall")

        system.cli("switch", "blue", "--env", ENV)
        print(
            f"\nrecovery: SIGKILL of blue's (live, durable) queue server under the order load"
            f" ({c} connections), {args.kills} times; seconds after the kill"
        )
        recoveries = []
        for number in range(args.kills):
            wait_healthy(bluegreen, "blue")
            time.sleep(2)
            rec = recover_under_load(system, supervisor, durable, verify, tokens, script, c)
            recoveries.append(rec)
            print(restart_row(f"kill {number + 1}: queue server", rec.restart))
            health = (
                f"/health healthy for good {seconds(rec.healthy)} s"
                f" ({rec.degraded_answers} degraded answers)"
                if rec.degraded_answers
                else "/health stayed healthy (the gateway's cached check)"
            )
            ok = rec.load.requests - rec.load.bad_status if rec.load else 0
            failed = rec.load.bad_status + rec.load.errors if rec.load else 0
            print(
                f"  {'':<34} first 201 via LB {seconds(rec.first_201)} s  {health};"
                f" poller orders failed {rec.failed_orders}; wrk {ok} ok, {failed} failed;"
                f" slowest answer: order {rec.slowest_order:.2f} s,"
                f" /health {rec.slowest_health:.2f} s"
            )
        first = median_of([r.first_201 for r in recoveries])
        healthy = median_of([r.healthy for r in recoveries])
        port = median_of([r.restart.port for r in recoveries])
        for label, value in (("first 201", first), ("/health healthy", healthy)):
            ok = value is not None and value < TARGET_RECOVERY_SECONDS
            print(
                f"  median kill -> {label}: {seconds(value)} s"
                f" (target < {TARGET_RECOVERY_SECONDS:.0f} s: {'met' if ok else 'MISSED'})"
            )
        print(f"  median kill -> queue server's port answering: {seconds(port)} s")

        print("\nrestart and replay at depth (no load; processor paused with SIGSTOP)")
        idle = kill_queue_server(supervisor, memory)
        print(restart_row("green, in-memory, empty", idle))
        ensure_queues(sqs_client(memory))  # the in-memory server came back without them
        sqs = sqs_client(durable)
        processor = pid_of(supervisor, durable.service("order-processor").name)
        os.kill(processor, signal.SIGSTOP)
        paused = processor
        empty = kill_queue_server(supervisor, durable)
        print(
            restart_row(
                f"blue, durable, {queue_depth(sqs, durable.queues.queue_url)} queued", empty
            )
        )
        fill_queue(
            lambda: sqs, durable.queues.queue_url, first_user(bluegreen.database()), args.queued
        )
        depth = queue_depth(sqs, durable.queues.queue_url)
        deep = kill_queue_server(supervisor, durable)
        after = queue_depth(sqs, durable.queues.queue_url)
        print(restart_row(f"blue, durable, {depth} queued", deep))
        print(f"  {'':<34} queued after the restart: {after} (before: {depth})")
        os.kill(processor, signal.SIGCONT)
        paused = None
        started = time.monotonic()
        while queue_depth(sqs, durable.queues.queue_url) > 0 and time.monotonic() - started < 300:
            time.sleep(0.5)
        left = queue_depth(sqs, durable.queues.queue_url)
        took = time.monotonic() - started
        print(
            f"  {'':<34} then the processor drained them in {took:.1f} s"
            f" ({(after - left) / took:.0f} orders/s; {left} left)"
        )
    finally:
        if paused is not None:
            os.kill(paused, signal.SIGCONT)
        system.destroy()


if __name__ == "__main__":
    main()
