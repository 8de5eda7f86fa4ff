"""The colour's queue server keeps SQS's promises across a crash (issue 17): a real
``aws_emulator --state-dir`` process, SIGKILLed and started again on the same directory.

Acknowledged sends survive, deleted messages stay deleted, queues come back with their
URLs and attributes, in-flight messages reappear after their visibility timeout with their
receive counts (so a poison message reaches the DLQ after exactly maxReceiveCount
receives), and a journal it cannot read stops the start with the file's name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from echobase.app.queues import MAX_RECEIVE_COUNT, ensure_queues
from echobase.platform.runtime.processes import free_port, spawn, terminate, wait_http

SRC = Path(__file__).resolve().parents[2] / "src"
HOST = "127.0.0.1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "echobase-local",
    "AWS_SECRET_ACCESS_KEY": "echobase-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SENDERS = 4


def server_env() -> dict[str, str]:
    env = {**os.environ, **CREDENTIALS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def command(port: int, state: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "echobase.platform.aws_emulator",
        "-H",
        HOST,
        "-p",
        str(port),
        "--state-dir",
        str(state),
        *extra,
    ]


class QueueServer:
    """One durable queue server on a fixed port and directory, restartable."""

    def __init__(self, state: Path, log: Path, *extra: str) -> None:
        self.port, self.state, self.log, self.extra = free_port(HOST), state, log, extra
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://{HOST}:{self.port}"

    def start(self) -> float:
        """Start and wait until it answers; returns the seconds that took."""
        began = time.monotonic()
        argv = command(self.port, self.state, *self.extra)
        self.process = spawn(argv, self.log, env=server_env())
        try:
            wait_http(f"{self.url}/moto-api/", timeout=60, process=self.process, ok=0)
        except (RuntimeError, TimeoutError) as exc:
            tail = self.log.read_text(errors="replace")[-3000:]
            pytest.fail(f"{exc}\n--- {self.log} ---\n{tail}")
        return time.monotonic() - began

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)  # a crash: no handler runs
        self.process.wait(timeout=10)

    def restart(self) -> float:
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)

    def client(self) -> Any:
        return boto3.client(
            "sqs",
            endpoint_url=self.url,
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=SENDERS + 2),
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[QueueServer]:
    queue_server = QueueServer(tmp_path / "sqs", tmp_path / "sqs.log")
    try:
        queue_server.start()
        yield queue_server
    finally:
        queue_server.stop()


def every_message(sqs: Any, url: str, visibility: int = 60) -> dict[str, dict[str, Any]]:
    """Every message now visible, by id, left in flight for ``visibility`` seconds."""
    found: dict[str, dict[str, Any]] = {}
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=visibility,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return found
        found.update({m["MessageId"]: m for m in batch})


def depth(sqs: Any, url: str) -> dict[str, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {
        "visible": int(attributes["ApproximateNumberOfMessages"]),
        "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    }


def test_nothing_acknowledged_is_lost_or_undeleted_by_a_sigkill_under_load(
    server: QueueServer,
) -> None:
    sqs = server.client()
    urls = ensure_queues(sqs, visibility_timeout=2)
    sent: set[str] = set()
    deleted: set[str] = set()
    in_doubt: set[str] = set()  # in a delete batch that got no answer
    stop = threading.Event()
    lock = threading.Lock()

    def send(worker: int) -> None:
        client = server.client()
        n = 0
        while not stop.is_set():
            entries = [{"Id": str(i), "MessageBody": f"{worker}-{n}-{i}"} for i in range(10)]
            n += 1
            try:
                answer = client.send_message_batch(QueueUrl=urls.queue_url, Entries=entries)
            except Exception:  # noqa: S112 - not acknowledged: nothing was promised
                continue
            with lock:
                sent.update(ok["MessageId"] for ok in answer.get("Successful", []))

    def consume() -> None:
        client = server.client()
        while not stop.is_set():
            batch: list[dict[str, Any]] = []  # a failed receive leaves nothing in doubt
            try:
                batch = client.receive_message(
                    QueueUrl=urls.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
                ).get("Messages", [])
                if not batch:
                    continue
                answer = client.delete_message_batch(
                    QueueUrl=urls.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(batch)
                    ],
                )
            except Exception:
                # A delete not acknowledged may be undone, or done: the kill can take
                # the answer of a delete that was already journaled.
                with lock:
                    in_doubt.update(m["MessageId"] for m in batch)
                continue
            ids = {str(i): m["MessageId"] for i, m in enumerate(batch)}
            with lock:
                deleted.update(ids[ok["Id"]] for ok in answer.get("Successful", []))

    threads = [threading.Thread(target=send, args=(w,)) for w in range(SENDERS)]
    threads.append(threading.Thread(target=consume))
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(sent) < 1500 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()  # mid-load: requests in flight on every thread
        with lock:
            acknowledged, gone = set(sent), set(deleted)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert len(acknowledged) >= 1500, "too little load before the kill to mean anything"
    assert gone, "the consumer deleted nothing before the kill"

    server.start()
    time.sleep(2.1)  # what was in flight at the kill becomes visible again
    present = every_message(sqs, urls.queue_url)
    # Only a message whose delete was sent but never answered may be missing unacknowledged.
    assert acknowledged - gone - in_doubt - set(present) == set(), "acknowledged sends lost"
    assert gone & set(present) == set(), "acknowledged deletes undone"


def test_queues_come_back_with_their_urls_and_attributes(server: QueueServer) -> None:
    sqs = server.client()
    urls = ensure_queues(sqs)
    sqs.tag_queue(QueueUrl=urls.queue_url, Tags={"colour": "green"})
    stable = ("QueueArn", "VisibilityTimeout", "RedrivePolicy", "MessageRetentionPeriod")
    before = {
        url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for url in (urls.queue_url, urls.dlq_url)
    }

    server.restart()
    for url, attributes in before.items():
        name = url.rsplit("/", 1)[1]
        assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
        after = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for key in (*stable, "CreatedTimestamp"):
            assert after.get(key) == attributes.get(key), key
    assert json.loads(before[urls.queue_url]["RedrivePolicy"])["maxReceiveCount"] in (3, "3")
    assert sqs.list_queue_tags(QueueUrl=urls.queue_url)["Tags"] == {"colour": "green"}
    # The colour's start repeats ensure_queues against the restored queues: still the same.
    assert ensure_queues(sqs) == urls


def test_in_flight_messages_come_back_after_their_timeout_with_their_counts(
    server: QueueServer,
) -> None:
    sqs = server.client()
    urls = ensure_queues(sqs)
    sqs.send_message_batch(
        QueueUrl=urls.queue_url,
        Entries=[{"Id": str(i), "MessageBody": f"order {i}"} for i in range(6)],
    )
    taken = sqs.receive_message(QueueUrl=urls.queue_url, MaxNumberOfMessages=3, VisibilityTimeout=4)
    in_flight = {m["MessageId"]: m for m in taken["Messages"]}
    assert len(in_flight) == 3

    server.restart()
    assert depth(sqs, urls.queue_url) == {"visible": 3, "in_flight": 3}
    # A receipt handle given before the crash still deletes its message.
    first = next(iter(in_flight.values()))
    sqs.delete_message(QueueUrl=urls.queue_url, ReceiptHandle=first["ReceiptHandle"])
    deadline = time.monotonic() + 10
    while depth(sqs, urls.queue_url)["visible"] < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    again = every_message(sqs, urls.queue_url)
    assert len(again) == 5 and first["MessageId"] not in again
    counts = {mid: int(m["Attributes"]["ApproximateReceiveCount"]) for mid, m in again.items()}
    assert {counts[mid] for mid in in_flight if mid != first["MessageId"]} == {2}
    assert sorted(counts.values()).count(1) == 3


def test_message_attributes_survive(server: QueueServer) -> None:
    sqs = server.client()
    urls = ensure_queues(sqs)
    attributes = {
        "kind": {"DataType": "String", "StringValue": "order"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xffbytes"},
    }
    sent = sqs.send_message(QueueUrl=urls.queue_url, MessageBody="{}", MessageAttributes=attributes)
    server.restart()
    (message,) = sqs.receive_message(QueueUrl=urls.queue_url, MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert message["MessageId"] == sent["MessageId"]
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["MessageAttributes"]["raw"]["BinaryValue"] == b"\x00\xffbytes"
    assert message["MessageAttributes"]["kind"]["StringValue"] == "order"


def test_a_poison_message_reaches_the_dlq_after_exactly_its_receives_across_crashes(
    server: QueueServer,
) -> None:
    sqs = server.client()
    urls = ensure_queues(sqs, visibility_timeout=30)  # far beyond any restart: no clock
    sqs.send_message(QueueUrl=urls.queue_url, MessageBody="poison")
    for receive in range(1, MAX_RECEIVE_COUNT + 1):
        (message,) = sqs.receive_message(
            QueueUrl=urls.queue_url, WaitTimeSeconds=5, AttributeNames=["All"]
        )["Messages"]
        assert int(message["Attributes"]["ApproximateReceiveCount"]) == receive
        server.restart()  # the count and the invisibility must outlive the crash
        assert depth(sqs, urls.queue_url) == {"visible": 0, "in_flight": 1}
        assert depth(sqs, urls.dlq_url)["visible"] == 0
        # A consumer giving it back (as the processor does with a failed order), with the
        # receipt handle it got before the crash.
        sqs.change_message_visibility(
            QueueUrl=urls.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    # The next receive finds it has had its receives: moved, not delivered.
    assert sqs.receive_message(QueueUrl=urls.queue_url, WaitTimeSeconds=1).get("Messages") is None
    server.restart()
    (dead,) = sqs.receive_message(QueueUrl=urls.dlq_url, WaitTimeSeconds=1)["Messages"]
    assert dead["Body"] == "poison"
    assert depth(sqs, urls.queue_url) == {"visible": 0, "in_flight": 0}


def test_purged_and_deleted_queues_stay_so(server: QueueServer) -> None:
    sqs = server.client()
    kept = sqs.create_queue(QueueName="kept")["QueueUrl"]
    doomed = sqs.create_queue(QueueName="doomed")["QueueUrl"]
    for url in (kept, doomed):
        sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.purge_queue(QueueUrl=kept)
    sqs.send_message(QueueUrl=kept, MessageBody="after the purge")
    sqs.delete_queue(QueueUrl=doomed)
    server.restart()
    assert [m["Body"] for m in every_message(sqs, kept).values()] == ["after the purge"]
    assert [url.rsplit("/", 1)[1] for url in sqs.list_queues()["QueueUrls"]] == ["kept"]


def test_compaction_keeps_the_state_and_bounds_the_file(tmp_path: Path) -> None:
    server = QueueServer(tmp_path / "sqs", tmp_path / "sqs.log", "--compact-at", "20000")
    try:
        server.start()
        sqs = server.client()
        urls = ensure_queues(sqs)
        kept: set[str] = set()
        for round_ in range(40):
            entries = [{"Id": str(i), "MessageBody": f"{round_}-{i}" * 20} for i in range(10)]
            answer = sqs.send_message_batch(QueueUrl=urls.queue_url, Entries=entries)
            ids = [ok["MessageId"] for ok in answer["Successful"]]
            taken = sqs.receive_message(QueueUrl=urls.queue_url, MaxNumberOfMessages=10)
            sqs.delete_message_batch(
                QueueUrl=urls.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(taken["Messages"][:9])
                ],
            )
            kept.update(ids)
            kept -= {m["MessageId"] for m in taken["Messages"][:9]}
        size = (tmp_path / "sqs" / "journal").stat().st_size
        assert size < 20000 * 2, f"the journal grew to {size} bytes"
        assert "compacted" in server.log.read_text()
        server.restart()
        counts = depth(sqs, urls.queue_url)
        # One message a round was received and not deleted: in flight for 30 s.
        assert counts["visible"] + counts["in_flight"] == len(kept)
        assert set(every_message(sqs, urls.queue_url)) <= kept
    finally:
        server.stop()


def refused(state: Path, log: Path) -> str:
    """Start a server on ``state`` that must refuse: its exit code and message."""
    port = free_port(HOST)
    result = subprocess.run(
        command(port, state), env=server_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0, "started on a journal it cannot read"
    log.write_text(result.stderr)
    return result.stderr


def test_a_journal_it_cannot_read_stops_the_start_naming_the_file(
    server: QueueServer, tmp_path: Path
) -> None:
    sqs = server.client()
    urls = ensure_queues(sqs)
    for i in range(3):
        sqs.send_message(QueueUrl=urls.queue_url, MessageBody=f"m{i}")
    server.stop()
    journal = server.state / "journal"
    lines = journal.read_bytes().split(b"\n")
    lines[1] = lines[1][:-8] + b"AAAAAAAA"  # a damaged line in the middle
    journal.write_bytes(b"\n".join(lines))
    message = refused(server.state, tmp_path / "refused.log")
    assert f"{journal} line 2 is corrupt" in message

    key = server.state / "queue.key"
    key.unlink()
    assert f"{journal} exists but its key {key} is missing" in refused(
        server.state, tmp_path / "refused2.log"
    )


def test_a_half_written_last_line_is_dropped_not_refused(server: QueueServer) -> None:
    sqs = server.client()
    urls = ensure_queues(sqs)
    sent = sqs.send_message(QueueUrl=urls.queue_url, MessageBody="kept")["MessageId"]
    server.kill()
    with (server.state / "journal").open("ab") as journal:
        journal.write(b"dGhpcyBsaW5lIHdhcyBjdXQgc2hvcnQ")  # a crash mid-write: no newline
    server.start()
    assert list(every_message(sqs, urls.queue_url)) == [sent]
    assert "dropping a truncated last line" in server.log.read_text()


def test_state_files_are_private(server: QueueServer) -> None:
    ensure_queues(server.client())
    assert server.state.stat().st_mode & 0o777 == 0o700
    for name in ("journal", "queue.key"):
        assert (server.state / name).stat().st_mode & 0o777 == 0o600
    # Sealed: no queue name, message body or attribute in clear on disk.
    server.client().send_message(
        QueueUrl=ensure_queues(server.client()).queue_url, MessageBody=uuid.uuid4().hex
    )
    assert b"order-processing" not in (server.state / "journal").read_bytes()


def test_the_reset_api_is_refused(server: QueueServer) -> None:
    # It would empty memory behind the journal's back.
    assert httpx.post(f"{server.url}/moto-api/reset", timeout=10).status_code == 403
    assert httpx.get(f"{server.url}/moto-api/data.json", timeout=10).status_code == 403


def test_the_journal_counters_show_group_commit(server: QueueServer) -> None:
    sqs = server.client()
    urls = ensure_queues(sqs)
    sqs.send_message_batch(
        QueueUrl=urls.queue_url,
        Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)],
    )
    stats = httpx.get(f"{server.url}/echobase/journal", timeout=10).json()
    # One batch of ten is one request: its ten entries went out in one fsync at most.
    assert stats["messages"] == 10
    assert stats["entries"] >= 13  # three queue calls, ten messages
    assert 1 <= stats["appends"] <= 4
    assert stats["bytes"] == (server.state / "journal").stat().st_size
