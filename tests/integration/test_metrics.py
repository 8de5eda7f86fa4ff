"""Metrics through real processes: a gateway with two uvicorn workers in multiprocess mode
(counts summed across workers, exemplars surviving the merge, a dead worker's file removed)
and the queue server's depths as messages come and go."""

from __future__ import annotations

import os
import secrets
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as text_format

from durable_support import alive, children, cmdline
from echobase.app.core import exemplars
from echobase.platform.runtime.processes import free_port
from tests_support import wait_until

pytestmark = pytest.mark.timeout(300)

OPENMETRICS = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"}
PRODUCTS = "/api/v1/products"
DURATION = "echobase_http_request_duration_seconds"


def traceparent(trace_id: str, sampled: bool) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-{'01' if sampled else '00'}"}


def request_count(text: str, route: str, method: str, status: str) -> float:
    for family in text_format(text):
        for sample in family.samples:
            wanted = {"route": route, "method": method, "status": status}
            if sample.name == "echobase_http_requests_total" and sample.labels == wanted:
                return sample.value
    return 0.0


def exemplar_trace_ids(text: str, route: str) -> set[str]:
    return {
        sample.exemplar.labels["trace_id"]
        for family in openmetrics(text)
        if family.name == DURATION
        for sample in family.samples
        if sample.exemplar is not None and sample.labels.get("route") == route
    }


def per_worker_counts(directory: Path, route: str) -> dict[int, float]:
    """Each worker's own count of GET ``route`` answered 401, from its own file."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                labels = {"route": route, "method": "GET", "status": "401"}
                if sample.name == "echobase_http_requests_total" and sample.labels == labels:
                    counts[int(path.stem.split("_")[1])] = sample.value
    return counts


@pytest.fixture
def traced_gateway(backing, tmp_path):
    """The real gateway, two workers, multiprocess mode. Its server span follows the caller's
    sampled flag: a traceparent ending -01 makes a sampled span, -00 an unsampled one."""
    metrics_dir = tmp_path / "prometheus-multiproc"
    metrics_dir.mkdir()
    name = f"gw-metrics-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = backing.gateway_env(
        backing.new_queues(),
        port,
        ECHOBASE_WORKERS="2",
        ECHOBASE_RATE_LIMIT_MAX="1000000",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    url = f"http://127.0.0.1:{port}"
    backing.stack.start_service(name, "echobase.app.gateway", env, url + "/health")
    master = backing.stack.processes[name]
    try:
        yield url, metrics_dir, master.pid
    finally:
        backing.stack.stop(name)


def workers(master: int) -> list[int]:
    return [pid for pid in children(master) if "spawn_main" in cmdline(pid)]


@contextmanager
def paused(pid: int) -> Iterator[None]:
    """A stopped worker accepts no connection, so the other one answers everything: which
    worker serves is decided, not left to the kernel. Briefly: uvicorn kills a worker that
    misses its 5 s health ping."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def file_exemplars(path: Path) -> set[str]:
    try:
        stored = exemplars.parse_file(path.read_text())
    except FileNotFoundError:
        return set()
    return {exemplar.labels["trace_id"] for exemplar in stored.values()}


