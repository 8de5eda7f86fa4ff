"""SendMessage latency against queue depth: plain moto server vs. our patched launcher.

Starts two real server processes on free loopback ports in one run, one plain
``python -m moto.server`` and one ``python -m echobase.platform.aws_emulator``, and on
each measures sequential SendMessage latency at queue depth 0 and again after filling the
queue to ``--depth`` messages. Then, on each, it measures ReceiveMessage +
DeleteMessageBatch throughput (10 at a time) at depth N, time-boxed (plain moto needs
seconds per cycle there).

The patched queue is filled with SendMessageBatch (10 per call, a few threads). Filling the
plain one that way is quadratic, since each send there scans the whole queue, so by default
it is filled through a staging queue's dead-letter redrive instead (see fill_by_redrive);
``--plain-fill batch`` forces the direct way.

    .venv/bin/python bench/queue_depth.py [--depth 10000] [--sends 300]

Every process it starts is terminated by pid (its own process group) before it exits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
if str(SRC) not in sys.path:  # run from a checkout without the package installed
    sys.path.insert(0, str(SRC))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from echobase.platform.runtime.processes import (  # noqa: E402
    free_port,
    spawn,
    terminate,
    wait_http,
)

HOST = "127.0.0.1"
REGION = "us-east-1"
QUEUE_NAME = "bench-queue-depth"
FILL_THREADS = 4
WARMUP_SENDS = 50
READY_PATH = "/moto-api/"  # moto's dashboard: cheap, answers as soon as the server is up


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    endpoint: str
    log: Path


@dataclass
class SendStats:
    server: str
    depth: int
    latencies_ms: list[float]
    elapsed_s: float

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]  # nearest rank

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    return env


def start_server(name: str, module: str, log_dir: Path, started: list[Server]) -> Server:
    port = free_port(HOST)
    log = log_dir / f"{name}.log"
    process = spawn(
        [sys.executable, "-m", module, "-H", HOST, "-p", str(port)], log, env=child_env()
    )
    server = Server(name, process, f"http://{HOST}:{port}", log)
    started.append(server)  # registered before waiting, so the finally block reaps it
    wait_http(server.endpoint + READY_PATH, timeout=60, process=process, ok=0)
    return server


def sqs_client(endpoint: str, pool: int = 10) -> Any:
    return boto3.client(
        "sqs",
        region_name=REGION,
        endpoint_url=endpoint,
        config=Config(
            retries={"total_max_attempts": 1},  # a retry would hide latency
            max_pool_connections=pool,
            read_timeout=120,
        ),
    )


def message(seq: int) -> tuple[str, dict[str, Any]]:
    body = json.dumps({"order_id": seq, "sku": "ECHO-001", "quantity": 1, "cents": 1999})
    attrs = {"CorrelationId": {"DataType": "String", "StringValue": str(uuid.uuid4())}}
    return body, attrs


def depth_of(client: Any, url: str) -> int:
    attrs = client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def measure_sends(client: Any, url: str, server: str, depth: int, sends: int) -> SendStats:
    latencies: list[float] = []
    started = time.perf_counter()
    for seq in range(sends):
        body, attrs = message(seq)
        t0 = time.perf_counter()
        client.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attrs)
        latencies.append((time.perf_counter() - t0) * 1000)
    return SendStats(server, depth, latencies, time.perf_counter() - started)


def batches(count: int, start: int) -> Iterator[list[dict[str, Any]]]:
    for first in range(start, start + count, 10):
        entries = []
        for seq in range(first, min(first + 10, start + count)):
            body, attrs = message(seq)
            entries.append({"Id": str(seq), "MessageBody": body, "MessageAttributes": attrs})
        yield entries


def fill(client: Any, url: str, count: int) -> float:
    def send(entries: list[dict[str, Any]]) -> None:
        result = client.send_message_batch(QueueUrl=url, Entries=entries)
        if result.get("Failed"):
            raise RuntimeError(f"batch send failed: {result['Failed']}")

    started = time.perf_counter()
    with ThreadPoolExecutor(FILL_THREADS) as pool:
        list(pool.map(send, batches(count, start=1_000_000)))
    return time.perf_counter() - started


def fill_by_redrive(client: Any, url: str, count: int) -> float:
    """Fill ``url`` with ``count`` messages without paying plain moto's O(depth) per send.

    Plain moto's SendMessage costs O(depth) of the queue it targets, so filling the target
    directly is quadratic (minutes for 10k). Instead each batch of 10 goes to a small
    staging queue whose RedrivePolicy (maxReceiveCount=1) names the target as its dead-letter
    queue: the next ReceiveMessage on staging moves the already-received messages to the
    target with a plain list append. The target ends up with ordinary visible, undelayed
    messages; sends to it are then measured through the normal API as usual.
    """
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "1"})
    staging = client.create_queue(
        QueueName=QUEUE_NAME + "-staging", Attributes={"RedrivePolicy": policy}
    )["QueueUrl"]
    started = time.perf_counter()
    target_depth = depth_of(client, url) + count
    for entries in batches(count, start=2_000_000):
        result = client.send_message_batch(QueueUrl=staging, Entries=entries)
        if result.get("Failed"):
            raise RuntimeError(f"batch send failed: {result['Failed']}")
        # Moves the batch received last time to the target, receives (marks) this one.
        client.receive_message(QueueUrl=staging, MaxNumberOfMessages=10, VisibilityTimeout=0)
    for _ in range(3):  # flush the last marked batch
        if depth_of(client, url) >= target_depth:
            break
        client.receive_message(QueueUrl=staging, MaxNumberOfMessages=10, VisibilityTimeout=0)
    client.delete_queue(QueueUrl=staging)
    return time.perf_counter() - started


def measure_drain(
    client: Any, url: str, messages: int, seconds: float
) -> tuple[int, float, list[float]]:
    """Receive 10 + DeleteMessageBatch 10, sequentially, until ``messages`` are gone or the
    next cycle would overrun ``seconds`` (each cycle is O(depth) in moto, hence the box).
    At least one cycle always runs."""
    drained = 0
    cycles: list[float] = []
    started = time.perf_counter()
    while drained < messages:
        if cycles and time.perf_counter() - started + cycles[-1] / 1000 > seconds:
            break
        t0 = time.perf_counter()
        got = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
        ).get("Messages", [])
        if not got:
            break
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        result = client.delete_message_batch(QueueUrl=url, Entries=entries)
        if result.get("Failed"):
            raise RuntimeError(f"batch delete failed: {result['Failed']}")
        cycles.append((time.perf_counter() - t0) * 1000)
        drained += len(got)
    return drained, time.perf_counter() - started, cycles


@dataclass
class Options:
    depth: int
    sends: int
    drain: int
    drain_seconds: float
    plain_fill: str
    log_dir: Path


def bench_server(server: Server, opts: Options, results: list[SendStats]) -> tuple[Any, str]:
    """Depth-0 sends, fill, depth-N sends; returns (client, url) for further use."""
    client = sqs_client(server.endpoint, pool=FILL_THREADS * 2)
    warmup = client.create_queue(QueueName=QUEUE_NAME + "-warmup")["QueueUrl"]
    for _ in range(WARMUP_SENDS):  # connection set-up, first-request imports
        body, attrs = message(-1)
        client.send_message(QueueUrl=warmup, MessageBody=body, MessageAttributes=attrs)
    url = client.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    print(f"[{server.name}] {server.endpoint}: {opts.sends} sends at depth 0 ...", flush=True)
    results.append(measure_sends(client, url, server.name, 0, opts.sends))

    to_fill = max(0, opts.depth - depth_of(client, url))
    how = opts.plain_fill if server.name == "plain" else "batch"
    print(f"[{server.name}] filling {to_fill} messages ({how}) ...", end=" ", flush=True)
    took = fill_by_redrive(client, url, to_fill) if how == "redrive" else fill(client, url, to_fill)
    actual = depth_of(client, url)
    print(f"{took:.1f}s, depth now {actual}", flush=True)
    print(f"[{server.name}] {opts.sends} sends at depth {actual} ...", flush=True)
    results.append(measure_sends(client, url, server.name, actual, opts.sends))
    return client, url


Drain = tuple[str, int, float, list[float], int]


def report(results: list[SendStats], drains: list[Drain]) -> None:
    print()
    print(f"{'server':<8} {'depth':>6} {'median ms':>10} {'p99 ms':>8} {'sends/s':>9}")
    for r in results:
        print(f"{r.server:<8} {r.depth:>6} {r.median_ms:>10.2f} {r.p99_ms:>8.2f} {r.rate:>9.1f}")
    print()
    by_key = {(r.server, r.depth == 0): r for r in results}
    for name in ("plain", "patched"):
        zero, deep = by_key[(name, True)], by_key[(name, False)]
        ratio = deep.rate / zero.rate
        print(f"{name:<8} rate at depth {deep.depth} / rate at depth 0 = {ratio:.3f}")
    deep_plain, deep_patched = by_key[("plain", False)], by_key[("patched", False)]
    ratio = deep_patched.rate / deep_plain.rate
    print(f"patched / plain rate at depth {deep_patched.depth} = {ratio:.2f}x")
    rates = {}
    for name, drained, took, cycles, at in drains:
        rates[name] = drained / took
        print(
            f"\n{name} ReceiveMessage(10)+DeleteMessageBatch(10) from depth {at}: "
            f"{drained} messages in {took:.2f}s = {drained / took:.2f} msg/s; per cycle "
            f"median {statistics.median(cycles):.1f} ms, max {max(cycles):.1f} ms "
            f"({len(cycles)} cycles)"
        )
    if len(rates) == 2:
        print(f"patched / plain drain rate = {rates['patched'] / rates['plain']:.1f}x")


def run(opts: Options) -> None:
    os.environ["AWS_ACCESS_KEY_ID"] = "echobase-local"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "echobase-local"
    os.environ.pop("AWS_SESSION_TOKEN", None)

    import moto

    print(f"moto {moto.__version__}, boto3 {boto3.__version__}, Python {sys.version.split()[0]}")
    print(
        f"depth={opts.depth} sends={opts.sends} drain={opts.drain} "
        f"drain_seconds={opts.drain_seconds} plain_fill={opts.plain_fill} logs={opts.log_dir}\n"
    )

    started: list[Server] = []
    results: list[SendStats] = []
    drains: list[Drain] = []
    try:
        plain = start_server("plain", "moto.server", opts.log_dir, started)
        patched = start_server("patched", "echobase.platform.aws_emulator", opts.log_dir, started)
        for server in (plain, patched):
            client, url = bench_server(server, opts, results)
            at = depth_of(client, url)
            print(
                f"[{server.name}] receive+delete at depth {at} (<= {opts.drain_seconds}s) ...",
                flush=True,
            )
            drained, took, cycles = measure_drain(client, url, opts.drain, opts.drain_seconds)
            drains.append((server.name, drained, took, cycles, at))
            terminate(server.process)  # free its CPU for the next server
    except BaseException:
        for server in started:
            tail = server.log.read_text(errors="replace").splitlines()[-20:]
            print(f"--- {server.name} log tail ({server.log}) ---", *tail, sep="\n")
        raise
    finally:
        for server in started:
            terminate(server.process)
    report(results, drains)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--depth", type=int, default=10_000, help="queue depth to test at")
    parser.add_argument("--sends", type=int, default=300, help="timed sends per depth")
    parser.add_argument(
        "--drain", type=int, default=1000, help="max messages to receive+delete (patched)"
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=20.0, help="time box for receive+delete"
    )
    parser.add_argument(
        "--plain-fill",
        choices=("redrive", "batch"),
        default="redrive",
        help="how to fill the plain server: batch = SendMessageBatch straight into the "
        "queue (quadratic: ~40s for 2k, many minutes for 10k); redrive = via a staging "
        "queue's dead-letter redrive (linear)",
    )
    parser.add_argument("--log-dir", type=Path, help="keep server logs here (default: temp)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="echobase-bench-") as tmp:
        opts = Options(
            depth=args.depth,
            sends=args.sends,
            drain=args.drain,
            drain_seconds=args.drain_seconds,
            plain_fill=args.plain_fill,
            log_dir=args.log_dir if args.log_dir is not None else Path(tmp),
        )
        run(opts)


if __name__ == "__main__":
    main()
