"""Orders, products, end-to-end latency and memory on a real deployed system, through the load
balancer over TLS, beside the ceilings of what it stands on, all measured in one run.

    .venv/bin/python bench/live.py [--seconds 60] [--short 15] [--connections 16]
                                   [--queued 10000] [--e2e-rate 200] [--e2e-seconds 20]

A private system (temporary state directory, free ports): a release of this working tree,
the durable layer, deployed to a colour and switched live through the real CLI. wrk (Debian's
package; C, one event loop per thread) is the load client at fixed concurrency; logged-in
users' JWTs rotate on every request. Prints, all from this run:

1. ceilings: wrk against an nginx that answers 200 itself over TLS (the load client's own
   ceiling on this machine), the same nginx over TLS proxying a trivial upstream (the LB's
   ceiling), and bare SendMessage / SendMessageBatch(10) to the live colour's queue server
   (another queue on it, so the processor does not see them);
2. POST /api/v1/orders through the LB for ``--seconds``, the queue depth sampled every second
   (the processor keeping up means it stays bounded), CPU per order of every service;
3. GET /api/v1/products through the LB;
4. intake with the processor paused (SIGSTOP), the queue empty and then ``--queued`` deep;
5. 201 -> row latency at a steady open-loop ``--e2e-rate`` orders/s (aiohttp; each order's
   row is seen by a thread polling MariaDB every 2 ms, so figures include up to ~2 ms of
   polling);
6. RSS of each service at rest and its peak under the order load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
import boto3

from echobase.app.core.secrets import DatabaseCredentials
from echobase.platform.bluegreen.pipeline import BlueGreen
from echobase.platform.durable.mariadb import app_connection
from echobase.platform.release import build_release
from support import (
    BENCH_SERVICE_SETTINGS,
    ENV,
    ORDER_BODY,
    REPO,
    System,
    WrkResult,
    database_credentials,
    fill_queue,
    first_user,
    percentile,
    queue_depth,
    register,
    rss_mib,
    sqs_send_script,
    tree_cpu,
    trivial_nginx,
    wrk,
    wrk_request_script,
    wrk_row,
)

LOOK_BACK_IDS = 200
TARGETS = {
    "intake orders/s": 560,
    "intake p99 ms": 100,
    "deep / empty": 0.8,
    "e2e p99 ms": 50,
    "products req/s": 1900,
    "total RSS MiB": 1024,
}


class Sampler(threading.Thread):
    """Every second: the queue's depth and each service's RSS, until stopped."""

    def __init__(self, sqs: Any, queue_url: str, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.sqs, self.queue_url, self.pids = sqs, queue_url, pids
        self.depths: list[int] = []
        self.peak_rss: dict[str, float] = {}
        self.peak_total = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.depths.append(queue_depth(self.sqs, self.queue_url))
            rss = rss_mib(self.pids)
            for name, mib in rss.items():
                self.peak_rss[name] = max(self.peak_rss.get(name, 0.0), mib)
            self.peak_total = max(self.peak_total, sum(rss.values()))


def cpu_per_request(
    pids: dict[str, int], run: Callable[[], WrkResult]
) -> tuple[WrkResult, dict[str, float]]:
    """Run ``run`` and return CPU ms per good answer of every service tree."""
    before = {name: tree_cpu(pid) for name, pid in pids.items()}
    result = run()
    after = {name: tree_cpu(pid) for name, pid in pids.items()}
    good = max(result.requests - result.bad_status, 1)
    return result, {name: (after[name] - before[name]) / good * 1000 for name in pids}


def print_cpu(label: str, cpu: dict[str, float]) -> None:
    busy = {name: ms for name, ms in cpu.items() if ms >= 0.01}
    print(f"  CPU ms per answer ({label}): " + ", ".join(f"{n} {ms:.2f}" for n, ms in busy.items()))


async def open_loop(
    lb_url: str, verify: ssl.SSLContext, tokens: list[str], rate: float, seconds: float
) -> tuple[dict[str, float], int, list[float]]:
    """POST an order every 1/rate s whatever the answers do (open loop); orderId -> the
    monotonic time its 201 arrived, failures, and the lateness of the sends."""
    answered: dict[str, float] = {}
    failures = 0
    lateness: list[float] = []
    connector = aiohttp.TCPConnector(ssl=verify, limit=64)
    headers = {"Origin": lb_url, "Content-Type": "application/json"}

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(token: str) -> None:
            nonlocal failures
            async with session.post(
                lb_url + "/api/v1/orders",
                data=ORDER_BODY,
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                body = await response.read()
                at = time.monotonic()
                if response.status == 201:
                    answered[str(json.loads(body)["order"]["orderId"])] = at
                else:
                    failures += 1

        tasks = []
        start = time.monotonic()
        for k in range(int(rate * seconds)):
            due = start + k / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            lateness.append(time.monotonic() - due)
            tasks.append(asyncio.create_task(one(tokens[k % len(tokens)])))
        await asyncio.gather(*tasks, return_exceptions=True)
    return answered, failures, lateness


class RowWatcher(threading.Thread):
    """Polls MariaDB every 2 ms for new orders: order_uid -> monotonic time first seen."""

    def __init__(self, creds: DatabaseCredentials) -> None:
        super().__init__(daemon=True)
        self.conn = app_connection(creds, autocommit=True)
        with self.conn.cursor() as cur:
            cur.execute("SELECT COALESCE(MAX(id), 0) FROM orders")
            self.last = int(cur.fetchone()[0])
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                with self.conn.cursor() as cur:
                    # Ids are taken at INSERT but become visible at COMMIT, and two receive
                    # loops commit out of order: look back a little behind the newest id.
                    cur.execute(
                        "SELECT id, order_uid FROM orders WHERE id > %s",
                        (self.last - LOOK_BACK_IDS,),
                    )
                    rows = cur.fetchall()
                at = time.monotonic()
                for row_id, uid in rows:
                    self.seen.setdefault(uid, at)
                    self.last = max(self.last, int(row_id))
                time.sleep(0.002)
        finally:
            self.conn.close()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="the main order run")
    parser.add_argument("--short", type=float, default=15, help="every other wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--e2e-rate", type=float, default=200)
    parser.add_argument("--e2e-seconds", type=float, default=20)
    args = parser.parse_args()
    c, short = args.connections, args.short

    system = System.create(BENCH_SERVICE_SETTINGS)
    try:
        release, _ = build_release(system.home, REPO, None)
        system.cli("durable", "setup", ENV)
        system.cli("deploy", "--release", release.id, "--env", ENV)
        plan = system.plan()
        lb = plan.load_balancer
        verify = ssl.create_default_context(cafile=str(lb.cert_file))
        bluegreen = BlueGreen(system.stack, ENV)
        live = bluegreen.live_or_fail()
        colour = bluegreen.running_plan(live)
        assert colour is not None
        queue_url = colour.queues.queue_url
        sqs = boto3.client(
            "sqs",
            endpoint_url=colour.sqs_url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        creds = database_credentials(plan)
        pids = system.pids()
        print(f"system in {system.home}: live colour {live}, release {release.id}")
        print("services: " + ", ".join(f"{name} ({pid})" for name, pid in pids.items()))

        tokens = register(plan.lb_url, verify, args.users)
        orders = wrk_request_script(
            "POST", "/api/v1/orders", tokens, ORDER_BODY, origin=plan.lb_url
        )
        products = wrk_request_script("GET", "/api/v1/products", tokens, origin=plan.lb_url)
        wrk(plan.lb_url, orders, c, 3)  # warm-up: connections, catalogue, JIT-less caches
        time.sleep(2)
        at_rest = rss_mib(system.pids())

        print(f"\n{'ceiling or run':<52} {'rate':>9}")
        ceiling: dict[str, WrkResult] = {}
        with trivial_nginx(lb.cert_file, lb.key_file) as trivial:
            ceiling["client"] = wrk(
                trivial.direct_tls_url, wrk_request_script("GET", "/"), c, short
            )
            print(wrk_row("wrk -> nginx return 200 (TLS): client ceiling", ceiling["client"]))
            ceiling["nginx"] = wrk(trivial.proxy_tls_url, wrk_request_script("GET", "/"), c, short)
            print(wrk_row("wrk -> nginx (TLS) -> trivial upstream", ceiling["nginx"]))
        ceiling_queue = sqs.create_queue(QueueName="bench-ceiling")["QueueUrl"]
        ceiling["send"] = wrk(colour.sqs_url, sqs_send_script(ceiling_queue), c, short)
        print(wrk_row("wrk -> queue server: bare SendMessage", ceiling["send"], "msg/s"))
        batch = wrk(colour.sqs_url, sqs_send_script(ceiling_queue, 10), c, short)
        ceiling["batch"] = replace(
            batch, requests=batch.requests * 10, bad_status=batch.bad_status * 10
        )
        print(wrk_row("wrk -> queue server: SendMessageBatch(10), messages", ceiling["batch"]))
        sqs.delete_queue(QueueUrl=ceiling_queue)

        sampler = Sampler(sqs, queue_url, pids)
        sampler.start()
        intake, intake_cpu = cpu_per_request(
            pids, lambda: wrk(plan.lb_url, orders, c, args.seconds)
        )
        sampler.stop.set()
        sampler.join()
        print(wrk_row(f"POST /api/v1/orders via LB, {args.seconds:.0f} s", intake, "orders/s"))
        print_cpu("orders", intake_cpu)
        depths = sampler.depths
        print(
            f"  queue depth each second: median {statistics.median(depths):.0f},"
            f" max {max(depths)}, last {depths[-1]} ({len(depths)} samples)"
        )
        time.sleep(3)

        listing, listing_cpu = cpu_per_request(pids, lambda: wrk(plan.lb_url, products, c, short))
        print(wrk_row("GET /api/v1/products via LB", listing))
        print_cpu("products", listing_cpu)

        processor = pids[f"{live} order-processor"]
        os.kill(processor, signal.SIGSTOP)  # what is queued stays queued
        try:
            paused_empty = wrk(plan.lb_url, orders, c, short)
            print(wrk_row("orders, processor paused, queue empty", paused_empty, "orders/s"))
            fill_queue(lambda: sqs, queue_url, first_user(creds), args.queued)
            depth_before = queue_depth(sqs, queue_url)
            paused_deep = wrk(plan.lb_url, orders, c, short)
            print(
                wrk_row(f"orders, processor paused, {depth_before} queued", paused_deep, "orders/s")
            )
        finally:
            os.kill(processor, signal.SIGCONT)
        drain_started = time.monotonic()
        while queue_depth(sqs, queue_url) > 0 and time.monotonic() - drain_started < 300:
            time.sleep(0.5)
        drained = depth_before + paused_deep.requests
        print(
            f"  the processor then drained {drained} in {time.monotonic() - drain_started:.1f} s"
            f" ({drained / (time.monotonic() - drain_started):.0f} orders/s)"
        )
        time.sleep(3)

        watcher = RowWatcher(creds)
        watcher.start()
        answered, e2e_failed, lateness = asyncio.run(
            open_loop(plan.lb_url, verify, tokens, args.e2e_rate, args.e2e_seconds)
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not set(answered) <= set(watcher.seen):
            time.sleep(0.1)
        watcher.stop.set()
        watcher.join()
        e2e = [watcher.seen[uid] - at for uid, at in answered.items() if uid in watcher.seen]
        missing = len(answered) - len(e2e)
        print(
            f"201 -> row at {args.e2e_rate:.0f}/s open loop: {len(answered)} orders,"
            f" p50 {statistics.median(e2e) * 1000:.1f} ms, p99 {percentile(e2e, 0.99) * 1000:.1f}"
            f" ms, max {max(e2e) * 1000:.1f} ms; not seen {missing}, failed {e2e_failed};"
            f" sends late by p99 {percentile(lateness, 0.99) * 1000:.1f} ms"
        )

        print("\nRSS MiB (at rest / peak under the order load):")
        for name in pids:
            print(f"  {name:<28} {at_rest.get(name, 0):7.1f} {sampler.peak_rss.get(name, 0):7.1f}")
        rest_total = sum(at_rest.values())
        print(f"  {'total':<28} {rest_total:7.1f} {sampler.peak_total:7.1f}")

        deep_ratio = paused_deep.rate / paused_empty.rate
        e2e_p99 = percentile(e2e, 0.99) * 1000
        print(f"\n{'figure':<52} {'value':>9}   target")
        rows = [
            ("intake orders/s (LB, TLS)", intake.rate, f">= {TARGETS['intake orders/s']}",
             intake.rate >= TARGETS["intake orders/s"]),
            ("intake p99 ms", intake.p99_ms, f"< {TARGETS['intake p99 ms']}",
             intake.p99_ms < TARGETS["intake p99 ms"]),
            ("intake 10k queued / empty (processor paused)", deep_ratio,
             f">= {TARGETS['deep / empty']}", deep_ratio >= TARGETS["deep / empty"]),
            ("201 -> row p99 ms", e2e_p99, f"< {TARGETS['e2e p99 ms']}",
             e2e_p99 < TARGETS["e2e p99 ms"]),
            ("products req/s (LB, TLS)", listing.rate, f">= {TARGETS['products req/s']}",
             listing.rate >= TARGETS["products req/s"]),
            ("RSS total MiB, peak under load", sampler.peak_total,
             f"< {TARGETS['total RSS MiB']}", sampler.peak_total < TARGETS["total RSS MiB"]),
        ]  # fmt: skip
        for name, value, target, ok in rows:
            print(f"{name:<52} {value:9.2f}   {target:<8} {verdict(ok)}")
        print("\nratios in this run:")
        for name, result in ceiling.items():
            print(f"  intake / {name} ceiling: {intake.rate / result.rate:.3f}")
        print(f"  products / client ceiling: {listing.rate / ceiling['client'].rate:.3f}")
        print(f"  products / nginx ceiling: {listing.rate / ceiling['nginx'].rate:.3f}")
    finally:
        system.destroy()


if __name__ == "__main__":
    main()
