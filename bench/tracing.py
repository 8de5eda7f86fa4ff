"""What tracing costs the order intake, and the memory of the whole system, from one run
(issue 19).

    .venv/bin/python bench/tracing.py [--rounds 3] [--seconds 20] [--connections 16]
                                      [--ref HEAD]

A private system (temporary state directory, free ports), driven through the real CLI: a
release of ``--ref`` (HEAD by default; ``--ref ''`` builds the working tree) deployed twice,
so that both colours run it, at the services' default log level (info: a line per order in
the gateway and in the processor, as users run it). Blue traces as deployed (the default
sampling, spans to the durable layer's trace store). Green is the same release with
OpenTelemetry's own switch, ``OTEL_SDK_DISABLED=true``, added to its gateway's and
processor's supervisor programs (``Supervisor.apply`` restarts a changed program): no span
is created, recorded or exported. ``echobase switch`` moves the LB's traffic between them.

Prints:

1. intake: POST /api/v1/orders through the LB (TLS), wrk at ``--connections`` clients,
   ``--rounds`` rounds of ``--seconds`` per mode, alternating (traced, untraced, untraced,
   traced, ...), each after a switch and a 3 s warm-up: orders/s and p99 per round, the
   median per mode, the ratio traced / untraced (target >= 0.90), CPU per order of the
   gateway and the processor, and the trace store's growth per order;
2. memory: resident memory of every service of the durable layer and both colours (process
   trees, gateway workers included) after the load, and their sum (target < 1 GiB).

``--control`` leaves blue untraced as well: an A/A run, whose ratio is what the two colours
differ by when tracing is not the difference (the bench's own noise and bias).

Needs wrk. On a shared 2-core box the figures move with the neighbours: compare the modes
within one run, and run it more than once.
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from echobase.platform.runtime.services import supervisor_for
from support import (
    BENCH_SERVICE_SETTINGS,
    ENV,
    ORDER_BODY,
    System,
    WrkResult,
    alternating,
    deploy_both_colours,
    intake_arguments,
    pid_of,
    pss_mib,
    register,
    rerun_with_env,
    rss_mib,
    tree_cpu,
    wait_healthy,
    wrk,
    wrk_request_script,
    wrk_row,
)

TRACED, UNTRACED = "traced", "untraced"
COLOUR_OF = {TRACED: "blue", UNTRACED: "green"}
TRACED_ROLES = ("api-gateway", "order-processor")
WARM_UP_SECONDS = 3
TARGET_RATIO = 0.90
TARGET_RSS_MIB = 1024


def store_bytes(traces: Path) -> int:
    return sum(f.stat().st_size for f in traces.glob("*.jsonl*") if f.is_file())


@dataclass
class Round:
    mode: str
    result: WrkResult
    gateway_cpu_ms: float  # per good answer
    processor_cpu_ms: float
    store_bytes_per_order: float


def intake_round(
    system: System, mode: str, lb_url: str, script: str, connections: int, seconds: float
) -> Round:
    colour = COLOUR_OF[mode]
    system.cli("switch", colour, "--env", ENV)
    wrk(lb_url, script, connections, WARM_UP_SECONDS)
    pids = system.pids()
    gateway, processor = pids[f"{colour} api-gateway"], pids[f"{colour} order-processor"]
    traces = system.plan().traces_dir
    before = tree_cpu(gateway), tree_cpu(processor), store_bytes(traces)
    result = wrk(lb_url, script, connections, seconds)
    time.sleep(1.5)  # the processor's last batches, and the exporters' last second
    after = tree_cpu(gateway), tree_cpu(processor), store_bytes(traces)
    good = max(result.requests - result.bad_status, 1)
    return Round(
        mode,
        result,
        (after[0] - before[0]) / good * 1000,
        (after[1] - before[1]) / good * 1000,
        (after[2] - before[2]) / good,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    intake_arguments(parser)
    parser.add_argument(
        "--control",
        action="store_true",
        help="an A/A run: blue untraced too, so 'traced / untraced' shows what the colours"
        " differ by without tracing (the bench's own noise)",
    )
    parser.add_argument(
        "--sample-ratio",
        type=float,
        help="the traced colour keeps this share of new traces beyond its reservoir"
        " (1.0: every trace) instead of the default sampling",
    )
    args = parser.parse_args()

    services = {**BENCH_SERVICE_SETTINGS, "ECHOBASE_LOG_LEVEL": "info"}
    if args.sample_ratio is not None:
        services["ECHOBASE_TRACE_SAMPLE_RATIO"] = str(args.sample_ratio)
    sampling = (
        "default sampling"
        if args.sample_ratio is None
        else f"sample ratio {args.sample_ratio} beyond the reservoir"
    )
    system = System.create(services)
    try:
        release, bluegreen, plans = deploy_both_colours(system, args.ref)
        green = plans["green"]
        supervisor = supervisor_for(system.home)
        # The SDK switched off in the colour's gateway and processor.
        sdk_off = {role: {"OTEL_SDK_DISABLED": "true"} for role in TRACED_ROLES}
        rerun_with_env(supervisor, green, sdk_off)
        wait_healthy(bluegreen, "green")
        if args.control:
            rerun_with_env(supervisor, plans["blue"], sdk_off)
            wait_healthy(bluegreen, "blue")
        gateway = pid_of(supervisor, green.service("api-gateway").name)
        environ = Path(f"/proc/{gateway}/environ").read_bytes()
        assert b"OTEL_SDK_DISABLED=true" in environ, "green's gateway still traces"
        lb = system.plan()
        verify = ssl.create_default_context(cafile=str(lb.load_balancer.cert_file))
        print(
            f"system in {system.home}: release {release.id} ({args.ref or 'working tree'});"
            f" blue {'ALSO UNTRACED (--control)' if args.control else f'traced ({sampling})'},"
            f" green with OTEL_SDK_DISABLED=true;"
            f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
        )

        tokens = register(lb.lb_url, verify, args.users)
        script = wrk_request_script("POST", "/api/v1/orders", tokens, ORDER_BODY, origin=lb.lb_url)
        c = args.connections
        print(
            f"\nintake: POST /api/v1/orders via the LB (TLS), {c} connections,"
            f" {args.seconds:.0f} s a round after {WARM_UP_SECONDS} s of warm-up"
        )
        rounds: list[Round] = []
        for number, mode in alternating(args.rounds, (TRACED, UNTRACED)):
            this = intake_round(system, mode, lb.lb_url, script, c, args.seconds)
            rounds.append(this)
            print(wrk_row(f"  round {number + 1} {mode}", this.result, "orders/s"))
            print(
                f"  {'':<52}CPU ms/order: gateway {this.gateway_cpu_ms:.2f},"
                f" processor {this.processor_cpu_ms:.2f};"
                f" trace store +{this.store_bytes_per_order:.0f} B/order"
            )
        medians: dict[str, tuple[float, float, float, float]] = {}
        for mode in (TRACED, UNTRACED):
            mine = [r for r in rounds if r.mode == mode]
            medians[mode] = (
                statistics.median(r.result.rate for r in mine),
                statistics.median(r.result.p99_ms for r in mine),
                statistics.median(r.gateway_cpu_ms for r in mine),
                statistics.median(r.processor_cpu_ms for r in mine),
            )
            rate, p99, gateway_cpu, processor_cpu = medians[mode]
            print(
                f"  median {mode:<9} {rate:8.1f} orders/s  p99 {p99:6.1f} ms"
                f"  CPU ms/order: gateway {gateway_cpu:.2f}, processor {processor_cpu:.2f}"
            )
        ratio = medians[TRACED][0] / medians[UNTRACED][0]
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(f"  traced / untraced orders/s: {ratio:.3f} (target >= {TARGET_RATIO}: {verdict})")
        print(f"  traced / untraced p99: {medians[TRACED][1] / medians[UNTRACED][1]:.2f}")

        pids = system.pids()
        memory, proportional = rss_mib(pids), pss_mib(pids)
        print(
            "\nmemory after the load, MiB: RSS of each process tree, and PSS (shared pages"
            " split between the processes sharing them: what the machine holds)"
        )
        for name in sorted(memory):
            print(f"  {name:<28} RSS {memory[name]:7.1f}  PSS {proportional[name]:7.1f}")
        for label, values in (("RSS", memory), ("PSS", proportional)):
            total = sum(values.values())
            verdict = "met" if total < TARGET_RSS_MIB else "MISSED"
            print(
                f"  all services, {label:<14} {total:7.1f} (target < {TARGET_RSS_MIB}: {verdict})"
            )
        traced = sum(v for k, v in memory.items() if k.startswith("blue "))
        untraced = sum(v for k, v in memory.items() if k.startswith("green "))
        print(f"  blue (traced) - green (untraced) RSS: {traced - untraced:+.1f}")
    finally:
        system.destroy()


if __name__ == "__main__":
    main()