def test_gateway_workers_sum_their_counts_and_keep_their_exemplars(traced_gateway):
    url, metrics_dir, master = traced_gateway
    pids = workers(master)
    assert len(pids) == 2
    first, second = pids

    def call(trace_id: str, sampled: bool = True) -> None:
        answer = httpx.get(url + PRODUCTS, headers=traceparent(trace_id, sampled))
        assert answer.status_code == 401  # a route of an included router, answered

    with paused(second):
        for trace_id in [secrets.token_hex(16) for _ in range(3)]:
            call(trace_id)
    with paused(first):
        for trace_id in [secrets.token_hex(16) for _ in range(5)]:
            call(trace_id)
    assert per_worker_counts(metrics_dir, PRODUCTS) == {first: 3, second: 5}
    # Whichever worker answers the scrape reports both workers' requests.
    for _ in range(6):
        text = httpx.get(url + "/metrics").text
        assert request_count(text, PRODUCTS, "GET", "401") == 8

    # The edge's own refusal, before any routing, is counted with the status sent.
    refused = httpx.post(
        url + "/api/v1/auth/login", json={}, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    text = httpx.get(url + "/metrics").text
    assert request_count(text, "unmatched", "POST", "403") == 1

    # Exemplars come from sampled spans only. The second worker serves both requests; once
    # its file has them, the first worker's answer to a scrape shows its newest one.
    unsampled, latest = secrets.token_hex(16), secrets.token_hex(16)
    with paused(first):
        call(unsampled, sampled=False)
        call(latest)
    own_file = metrics_dir / f"exemplars_{second}.json"
    wait_until(lambda: latest in file_exemplars(own_file), 15, "the worker to write its file")
    assert unsampled not in file_exemplars(own_file)
    with paused(second):
        answer = httpx.get(url + "/metrics", headers=OPENMETRICS)
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    shown = exemplar_trace_ids(answer.text, PRODUCTS)
    assert latest in shown and unsampled not in shown

    # A worker that dies takes its exemplar file along; its counts stay.
    os.kill(second, signal.SIGKILL)
    wait_until(lambda: not alive(second), 15, "the killed worker to be gone")

    def file_removed() -> bool:
        httpx.get(url + "/metrics", headers=OPENMETRICS)
        return not own_file.exists()

    wait_until(file_removed, 30, "a scrape to remove the dead worker's exemplar file")
    text = httpx.get(url + "/metrics").text
    assert request_count(text, PRODUCTS, "GET", "401") == 10
    wait_until(lambda: len(workers(master)) == 2, 30, "uvicorn to respawn the worker")


def queue_figures(base_url: str, queue: str) -> dict[str, float]:
    answer = httpx.get(base_url + "/metrics", timeout=10)
    assert answer.status_code == 200
    figures = {}
    for family in text_format(answer.text):
        for sample in family.samples:
            if sample.labels.get("queue") != queue:
                continue
            key = sample.labels.get("state", "age")
            figures[key] = sample.value
    return figures


def test_the_queue_server_reports_depth_by_state_and_the_oldest_message_age(backing):
    queues = backing.new_queues(visibility_timeout=30)
    name, dlq = queues.queue_url.rsplit("/", 1)[1], queues.dlq_url.rsplit("/", 1)[1]
    sqs = backing.stack.client("sqs")
    base = backing.stack.aws_url
    empty = {"visible": 0, "in_flight": 0, "delayed": 0, "age": 0}
    assert queue_figures(base, name) == empty
    assert queue_figures(base, dlq) == empty

    for n in range(3):
        sqs.send_message(QueueUrl=queues.queue_url, MessageBody=f"order {n}")
    first = queue_figures(base, name)
    assert {k: first[k] for k in ("visible", "in_flight", "delayed")} == {
        "visible": 3,
        "in_flight": 0,
        "delayed": 0,
    }
    wait_until(lambda: queue_figures(base, name)["age"] > first["age"], 10, "the age to grow")

    got = sqs.receive_message(QueueUrl=queues.queue_url, MaxNumberOfMessages=2)["Messages"]
    assert len(got) == 2
    figures = queue_figures(base, name)
    assert (figures["visible"], figures["in_flight"]) == (1, 2)
    attributes = sqs.get_queue_attributes(QueueUrl=queues.queue_url, AttributeNames=["All"])
    assert int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"]) == 2

    for message in got:
        sqs.delete_message(QueueUrl=queues.queue_url, ReceiptHandle=message["ReceiptHandle"])
    sqs.send_message(QueueUrl=queues.queue_url, MessageBody="later", DelaySeconds=60)
    figures = queue_figures(base, name)
    assert {k: figures[k] for k in ("visible", "in_flight", "delayed")} == {
        "visible": 1,
        "in_flight": 0,
        "delayed": 1,
    }
    assert figures["age"] > 0

    rest = sqs.receive_message(QueueUrl=queues.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in rest] == ["order 2"]  # moto still serves SQS between scrapes
    sqs.purge_queue(QueueUrl=queues.queue_url)
    assert queue_figures(base, name) == empty

    answer = httpx.get(base + "/metrics", headers=OPENMETRICS)
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")
