"""What the queue server keeps of messages it no longer holds (issue 19): moto's own record
kept every message object and every deleted receipt handle for the life of the process.

In-process on purpose, on moto's backend as the patched server runs it: the bound below is
16,384 handles, too many to send through a real server in a unit test, so it is lowered here.
tests/integration/test_aws_emulator_patch.py checks the message objects through a real one.
"""

from __future__ import annotations

import gc
import uuid
import weakref
from typing import Any

import pytest
from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.sqs.models import sqs_backends

from echobase.platform import aws_emulator


@pytest.fixture
def backend() -> Any:
    aws_emulator.patch_sqs()
    return sqs_backends["123456789012"]["us-east-1"]


def received(backend: Any, queue: str, count: int) -> list[Any]:
    for n in range(count):
        backend.send_message(queue, f"order {n}")
    messages: list[Any] = []
    while len(messages) < count:
        messages += backend.receive_message(
            queue, count=10, wait_seconds_timeout=0, visibility_timeout=30
        )
    return messages


def test_deleted_receipt_handles_are_bounded(backend: Any, monkeypatch) -> None:
    monkeypatch.setattr(aws_emulator, "DELETED_RECEIPTS_KEPT", 10)
    name = f"t-{uuid.uuid4().hex[:8]}"
    queue = backend.create_queue(name)
    handles = [m.receipt_handle for m in received(backend, name, 25)]
    for handle in handles:
        queue.delete_message(handle)
    assert queue.deleted_messages == set(handles[-10:])
    queue.delete_message(handles[-1])  # a recent repeat still succeeds, as in SQS
    with pytest.raises(ReceiptHandleIsInvalid):
        queue.delete_message(handles[0])  # an old one is gone, as after a restart


def test_a_deleted_message_is_freed(backend: Any) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    queue = backend.create_queue(name)
    messages = received(backend, name, 5)
    refs = [weakref.ref(m) for m in messages]
    for message in messages:
        queue.delete_message(message.receipt_handle)
    del messages, message
    gc.collect()
    assert [ref() for ref in refs] == [None] * 5
