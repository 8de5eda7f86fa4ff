"""Order intake and processing figures on a private stack (temporary directory, free ports).

    .venv/bin/python bench/intake.py [--concurrency 16] [--seconds 10] [--workers 2]
                                     [--queued 10000] [--drain 3000]

Prints, measured in one run on this machine:
  1. POST /api/v1/orders straight to the gateway at fixed concurrency, queue empty at start:
     orders/s, p50, p99 (client side, aiohttp, same machine);
  2. the same with --queued orders already waiting in the queue, and the ratio to 1;
  3. the processor draining --drain orders from the queue into MariaDB (orders/s), against a
     bare batched INSERT (10 rows a transaction, the processor's batch size) into the same
     database, and against a bare ReceiveMessage(10) + DeleteMessageBatch drain of the same
     queue server with as many loops (the queue's own ceiling), and the ratios.
The load generator shares the 2 cores with the system under test: figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pymysql

from echobase.platform.devstack import DevStack, free_stack, service_env
from echobase.platform.durable.mariadb import admin_connection, app_connection
from echobase.platform.runtime.processes import free_port
from support import ORIGIN, fill_queue, own_cpu, percentile, queue_depth, tree_cpu


def cpu_snapshot(stack: DevStack) -> dict[str, float]:
    snapshot = {name: tree_cpu(p.pid) for name, p in stack.processes.items()}
    snapshot["load generator"] = own_cpu()
    return snapshot


def print_cpu(label: str, before: dict[str, float], after: dict[str, float], orders: int) -> None:
    parts = ", ".join(
        f"{name} {(after[name] - before[name]) / orders * 1000:.2f}" for name in before
    )
    print(f"  CPU ms per order ({label}): {parts}")


def questions(stack: DevStack) -> int:
    """Statements the MariaDB server has answered so far (all clients)."""
    conn = admin_connection(stack.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            return int(cur.fetchone()[1])
    finally:
        conn.close()


async def register_users(base: str, count: int) -> list[tuple[int, str]]:
    users = []
    async with aiohttp.ClientSession(headers={"Origin": ORIGIN}) as session:
        for _ in range(count):
            name = f"b_{uuid.uuid4().hex[:12]}"
            body = {
                "username": name,
                "email": f"{name}@bench.local",
                "fullName": "Bench",
                "password": "Bench1234x",
            }
            async with session.post(base + "/api/v1/auth/register", json=body) as r:
                assert r.status == 201, await r.text()
                token = r.cookies["echobase_token"].value
                users.append(((await r.json())["user"]["id"], token))
    return users


async def order_load(base: str, tokens: list[str], seconds: float) -> tuple[int, int, list[float]]:
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=len(tokens))

    async def client(token: str, session: aiohttp.ClientSession) -> None:
        nonlocal failures
        headers = {"Authorization": f"Bearer {token}", "Origin": ORIGIN}
        body = json.dumps({"productId": 11, "quantity": 2})
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.post(
                base + "/api/v1/orders",
                data=body,
                headers={**headers, "Content-Type": "application/json"},
            ) as r:
                await r.read()
                if r.status == 201:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(t, session) for t in tokens))
    return len(latencies), failures, latencies


def empty_queue(stack: DevStack, queue_url: str) -> None:
    """PurgeQueue allows one call a minute; recreating the queue (same URL) does not wait."""
    stack.client("sqs").delete_queue(QueueUrl=queue_url)
    stack.create_queues()
    time.sleep(0.5)


def bare_insert_rate(
    backing_conn: pymysql.connections.Connection, user_id: int, rows: int
) -> float:
    sql = (
        "INSERT INTO orders (order_uid, user_id, product_id, product_name, sku, quantity,"
        " total_price, order_status, created_at, updated_at) VALUES"
        " (%s,%s,11,'Webcam','WC-606',2,119.98,'completed',NOW(3),NOW(3))"
        " ON DUPLICATE KEY UPDATE order_uid = VALUES(order_uid)"
    )
    started = time.perf_counter()
    with backing_conn.cursor() as cur:
        for _ in range(rows // 10):
            cur.executemany(sql, [(str(uuid.uuid4()), user_id) for _ in range(10)])
            backing_conn.commit()
    return rows / (time.perf_counter() - started)


def bare_drain_rate(sqs: Any, queue_url: str, count: int, loops: int) -> float:
    """The queue server's own ceiling for the processor: ``loops`` threads doing nothing but
    ReceiveMessage(10) + DeleteMessageBatch until ``count`` messages are gone."""
    taken = 0
    lock = threading.Lock()

    def drain() -> None:
        nonlocal taken, finished
        while time.perf_counter() < deadline:  # bounded even if fewer than count were queued
            with lock:
                if taken >= count:
                    return
            # No long poll: at the end a 20 s wait on the empty queue is not draining.
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                continue
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            with lock:
                taken += len(messages)
                finished = time.perf_counter()

    finished = started = time.perf_counter()
    deadline = started + 300
    threads = [threading.Thread(target=drain) for _ in range(loops)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return taken / (finished - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--drain", type=int, default=3_000)
    parser.add_argument("--pollers", type=int, default=2, help="processor receive loops")
    args = parser.parse_args()

    stack = DevStack(free_stack(Path(tempfile.mkdtemp(prefix="echobase-bench-"))))
    try:
        stack.start_aws()
        credentials, _ = stack.ensure_secrets()
        stack.start_database()
        stack.provision_database(credentials)
        queues = stack.create_queues()
        gateway_port = free_port()
        base = f"http://127.0.0.1:{gateway_port}"
        env = service_env(
            aws_url=stack.aws_url,
            queue=queues,
            port=gateway_port,
            colour="blue",
            base=os.environ,
            extra={
                "ECHOBASE_WORKERS": str(args.workers),
                "ECHOBASE_BCRYPT_ROUNDS": "4",
                "ECHOBASE_ALLOWED_ORIGINS": ORIGIN,
                "ECHOBASE_RATE_LIMIT_MAX": "100000000",
                "ECHOBASE_LOG_LEVEL": "warning",
            },
        )
        stack.start_service("api-gateway", "echobase.app.gateway", env, base + "/health")
        users = asyncio.run(register_users(base, args.concurrency))
        tokens = [t for _, t in users]
        asyncio.run(order_load(base, tokens, 2))  # warm-up

        empty_queue(stack, queues.queue_url)
        cpu_before, questions_before = cpu_snapshot(stack), questions(stack)
        ok_empty, fail_empty, lat_empty = asyncio.run(order_load(base, tokens, args.seconds))
        cpu_after, questions_after = cpu_snapshot(stack), questions(stack)

        empty_queue(stack, queues.queue_url)
        fill_queue(lambda: stack.client("sqs"), queues.queue_url, users[0][0], args.queued)
        depth_before = queue_depth(stack.client("sqs"), queues.queue_url)
        cpu_deep_before = cpu_snapshot(stack)
        ok_deep, fail_deep, lat_deep = asyncio.run(order_load(base, tokens, args.seconds))
        cpu_deep_after = cpu_snapshot(stack)

        rate_empty, rate_deep = ok_empty / args.seconds, ok_deep / args.seconds
        print(
            f"\nintake: POST /api/v1/orders direct to the gateway ({args.workers} workers),"
            f" concurrency {args.concurrency}, {args.seconds:.0f} s each"
        )
        print(f"{'queue at start':>16} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
        for label, rate, lat, failed in (
            ("empty", rate_empty, lat_empty, fail_empty),
            (f"{depth_before} queued", rate_deep, lat_deep, fail_deep),
        ):
            print(
                f"{label:>16} {rate:9.1f} {statistics.median(lat) * 1000:8.1f}"
                f" {percentile(lat, 0.99) * 1000:8.1f} {failed:7d}"
            )
        print(f"ratio deep/empty: {rate_deep / rate_empty:.2f}")
        print_cpu("empty", cpu_before, cpu_after, ok_empty)
        print_cpu("queued", cpu_deep_before, cpu_deep_after, ok_deep)
        # Minus the one SHOW STATUS of ours; the catalogue refresh adds a little too.
        per_order = (questions_after - questions_before - 1) / ok_empty
        print(f"  MariaDB statements per order: {per_order:.2f}")

        # Processor: drain a known number of orders.
        stack.stop("api-gateway")
        empty_queue(stack, queues.queue_url)
        fill_queue(lambda: stack.client("sqs"), queues.queue_url, users[0][0], args.drain)
        conn = app_connection(credentials, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM orders")
            before = cur.fetchone()[0]
        processor_port = free_port()
        penv = service_env(
            aws_url=stack.aws_url,
            queue=queues,
            port=processor_port,
            colour="blue",
            base=os.environ,
            extra={"ECHOBASE_LOG_LEVEL": "warning", "ECHOBASE_POLLERS": str(args.pollers)},
        )
        stack.start_service(
            "order-processor",
            "echobase.app.processor",
            penv,
            f"http://127.0.0.1:{processor_port}/health",
        )

        def stored_rows() -> int:
            conn.commit()  # a fresh snapshot
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM orders")
                return int(cur.fetchone()[0]) - before

        # Timed from the moment the processor answers, over the rows stored since then.
        started, at_start = time.perf_counter(), stored_rows()
        stored = at_start
        while stored < args.drain and time.perf_counter() - started < 300:
            time.sleep(0.2)
            stored = stored_rows()
        drain_rate = (stored - at_start) / (time.perf_counter() - started)
        stack.stop("order-processor")
        bare = bare_insert_rate(conn, users[0][0], args.drain)
        conn.close()
        empty_queue(stack, queues.queue_url)
        fill_queue(lambda: stack.client("sqs"), queues.queue_url, users[0][0], args.drain)
        drain_ceiling = bare_drain_rate(
            stack.client("sqs"), queues.queue_url, args.drain, args.pollers
        )
        print(f"\nprocessor: {stored} orders queue -> MariaDB at {drain_rate:.1f} orders/s")
        print(f"bare batched INSERT (10 rows/commit) into the same MariaDB: {bare:.1f} rows/s")
        print(f"ratio processor/bare INSERT: {drain_rate / bare:.2f}")
        print(
            f"bare ReceiveMessage(10)+DeleteMessageBatch, {args.pollers} loops, same queue"
            f" server: {drain_ceiling:.1f} msg/s; ratio processor/bare drain:"
            f" {drain_rate / drain_ceiling:.2f}"
        )
    finally:
        stack.stop_all()


if __name__ == "__main__":
    sys.exit(main())
