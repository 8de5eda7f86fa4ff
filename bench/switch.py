"""Blue-green figures: how fast `echobase switch` moves traffic, and what `deploy` and `up`
cost, on a private system (temporary state directory, free ports) beside anything running.

    .venv/bin/python bench/switch.py [--runs 5] [--up-runs 1] [--skip-up] [--load-switches 100]

1. Builds two releases into a fresh state directory (this working tree, and HEAD plus one
   commit in a temporary clone), sets the durable layer up, deploys both (green, blue).
2. switch, ``--runs`` times each way, alternating colours, while a poller asks ``/health``
   through the load balancer every ~5 ms on a kept-alive connection: time from starting the
   command until the first answer from the new colour (X-Served-By), the command's wall
   time and its own figure (``seconds`` in ``--json``); and the same through the Python API
   (``BlueGreen.switch`` in this process), which leaves out the CLI's start-up (~0.7 s of
   imports on the 2-core box). "stale" counts polls sent after the switch returned but
   answered by the old colour (must be 0).
   Then ``--load-switches`` (100) switches, one every 0.6 s, while two wrk loads of
   ``--load-connections`` (8) clients each ask GET /health through the LB, one on kept-alive
   connections and one opening a connection per request: requests that failed (socket
   errors, non-2xx) over all the switches, and each one's first answer from the new colour.
   wrk does not resend a request whose kept-alive connection a reload closed, as browsers
   do. Needs wrk (``apt-get install wrk``).
3. deploy ``--release``, ``--runs`` times, alternating the two releases (each one drains
   the idle colour's previous run, starts the new one, smoke-tests, switches, smoke-tests).
4. up, ``--up-runs`` times, each from a new empty state directory with the repository as
   working directory: the first ``up`` (builds the release *and its dependency layer*, as a
   fresh clone does: nothing is shared between state directories), ``up`` again (nothing
   to do), then ``down --all`` and ``up`` (the state kept: releases, data, the record of the
   live colour). The steps come from the CLI's own "done <step> (N s)" lines.

Prints medians, min and max, and the targets. The machine is whatever runs it: on a shared
2-core box the figures move with the neighbours; compare figures within one run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx

from echobase.platform.bluegreen.pipeline import BlueGreen
from echobase.platform.release import build_release, clone_with_commit
from echobase.platform.stack import Stack

# The never-resending client the zero-downtime test uses, so bench and test mean the same.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from load_support import NeverResending
from support import (
    BENCH_SERVICE_SETTINGS,
    ENV,
    ORDER_BODY,
    REPO,
    System,
    WrkResult,
    database_credentials,
    register,
    stored_counts,
    wrk,
    wrk_request_script,
)

POLL_SECONDS = 0.005
TARGETS = {
    "switch: first answer from the new colour": 0.5,
    "switches under load: first answer from the new colour": 0.5,
    "switch: command wall time": 1.5,
    "deploy --release: command wall time": 20.0,
    "up: fresh state directory": 60.0,
}
_DONE = re.compile(r"^\s*done (.+) \((\d+(?:\.\d+)?)s\)\s*$")


def done_steps(stderr: str) -> list[tuple[str, float]]:
    """The CLI's progress lines: ("step", seconds) in order."""
    found = []
    for line in stderr.splitlines():
        match = _DONE.match(line)
        if match:
            found.append((match.group(1), float(match.group(2))))
    return found


class Poller(threading.Thread):
    """GET /health through the LB every POLL_SECONDS on one kept-alive connection; a
    connection a reload closes is replaced at once (counted, not fatal)."""

    def __init__(self, url: str, verify: ssl.SSLContext) -> None:
        super().__init__(daemon=True)
        self.url, self.verify = url, verify
        self.answers: list[tuple[float, float, str | None]] = []  # sent, received, colour
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, verify=self.verify, timeout=5) as http:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    response = http.get("/health")
                except httpx.TransportError:
                    self.failures += 1
                    continue
                self.answers.append((sent, time.monotonic(), response.headers.get("x-served-by")))
                time.sleep(POLL_SECONDS)


