"""The order processor against a real queue server and a real MariaDB."""

from __future__ import annotations

import json
import threading
import time
import uuid
from decimal import Decimal

import httpx
import pytest

from echobase.app.messages import build_order_message
from tests_support import receive_all, wait_until


@pytest.fixture(scope="module")
def user_id(backing) -> int:
    name = f"proc_{uuid.uuid4().hex[:10]}"
    backing.query(
        "INSERT INTO users (username, email, full_name, password_hash) VALUES (%s,%s,%s,%s)",
        name,
        f"{name}@example.com",
        "Processor Test",
        "x",
    )
    return int(backing.query("SELECT id FROM users WHERE username=%s", name)[0][0])


def order_message(user_id: int, **overrides: object) -> dict[str, object]:
    message = build_order_message(
        user_id=user_id,
        product_id=11,
        product_name="Webcam",
        sku="WC-606",
        quantity=2,
        total_price=Decimal("119.98"),
        correlation_id=str(uuid.uuid4()),
    )
    message.update(overrides)
    return message


def send(sqs, queue_url: str, body: dict[str, object] | str) -> str:
    """Send one message; its MessageId, which the processor's log lines name."""
    sent = sqs.send_message(
        QueueUrl=queue_url, MessageBody=body if isinstance(body, str) else json.dumps(body)
    )
    return str(sent["MessageId"])


def rows_for(backing, order_uid: str) -> list[tuple]:
    return backing.query(
        "SELECT order_status, quantity, total_price, user_id FROM orders WHERE order_uid=%s",
        order_uid,
    )


def dlq_bodies(sqs, dlq_url: str) -> list[dict]:
    return receive_all(sqs, dlq_url, WaitTimeSeconds=1, MessageAttributeNames=["All"])


def test_stores_an_order_as_completed_and_reports_health(backing, user_id):
    queues = backing.new_queues()
    sqs = backing.stack.client("sqs")
    url = backing.start_processor("proc-basic", queues)
    try:
        message = order_message(user_id)
        send(sqs, queues.queue_url, message)
        wait_until(lambda: rows_for(backing, message["orderId"]), 15, "the order row")
        ((status, quantity, total, uid),) = rows_for(backing, message["orderId"])
        assert (status, quantity, str(total), uid) == ("completed", 2, "119.98", user_id)
        health = httpx.get(url + "/health").json()
        assert health["status"] == "healthy"
        assert health["processedCount"] == 1
        assert health["lastPollAt"].endswith("Z")
        wait_until(
            lambda: (
                sqs.get_queue_attributes(QueueUrl=queues.queue_url, AttributeNames=["All"])[
                    "Attributes"
                ]["ApproximateNumberOfMessagesNotVisible"]
                == "0"
            ),
            10,
            "the message to be deleted",
        )
    finally:
        backing.stack.stop("proc-basic")


def test_same_message_delivered_twice_makes_one_row(backing, user_id):
    queues = backing.new_queues()
    sqs = backing.stack.client("sqs")
    message = order_message(user_id)
    send(sqs, queues.queue_url, message)
    send(sqs, queues.queue_url, message)
    url = backing.start_processor("proc-dup", queues)
    try:
        wait_until(
            lambda: httpx.get(url + "/health").json()["processedCount"] == 2,
            20,
            "both deliveries to be processed",
        )
        assert len(rows_for(backing, message["orderId"])) == 1
        metrics = httpx.get(url + "/metrics").text
        assert "echobase_orders_duplicates_total 1.0" in metrics, metrics
    finally:
        backing.stack.stop("proc-dup")


def test_poison_message_goes_to_dlq_and_later_orders_still_land(backing, user_id):
    queues = backing.new_queues()
    sqs = backing.stack.client("sqs")
    send(sqs, queues.queue_url, "{not json")
    send(sqs, queues.queue_url, order_message(user_id, quantity=0))  # out of range
    good = [order_message(user_id) for _ in range(5)]
    for message in good:
        send(sqs, queues.queue_url, message)
    url = backing.start_processor("proc-poison", queues)
    try:
        wait_until(
            lambda: all(rows_for(backing, m["orderId"]) for m in good), 20, "the good orders"
        )
        dead = dlq_bodies(sqs, queues.dlq_url)
        assert sorted(m["Body"][:9] for m in dead) == sorted(
            ["{not json", json.dumps(order_message(user_id, quantity=0))[:9]]
        )
        reasons = {m["MessageAttributes"]["FailureReason"]["StringValue"] for m in dead}
        assert "body is not JSON" in reasons
        assert any("quantity" in r for r in reasons)
        assert httpx.get(url + "/health").json()["deadLetteredCount"] == 2
    finally:
        backing.stack.stop("proc-poison")


