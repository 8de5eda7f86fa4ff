"""The memory of the whole system, and what a candidate setting for a colour's services saves
and costs, from one run (issue 19: all services of the durable layer and both colours
under 1 GiB).

    .venv/bin/python bench/memory.py [--rounds 3] [--seconds 20] [--connections 16]
                                     [--ref HEAD] [--set ROLE:KEY=VALUE ...]

A private system (temporary state directory, free ports), driven through the real CLI: one
release deployed twice, so that both colours run it. Blue runs as deployed; green runs the
same release with the candidate environment (``--set``, repeatable; by default one gateway
worker and glibc's malloc limited to two arenas) added to its supervisor programs.
``echobase switch`` moves the LB's traffic between them.

Prints:

1. memory at rest (both colours healthy, before any load): RSS and PSS of every service's
   process tree, per colour and for all services;
2. intake: POST /api/v1/orders through the LB (TLS), wrk at ``--connections`` clients,
   ``--rounds`` rounds of ``--seconds`` per colour, alternating, each after a switch and a
   3 s warm-up: orders/s and p99 per round, medians, candidate / as-deployed;
3. memory again after the load (what the services keep once the peak has passed); with
   ``--track``, the RSS of all services after every round too, to tell what levels off from
   what keeps growing with the orders.

RSS counts a page shared by several processes (the interpreter, extension modules) once per
process; PSS splits it between them, so the PSS of all services is what the machine holds.
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics

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
    pss_mib,
    register,
    rerun_with_env,
    rss_mib,
    wait_healthy,
    wrk,
    wrk_request_script,
    wrk_row,
)

AS_DEPLOYED, CANDIDATE = "blue", "green"
DEFAULT_CANDIDATE = (
    "api-gateway:ECHOBASE_WORKERS=1",
    "api-gateway:MALLOC_ARENA_MAX=2",
    "order-processor:MALLOC_ARENA_MAX=2",
    "sqs:MALLOC_ARENA_MAX=2",
)
WARM_UP_SECONDS = 3
TARGET_MIB = 1024


def parse_settings(items: list[str]) -> dict[str, dict[str, str]]:
    by_role: dict[str, dict[str, str]] = {}
    for item in items:
        role, _, assignment = item.partition(":")
        key, equals, value = assignment.partition("=")
        if not (role and key and equals):
            raise SystemExit(f"--set {item!r}: expected ROLE:KEY=VALUE")
        by_role.setdefault(role, {})[key] = value
    return by_role


def memory_report(system: System, when: str) -> None:
    pids = system.pids()
    resident, proportional = rss_mib(pids), pss_mib(pids)
    print(f"\nmemory {when}, MiB (process trees; gateway workers included)")
    for name in sorted(resident):
        print(f"  {name:<28} RSS {resident[name]:7.1f}  PSS {proportional[name]:7.1f}")
    for group in ("durable", AS_DEPLOYED, CANDIDATE):
        rss = sum(v for k, v in resident.items() if k.startswith(f"{group} "))
        pss = sum(v for k, v in proportional.items() if k.startswith(f"{group} "))
        print(f"  {group + ' (all its services)':<28} RSS {rss:7.1f}  PSS {pss:7.1f}")
    for label, values in (("RSS", resident), ("PSS", proportional)):
        total = sum(values.values())
        verdict = "met" if total < TARGET_MIB else "MISSED"
        print(f"  all services, {label}: {total:7.1f} (target < {TARGET_MIB}: {verdict})")
    if CANDIDATE in {k.split()[0] for k in resident}:
        both = {
            colour: sum(v for k, v in resident.items() if k.startswith(f"{colour} "))
            for colour in (AS_DEPLOYED, CANDIDATE)
        }
        rest = sum(resident.values()) - both[AS_DEPLOYED] - both[CANDIDATE]
        print(
            f"  all services, RSS, if both colours ran the candidate:"
            f" {rest + 2 * both[CANDIDATE]:7.1f}"
        )


def rss_line(system: System) -> str:
    resident = rss_mib(system.pids())
    services = ", ".join(f"{name} {mib:.0f}" for name, mib in sorted(resident.items()))
    return f"all services {sum(resident.values()):.1f} MiB RSS ({services})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    intake_arguments(parser)
    parser.add_argument("--set", action="append", dest="settings", metavar="ROLE:KEY=VALUE")
    parser.add_argument("--track", action="store_true", help="memory after every round")
    args = parser.parse_args()
    candidate = parse_settings(args.settings or list(DEFAULT_CANDIDATE))

    system = System.create({**BENCH_SERVICE_SETTINGS, "ECHOBASE_LOG_LEVEL": "info"})
    try:
        release, bluegreen, plans = deploy_both_colours(system, args.ref)
        rerun_with_env(supervisor_for(system.home), plans[CANDIDATE], candidate)
        wait_healthy(bluegreen, CANDIDATE)
        lb = system.plan()
        verify = ssl.create_default_context(cafile=str(lb.load_balancer.cert_file))
        shown = "; ".join(f"{role} {env}" for role, env in candidate.items())
        print(
            f"system in {system.home}: release {release.id} ({args.ref or 'working tree'});"
            f" blue as deployed, green with {shown};"
            f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
        )
        memory_report(system, "at rest")

        tokens = register(lb.lb_url, verify, args.users)
        script = wrk_request_script("POST", "/api/v1/orders", tokens, ORDER_BODY, origin=lb.lb_url)
        print(
            f"\nintake: POST /api/v1/orders via the LB (TLS), {args.connections} connections,"
            f" {args.seconds:.0f} s a round after {WARM_UP_SECONDS} s of warm-up"
        )
        results: dict[str, list[WrkResult]] = {AS_DEPLOYED: [], CANDIDATE: []}
        for number, colour in alternating(args.rounds, (AS_DEPLOYED, CANDIDATE)):
            system.cli("switch", colour, "--env", ENV)
            wrk(lb.lb_url, script, args.connections, WARM_UP_SECONDS)
            result = wrk(lb.lb_url, script, args.connections, args.seconds)
            results[colour].append(result)
            print(wrk_row(f"  round {number + 1} {colour}", result, "orders/s"))
            if args.track:
                print(f"    {rss_line(system)}")
        medians = {c: statistics.median(r.rate for r in rs) for c, rs in results.items()}
        for colour, rate in medians.items():
            p99 = statistics.median(r.p99_ms for r in results[colour])
            print(f"  median {colour:<6} {rate:8.1f} orders/s  p99 {p99:6.1f} ms")
        print(f"  candidate / as deployed: {medians[CANDIDATE] / medians[AS_DEPLOYED]:.3f}")
        memory_report(system, "after the load")
    finally:
        system.destroy()


if __name__ == "__main__":
    main()