def switch_once(
    system: System,
    target: str,
    verify: ssl.SSLContext,
    in_process: Callable[[str], float] | None = None,
) -> dict[str, float]:
    """One switch to ``target`` under the poller: through the CLI, or ``in_process`` (the
    Python API, returning its own seconds) to see what the interpreter's start-up costs."""
    poller = Poller(system.plan().lb_url, verify)
    poller.start()
    time.sleep(0.3)  # the poller's connection is up and answering
    started = time.monotonic()
    if in_process is None:
        wall, result = system.cli("switch", target, "--json", "--env", ENV)
        own = float(json.loads(result.stdout)["seconds"])
    else:
        own = in_process(target)
        wall = time.monotonic() - started
    ended = time.monotonic()
    deadline = ended + 5
    while time.monotonic() < deadline and not any(
        colour == target and sent >= started for sent, _, colour in poller.answers
    ):
        time.sleep(0.01)
    time.sleep(0.2)
    poller.stop.set()
    poller.join()
    first = min(
        (received for sent, received, colour in poller.answers if colour == target),
        default=float("nan"),
    )
    # Requests sent after the command returned but answered by the old colour: with the
    # switch confirmed by every nginx worker, none.
    stale = sum(1 for sent, _, colour in poller.answers if sent > ended and colour != target)
    return {
        "first answer": first - started,
        "wall": wall,
        "in-process": own,
        "stale": float(stale),
        "poller failures": float(poller.failures),
        "polls": float(len(poller.answers)),
    }


def summary(name: str, values: list[float], target: float | None = None) -> str:
    finite = [v for v in values if v == v]  # drop NaN (no answer seen)
    if not finite:
        return f"{name:<56} {'-':>8}"
    line = (
        f"{name:<56} {statistics.median(finite):8.3f} {min(finite):8.3f} {max(finite):8.3f}"
        f" {len(finite):5d}"
    )
    if target is not None:
        verdict = "ok" if statistics.median(finite) < target else "OVER"
        line += f"   < {target:g}  {verdict}"
    return line


def switches_under_load(
    system: System,
    bluegreen: BlueGreen,
    verify: ssl.SSLContext,
    live: str,
    count: int,
    connections: int,
    every: float = 0.6,
) -> tuple[str, dict[str, list[float]]]:
    """``count`` switches (Python API, alternating, one every ``every`` s) under two wrk
    loads of GET /health through the LB, ``connections`` clients each: one on kept-alive
    connections, one opening a connection per request; the poller times each switch's first
    answer from the new colour. Returns the live colour after."""
    lb_url = system.plan().lb_url
    seconds = 4 + count * every
    loads = {
        "kept-alive connections": wrk_request_script("GET", "/health"),
        "a connection per request": wrk_request_script(
            "GET", "/health", headers={"Connection": "close"}
        ),
    }
    results: dict[str, WrkResult] = {}

    def run(name: str, script: str) -> None:
        results[name] = wrk(lb_url, script, connections, seconds, threads=1)

    threads = [threading.Thread(target=run, args=item) for item in loads.items()]
    poller = Poller(lb_url, verify)
    token = register(lb_url, verify, 1)[0]
    orders = NeverResending(
        lb_url,
        verify,
        "POST",
        "/api/v1/orders",
        threading.Event(),
        time.monotonic() + seconds + 30,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        | {"Origin": lb_url},
        body=ORDER_BODY.encode(),
    )
    order_thread = threading.Thread(target=orders.run, daemon=True)
    for thread in threads:
        thread.start()
    poller.start()
    order_thread.start()
    time.sleep(2)  # the loads and the poller are answering before the first switch
    switches: list[tuple[float, str]] = []
    begun = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, begun + n * every - time.monotonic()))
        live = "green" if live == "blue" else "blue"
        switches.append((time.monotonic(), live))
        bluegreen.switch(live)
    took = time.monotonic() - begun
    for thread in threads:
        thread.join()
    poller.stop.set()
    poller.join()
    orders.stop.set()
    order_thread.join()
    stored = stored_exactly_once(system, orders.order_uids)
    if took > seconds - 3:
        print(f"WARNING: the switches took {took:.1f}s, longer than the load")
    firsts = [
        min(
            (
                got - started
                for sent, got, colour in poller.answers
                if colour == target and sent >= started
            ),
            default=float("nan"),
        )
        for started, target in switches
    ]
    figures: dict[str, list[float]] = {
        "switches under load: first answer from the new colour": firsts,
    }
    print(f"  {count} switches in {took:.1f}s, GET /health through the LB:")
    for name, result in results.items():
        print(
            f"    {name}, {connections} clients: {result.requests} requests,"
            f" {result.errors} socket errors, {result.bad_status} non-2xx,"
            f" {result.rate:.0f} req/s, p99 {result.p99_ms:.1f} ms"
        )
        figures[f"switches under load, {name}: failed requests"] = [
            float(result.errors + result.bad_status)
        ]
    print(
        f"    poller (kept-alive, no resend): {len(poller.answers)} answers,"
        f" {poller.failures} failed"
    )
    failed = sum(orders.failed.values())
    print(
        f"    POST /api/v1/orders, http.client kept-alive, never resending:"
        f" {len(orders.order_uids)} answered 201, {failed} failed {dict(orders.failed)};"
        f" stored exactly once: {stored} of {len(orders.order_uids)}"
    )
    figures["switches under load, orders by http.client: failed requests"] = [float(failed)]
    figures["switches under load, orders by http.client: 201s not stored exactly once"] = [
        float(len(orders.order_uids) - stored)
    ]
    return live, figures


