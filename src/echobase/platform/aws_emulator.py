"""Launcher for moto's server mode: the AWS APIs (SQS, Secrets Manager, KMS) on a local port.

It carries one patch. moto's ``Queue.attributes`` property builds every attribute, and the
three ``ApproximateNumberOfMessages*`` ones each scan every message in the queue. SendMessage
reads ``queue.attributes`` just to look up ``ContentBasedDeduplication``, so each send costs
O(queue depth): with orders piling up during a database outage, intake slowed to a crawl
(measured in bench/queue_depth.py). The patch makes those counts read 0 while a send is
being handled, in that thread only; GetQueueAttributes and everything else still count.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

_COUNT_PROPERTIES = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)
_sending = threading.local()


def patch_sqs_send_cost() -> None:
    """Idempotently make SendMessage/SendMessageBatch independent of the queue's depth."""
    from moto.sqs import models

    queue_cls: Any = models.Queue
    if getattr(queue_cls, "_echobase_patched", False):
        return

    def skipped_while_sending(count: property) -> property:
        def fget(self: Any) -> int:
            # Only the attributes dict built inside a send sees 0; it never leaves the send.
            return 0 if getattr(_sending, "active", False) else int(count.fget(self))  # type: ignore[misc]

        return property(fget)

    def sending(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _sending.active = True
            try:
                return method(*args, **kwargs)
            finally:
                _sending.active = False

        return wrapper

    for name in _COUNT_PROPERTIES:
        setattr(queue_cls, name, skipped_while_sending(getattr(queue_cls, name)))
    backend: Any = models.SQSBackend
    backend.send_message = sending(backend.send_message)
    backend.send_message_batch = sending(backend.send_message_batch)
    queue_cls._echobase_patched = True


def main(argv: list[str] | None = None) -> None:
    patch_sqs_send_cost()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
