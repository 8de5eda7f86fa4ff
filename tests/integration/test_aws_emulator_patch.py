"""The SendMessage patch in echobase.platform.aws_emulator keeps SQS behaving like moto.

Behaviour, not speed (bench/queue_depth.py measures speed): the launcher runs as a real
server process, and sends, counts, FIFO de-duplication and receives must all still work.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from echobase.platform.runtime.processes import free_port, spawn, terminate, wait_http

SRC = Path(__file__).resolve().parents[2] / "src"
HOST = "127.0.0.1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "echobase-local", "AWS_SECRET_ACCESS_KEY": "echobase-local"}
FILLED = 2000


@pytest.fixture(scope="module")
def endpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    port = free_port(HOST)
    log = tmp_path_factory.mktemp("aws_emulator") / "aws_emulator.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    process = spawn(
        [sys.executable, "-m", "echobase.platform.aws_emulator", "-H", HOST, "-p", str(port)],
        log,
        env=env,
    )
    request.addfinalizer(lambda: terminate(process))  # registered before anything can fail
    try:
        wait_http(f"http://{HOST}:{port}/moto-api/", timeout=60, process=process, ok=0)
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"{exc}\n--- {log} ---\n{log.read_text(errors='replace')[-4000:]}")
    return f"http://{HOST}:{port}"


@pytest.fixture(scope="module")
def sqs(endpoint: str) -> Iterator[Any]:
    saved = {key: os.environ.get(key) for key in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        yield boto3.client(
            "sqs",
            region_name="us-east-1",
            endpoint_url=endpoint,
            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=10),
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def new_queue(sqs: Any, fifo: bool = False, **attributes: str) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else "")
    if fifo:
        attributes["FifoQueue"] = "true"
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def counts(sqs: Any, url: str) -> dict[str, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {
        "visible": int(attrs["ApproximateNumberOfMessages"]),
        "not_visible": int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        "delayed": int(attrs["ApproximateNumberOfMessagesDelayed"]),
    }


def send_batches(sqs: Any, url: str, total: int, prefix: str = "m") -> None:
    for first in range(0, total, 10):
        entries = [
            {
                "Id": f"{prefix}{seq}",
                "MessageBody": json.dumps({"order_id": seq}),
                "MessageAttributes": {
                    "CorrelationId": {"DataType": "String", "StringValue": f"{prefix}{seq}"}
                },
            }
            for seq in range(first, min(first + 10, total))
        ]
        result = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not result.get("Failed"), result["Failed"]
        assert len(result["Successful"]) == len(entries)


def test_sends_and_counts_at_depth(sqs: Any) -> None:
    url = new_queue(sqs)
    send_batches(sqs, url, FILLED)
    # The patch did not break counting: GetQueueAttributes still scans.
    assert counts(sqs, url) == {"visible": FILLED, "not_visible": 0, "delayed": 0}

    body = json.dumps({"order_id": "x-1", "total_cents": 1999})
    response = sqs.send_message(
        QueueUrl=url,
        MessageBody=body,
        MessageAttributes={"CorrelationId": {"DataType": "String", "StringValue": "c-1"}},
    )
    assert response["MessageId"]
    assert response["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()  # noqa: S324
    assert len(response["MD5OfMessageAttributes"]) == 32
    assert counts(sqs, url) == {"visible": FILLED + 1, "not_visible": 0, "delayed": 0}

    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    assert counts(sqs, url) == {"visible": FILLED + 1, "not_visible": 0, "delayed": 1}


def test_receive_and_delete_still_work(sqs: Any) -> None:
    url = new_queue(sqs)
    send_batches(sqs, url, 30)

    got = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=60,
        MessageAttributeNames=["All"],
    )["Messages"]
    assert len(got) == 10
    for msg in got:
        assert json.loads(msg["Body"])["order_id"] >= 0
        assert msg["MD5OfBody"] == hashlib.md5(msg["Body"].encode()).hexdigest()  # noqa: S324
        assert msg["MessageAttributes"]["CorrelationId"]["StringValue"].startswith("m")
    assert counts(sqs, url) == {"visible": 20, "not_visible": 10, "delayed": 0}

    # A send while messages are in flight must not disturb the in-flight count.
    sqs.send_message(QueueUrl=url, MessageBody="one more")
    assert counts(sqs, url) == {"visible": 21, "not_visible": 10, "delayed": 0}

    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
    result = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    assert not result.get("Failed")
    assert counts(sqs, url) == {"visible": 21, "not_visible": 0, "delayed": 0}


def test_fifo_content_based_deduplication_still_applies(sqs: Any) -> None:
    url = new_queue(sqs, fifo=True, ContentBasedDeduplication="true")
    body = json.dumps({"order_id": "dup-1"})

    first = sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="g1")
    assert first["MessageId"]
    assert counts(sqs, url)["visible"] == 1
    sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="g1")
    assert counts(sqs, url)["visible"] == 1  # the duplicate was dropped

    other = json.dumps({"order_id": "dup-2"})
    sqs.send_message(QueueUrl=url, MessageBody=other, MessageGroupId="g1")
    assert counts(sqs, url)["visible"] == 2  # a different body is not a duplicate

    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == [body, other]


def test_concurrent_sends_and_counts(sqs: Any) -> None:
    """Sends from several connections at once (moto's server is threaded) all land, and a
    GetQueueAttributes served alongside them sees the real, growing count, never the 0 that
    the patch shows inside a send.

    A smoke check: with the GIL the window in which a leaked "sending" flag would be visible
    to another thread is narrow, so this would not reliably catch a non-thread-local flag.
    """
    url = new_queue(sqs)
    send_batches(sqs, url, 200, prefix="base")
    stop = threading.Event()
    errors: list[BaseException] = []
    batches_sent = [0, 0, 0]

    def sender(worker: int) -> None:
        try:
            while not stop.is_set():
                send_batches(sqs, url, 10, prefix=f"w{worker}-{batches_sent[worker]}-")
                batches_sent[worker] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(len(batches_sent))]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    try:
        for _ in range(40):
            seen.append(counts(sqs, url)["visible"])
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    assert min(seen) >= 200, seen
    assert seen == sorted(seen), seen  # only sends happen, so the count never drops
    assert counts(sqs, url)["visible"] == 200 + 10 * sum(batches_sent)


def test_patch_is_idempotent() -> None:
    """In-process on purpose: only checks that patching twice is harmless."""
    from moto.sqs import models

    from echobase.platform.aws_emulator import patch_sqs

    patch_sqs()
    first = (models.Queue.approximate_number_of_messages, models.SQSBackend.send_message)
    patch_sqs()
    assert models.Queue._echobase_patched is True  # type: ignore[attr-defined]
    # Not wrapped a second time.
    assert (models.Queue.approximate_number_of_messages, models.SQSBackend.send_message) == first


def test_delete_rules_unchanged(sqs: Any) -> None:
    from botocore.exceptions import ClientError

    url = new_queue(sqs)
    send_batches(sqs, url, 30)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    handle = got[0]["ReceiptHandle"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)  # a repeat is accepted
    assert counts(sqs, url)["visible"] == 29 and counts(sqs, url)["not_visible"] == 0
    with pytest.raises(ClientError) as info:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="bogus-handle")
    assert info.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"
    assert counts(sqs, url)["visible"] == 29


def raw_exchange(sock: Any, request: bytes) -> tuple[bytes, bytes]:
    """Send one HTTP/1.1 request on an open socket; the answer's head and its body."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_connections_stay_open_between_requests_and_a_partly_read_body_is_skipped(
    endpoint: str, sqs: Any
) -> None:
    import socket

    url = new_queue(sqs)
    host, port = endpoint.removeprefix("http://").split(":")
    form = f"Action=SendMessage&QueueUrl={url}&MessageBody=kept".encode()
    send = (
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded"
        b"\r\nAuthorization: AWS4-HMAC-SHA256 Credential=echobase-local/20260101/us-east-1/sqs/"
        b"aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: "
        + str(len(form)).encode()
        + b"\r\n\r\n"
        + form
    )
    # moto's JSON API answers GET /moto-api/data.json without reading the body sent with it:
    # those bytes must be skipped, not parsed as the next request.
    unread = b"x" * 5000
    ignored = (
        b"GET /moto-api/data.json HTTP/1.1\r\nHost: localhost\r\nContent-Length: "
        + str(len(unread)).encode()
        + b"\r\n\r\n"
        + unread
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for request in (send, ignored, send, send):
            head, _ = raw_exchange(sock, request)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"connection: close" not in head.lower()
    assert counts(sqs, url)["visible"] == 3


def test_a_client_asking_to_close_is_closed(endpoint: str) -> None:
    import socket

    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head, _ = raw_exchange(
            sock, b"GET /moto-api/data.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert head.startswith(b"HTTP/1.1 200")
        assert sock.recv(1) == b""  # the server closed its side


def test_deleted_messages_are_not_kept(sqs: Any, endpoint: str) -> None:
    """moto lists every model instance it ever made in /moto-api/data.json, and used to keep
    them all: every message sent, long after its deletion. Only live messages are listed."""

    url = new_queue(sqs)
    send_batches(sqs, url, 40, prefix="gone")
    received: list[dict[str, Any]] = []
    while len(received) < 40:
        received += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    for message in received[:30]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    deleted = {message["MessageId"] for message in received[:30]}
    in_flight = {message["MessageId"] for message in received[30:]}
    listed = {
        message["id"]
        for message in httpx.get(f"{endpoint}/moto-api/data.json", timeout=30).json()["sqs"][
            "Message"
        ]
    }
    assert not deleted & listed, f"{len(deleted & listed)} deleted messages are still held"
    assert in_flight <= listed  # the record of live messages still works


def test_permission_checks_still_apply_when_switched_on(sqs: Any, endpoint: str) -> None:
    """IAM is left unloaded while moto checks no permissions (its default); switched on
    through moto's own API, the check loads IAM and refuses a key IAM does not know."""
    url = new_queue(sqs)

    def reset_auth(count: str) -> None:
        answer = httpx.post(f"{endpoint}/moto-api/reset-auth", content=count, timeout=10)
        assert answer.status_code == 200, answer.text

    reset_auth("0")
    try:
        with pytest.raises(ClientError) as refused:
            sqs.send_message(QueueUrl=url, MessageBody="unknown key")
        # moto answers its auth error in the query protocol's XML, which the JSON client
        # cannot parse: the status and the code inside the message tell it.
        error = refused.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert "<Code>InvalidClientTokenId</Code>" in error["Error"]["Message"]
    finally:
        reset_auth("inf")
    assert "MessageId" in sqs.send_message(QueueUrl=url, MessageBody="checks off again")