def stored_exactly_once(system: System, uids: list[str], wait: float = 60) -> int:
    """How many of ``uids`` are stored exactly once, waiting for the processor to catch up."""
    creds = database_credentials(system.plan())
    deadline = time.monotonic() + wait
    while True:
        counts = stored_counts(creds, uids)
        if len(counts) == len(uids) or time.monotonic() > deadline:
            return sum(1 for uid in uids if counts.get(uid) == 1)
        time.sleep(1)


def bench_switch_and_deploy(
    runs: int, load_switches: int = 100, load_connections: int = 8
) -> tuple[dict[str, list[float]], list[str]]:
    figures: dict[str, list[float]] = defaultdict(list)
    notes: list[str] = []
    system = System.create(BENCH_SERVICE_SETTINGS)  # deploy's smoke tests register users
    workdir = Path(tempfile.mkdtemp(prefix="eb-bench-src-", dir="/tmp"))
    try:
        marks: list[tuple[str, float]] = []
        started = time.perf_counter()
        release_a, _ = build_release(
            system.home, REPO, None, lambda step: marks.append((step, time.perf_counter()))
        )
        figures["build A (this tree; deps layer included)"].append(time.perf_counter() - started)
        marks.append(("", time.perf_counter()))
        notes.append("  release build in a fresh state directory, step by step:")
        for (step, begun), (_, finished) in itertools.pairwise(marks):
            if step.startswith("installing dependencies"):
                figures["build: dependency layer step"].append(finished - begun)
            notes.append(f"    {finished - begun:6.1f}s  {_generic(step)}")
        clone = clone_with_commit(
            REPO,
            workdir / "src-b",
            {"src/echobase/app/release_note.py": '"""A second release."""\nNOTE = "b"\n'},
            "second release (benchmark)",
        )
        started = time.perf_counter()
        release_b, _ = build_release(system.home, clone, "HEAD")
        figures["build B (one more commit; layer shared)"].append(time.perf_counter() - started)
        figures["durable setup"].append(system.cli("durable", "setup", ENV)[0])
        for release in (release_a, release_b):  # green, then blue: both colours running
            system.cli("deploy", "--release", release.id, "--env", ENV)
        plan = system.plan()
        verify = ssl.create_default_context(cafile=str(plan.load_balancer.cert_file))
        live = system.cli("active", "--env", ENV)[1].stdout.strip()
        bluegreen = BlueGreen(Stack.load(system.home, offset=0, cwd=system.home), ENV)
        for _ in range(runs):
            target = "green" if live == "blue" else "blue"
            once = switch_once(system, target, verify, lambda t: bluegreen.switch(t).seconds)
            figures["switch (Python API): first answer from the new colour"].append(
                once["first answer"]
            )
            figures["switch (Python API): call"].append(once["wall"])
            figures["switch: stale answers after it returned"].append(once["stale"])
            live = target
            time.sleep(0.5)
            target = "green" if live == "blue" else "blue"
            once = switch_once(system, target, verify)
            figures["switch: first answer from the new colour"].append(once["first answer"])
            figures["switch: command wall time"].append(once["wall"])
            figures["switch: in-process (--json seconds)"].append(once["in-process"])
            figures["switch: stale answers after it returned"].append(once["stale"])
            figures["switch: poller requests failed"].append(once["poller failures"])
            live = target
            time.sleep(0.5)
        if load_switches:
            live, under_load = switches_under_load(
                system, bluegreen, verify, live, load_switches, load_connections
            )
            for name, values in under_load.items():
                figures[name] += values
        releases = [release_a, release_b]
        for run in range(runs):
            release = releases[run % 2]
            wall, result = system.cli("deploy", "--release", release.id, "--json", "--env", ENV)
            outcome = json.loads(result.stdout)
            figures["deploy --release: command wall time"].append(wall)
            for step in outcome["steps"]:
                name = re.sub(r"\b(blue|green)\b", "<colour>", step["step"])
                name = name.replace(release_a.id, "<release>").replace(release_b.id, "<release>")
                system.steps[name].append(float(step["seconds"]))
        notes += [
            f"  deploy step {name}: median {statistics.median(v):.2f}s"
            for name, v in system.steps.items()
        ]
    finally:
        system.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    return figures, notes