def log_entries(backing, name: str, event: str) -> list[dict]:
    """The processor ``name``'s JSON log lines for ``event``."""
    log = backing.stack.home / "logs" / f"{name}.log"
    entries = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event:
            entries.append(entry)
    return entries


def failed_receives(backing, name: str, message_id: str) -> int:
    """How many times the processor ``name`` received ``message_id`` and could not store it:
    it logs one line per such receive."""
    retries = log_entries(backing, name, "order not stored; will retry")
    return sum(entry.get("message_id") == message_id for entry in retries)


def queue_depth(sqs, queue_url: str) -> tuple[int, int]:
    """(visible, in flight), read without receiving: a receive would count as one more."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def test_unstorable_order_goes_to_the_dlq_with_its_reason_on_its_last_delivery(backing, user_id):
    # Valid shape, but the user does not exist: the foreign key refuses it on every try.
    # On the redrive policy's last delivery (maxReceiveCount 3, app/queues.py) the processor
    # moves it to the DLQ itself, with the reason, instead of leaving the move to the queue.
    queues = backing.new_queues(visibility_timeout=2)
    sqs = backing.stack.client("sqs")
    orphan = order_message(2_000_000_000)
    good = order_message(user_id)
    orphan_id = send(sqs, queues.queue_url, orphan)
    send(sqs, queues.queue_url, good)
    backing.start_processor("proc-redrive", queues)
    try:
        wait_until(lambda: rows_for(backing, good["orderId"]), 15, "the good order")
        wait_until(lambda: queue_depth(sqs, queues.dlq_url)[0] == 1, 30, "the orphan in the DLQ")
        # Not one receive more, not one fewer: two retries, then the move.
        assert failed_receives(backing, "proc-redrive", orphan_id) == 2
        (moved,) = log_entries(backing, "proc-redrive", "message to DLQ")
        assert moved["message_id"] == orphan_id
        assert moved["reason"] == "not stored: IntegrityError"
        assert queue_depth(sqs, queues.queue_url) == (0, 0)
        dead = receive_all(sqs, queues.dlq_url, MessageAttributeNames=["All"], WaitTimeSeconds=1)
        assert len(dead) == 1
        assert json.loads(dead[0]["Body"]) == orphan  # the body as it was sent
        attributes = dead[0]["MessageAttributes"]
        assert attributes["FailureReason"]["StringValue"] == "not stored: IntegrityError"
        assert attributes["SourceMessageId"]["StringValue"] == orphan_id
        assert rows_for(backing, orphan["orderId"]) == []
    finally:
        backing.stack.stop("proc-redrive")


def test_database_outage_with_50_queued_orders_loses_none(backing, user_id):
    queues = backing.new_queues(visibility_timeout=5)
    sqs = backing.stack.client("sqs")
    url = backing.start_processor("proc-outage", queues)
    messages = [order_message(user_id) for _ in range(50)]
    try:
        backing.stack.stop_database()
        try:
            for message in messages:
                send(sqs, queues.queue_url, message)
            # Long enough for several visibility timeouts: held messages must not be
            # received over and over into the DLQ.
            wait_until(
                lambda: httpx.get(url + "/health").status_code == 503,
                30,
                "the processor to report the outage",
            )
            time.sleep(12)
        finally:
            backing.stack.run_database()
        uids = [m["orderId"] for m in messages]
        marks = ",".join(["%s"] * len(uids))

        def stored() -> int:
            return int(
                backing.query(f"SELECT COUNT(*) FROM orders WHERE order_uid IN ({marks})", *uids)[
                    0
                ][0]
            )

        wait_until(lambda: stored() == 50, 60, "all 50 orders after the outage")
        time.sleep(2)  # nothing more arrives later either
        assert stored() == 50
        assert dlq_bodies(sqs, queues.dlq_url) == []
        wait_until(
            lambda: httpx.get(url + "/health").status_code == 200,
            30,
            "the processor to report healthy again",
        )
    finally:
        backing.stack.stop("proc-outage")


def assert_graceful_exit(backing, name: str, returncode: int) -> None:
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why.
    assert returncode in (0, -15)
    log = (backing.stack.home / "logs" / f"{name}.log").read_text()
    assert '"processor stopped"' in log


def test_sigterm_while_waiting_exits_promptly(backing):
    queues = backing.new_queues()
    url = backing.start_processor("proc-term", queues, ECHOBASE_WAIT_TIME_SECONDS="20")
    wait_until(lambda: httpx.get(url + "/health").status_code == 200, 15, "first poll")
    process = backing.stack.processes["proc-term"]
    started = time.monotonic()
    process.terminate()
    assert_graceful_exit(backing, "proc-term", process.wait(timeout=15))
    assert time.monotonic() - started < 10  # not the rest of a 20 s long poll
    backing.stack.processes.pop("proc-term")


def test_sigterm_during_outage_hands_the_batch_back_at_once(backing, user_id):
    queues = backing.new_queues(visibility_timeout=60)
    sqs = backing.stack.client("sqs")
    url = backing.start_processor("proc-term-outage", queues)
    process = backing.stack.processes["proc-term-outage"]
    backing.stack.stop_database()
    try:
        for _ in range(5):
            send(sqs, queues.queue_url, order_message(user_id))
        wait_until(lambda: httpx.get(url + "/health").status_code == 503, 30, "outage seen")
        process.terminate()
        assert_graceful_exit(backing, "proc-term-outage", process.wait(timeout=30))
        backing.stack.processes.pop("proc-term-outage")
        attrs = sqs.get_queue_attributes(QueueUrl=queues.queue_url, AttributeNames=["All"])
        # Visible again now, not after the 60 s visibility timeout.
        assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "5"
        assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"
    finally:
        backing.stack.run_database()


def test_health_turns_503_when_polling_fails(backing):
    queues = backing.new_queues()
    url = backing.start_processor("proc-nopoll", queues)
    try:
        wait_until(lambda: httpx.get(url + "/health").status_code == 200, 15, "first poll")
        backing.stack.client("sqs").delete_queue(QueueUrl=queues.queue_url)
        # Wait time is 1 s in tests: two wait periods without a good poll is unhealthy.
        wait_until(lambda: httpx.get(url + "/health").status_code == 503, 20, "503")
        body = httpx.get(url + "/health").json()
        assert body["status"] == "degraded" and body["lastPollAt"].endswith("Z")
    finally:
        backing.stack.stop("proc-nopoll")


def test_dead_letter_queue_found_from_the_redrive_policy(backing):
    queues = backing.new_queues()
    sqs = backing.stack.client("sqs")
    send(sqs, queues.queue_url, "not an order")
    url = backing.start_processor("proc-nodlq", queues, ECHOBASE_SQS_DLQ_URL="")
    try:
        wait_until(
            lambda: httpx.get(url + "/health").json()["deadLetteredCount"] == 1,
            15,
            "the poison message to be dead-lettered",
        )
        assert [m["Body"] for m in dlq_bodies(sqs, queues.dlq_url)] == ["not an order"]
    finally:
        backing.stack.stop("proc-nodlq")


class Collector:
    """A real OTLP/HTTP endpoint on a free port (what a collector's receiver answers): it
    keeps every ExportTraceServiceRequest posted to /v1/traces."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        received = self.requests = []

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    received.append(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[tuple[str, str]]:
        """(span name, order id attribute or "") of everything received."""
        found = []
        for request in self.requests:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        attributes = {a.key: a.value.string_value for a in span.attributes}
                        found.append((span.name, attributes.get("echobase.order_id", "")))
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_spans_go_to_a_collector_when_an_otlp_endpoint_is_set(backing, user_id, tmp_path):
    collector = Collector()
    queues = backing.new_queues()
    sqs = backing.stack.client("sqs")
    message = order_message(user_id)
    send(sqs, queues.queue_url, message)
    store = tmp_path / "traces"
    backing.start_processor(
        "proc-otlp",
        queues,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        ECHOBASE_TRACES_DIR=str(store),
    )
    try:
        wait_until(
            lambda: (
                ("INSERT orders", "") in collector.spans()
                and any(order == message["orderId"] for _, order in collector.spans())
            ),
            20,
            "the order's spans at the collector",
        )
        assert not store.exists() or not any(store.iterdir())  # nothing kept locally
    finally:
        backing.stack.stop("proc-otlp")
        collector.close()