def bench_up(runs: int, layer_seconds: list[float]) -> tuple[dict[str, list[float]], list[str]]:
    figures: dict[str, list[float]] = defaultdict(list)
    steps: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        system = System.create()
        try:
            wall, result = system.cli("up", "--env", ENV, cwd=REPO)
            figures["up: fresh state directory"].append(wall)
            for name, seconds in done_steps(result.stderr):
                steps[_generic(name)].append(seconds)
            # `up` reports the release build as one step; the dependency layer inside it was
            # timed in the build above (same dependencies, also a fresh state directory).
            # This is what a fresh state directory would cost if that layer were shared,
            # which the product does only between releases of one state directory.
            if layer_seconds:
                figures["up: fresh, less the dependency layer (derived)"].append(
                    wall - statistics.median(layer_seconds)
                )
            figures["up: again (nothing to do)"].append(system.cli("up", "--env", ENV, cwd=REPO)[0])
            figures["down --all (state kept)"].append(system.cli("down", "--all", "--env", ENV)[0])
            figures["up: after down --all (state kept)"].append(
                system.cli("up", "--env", ENV, cwd=REPO)[0]
            )
        finally:
            system.destroy()
    notes = ["  up from a fresh state directory, step by step (CLI's own figures, medians):"]
    notes += [f"    {statistics.median(v):6.1f}s  {name}" for name, v in steps.items()]
    return figures, notes


def _generic(step: str) -> str:
    step = re.sub(r"\b(blue|green)\b", "<colour>", step)
    step = re.sub(r"\d+\.\d+\.\d+\S*-[0-9a-f]{12}", "<release>", step)
    return re.sub(r"layer [0-9a-f]{12}", "layer <hash>", step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="switches and deploys")
    parser.add_argument("--up-runs", type=int, default=1, help="fresh state directories")
    parser.add_argument("--skip-up", action="store_true")
    parser.add_argument(
        "--load-switches", type=int, default=100, help="switches under a wrk load (0: none)"
    )
    parser.add_argument("--load-connections", type=int, default=8)
    args = parser.parse_args()
    figures, notes = bench_switch_and_deploy(args.runs, args.load_switches, args.load_connections)
    if not args.skip_up:
        layer = figures.get("build: dependency layer step", [])
        up_figures, up_notes = bench_up(args.up_runs, layer)
        figures.update(up_figures)
        notes += up_notes
    print(f"\n{'figure (seconds)':<56} {'median':>8} {'min':>8} {'max':>8} {'runs':>5}   target")
    for name, values in figures.items():
        print(summary(name, values, TARGETS.get(name)))
    print("\n".join(["", *notes]))


if __name__ == "__main__":
    main()
