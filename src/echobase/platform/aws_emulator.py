"""Launcher for moto's server mode: the AWS APIs (SQS, Secrets Manager, KMS) on a local port.

It carries a small patch to moto's SQS, for two reasons measured in bench/queue_depth.py:

1. Cost that grows with queue depth. ``Queue.attributes`` builds every attribute, and the
   three ``ApproximateNumberOfMessages*`` ones each scan every message. SendMessage reads it
   only to look up ``ContentBasedDeduplication``, and ReceiveMessage reads it once *per
   message* to find the retention period. With orders piling up during a database outage,
   plain moto at 10,000 queued took ~200 ms a send (4.8 sends/s, from 127 at depth 0) and
   ~6 s per ReceiveMessage(10)+DeleteMessageBatch cycle. DeleteMessage also scanned the
   queue twice, allocating a list per message.
2. A lost-message race. DeleteMessage rebuilt the message list without the queue's lock,
   so a SendMessage appending between the rebuild and the swap was dropped: a lost order.

The patch: counts read 0 while a send builds attributes (that dict never leaves the send;
GetQueueAttributes still counts); the retention check reads the one attribute it needs; the
visible messages behind every receive are a lazy view with one clock reading; and
DeleteMessage finds its message through an index of receipt handles and removes it in place,
under the lock that SendMessage already takes.

Two things moto loads are kept small, for the memory of the system's three emulator
processes (``keep_moto_lean``): IAM is loaded only when something needs it (moto imports
its IAM models on every request to note the caller's access key, 8 MiB), and botocore's
endpoint data, which moto reads for the regions of a service, keeps the emulated services
only (6.7 MiB as objects).

It also keeps HTTP connections alive between requests (see ``keep_alive_handler``), and
answers ``GET /metrics`` with the queues' depths for Prometheus (see ``queue_metrics``).

All of this reaches into moto's private internals, which change without notice: pyproject
pins moto to ``SUPPORTED_MOTO``, and ``check_moto`` refuses to patch a moto whose internals
are not of the shape the patch was written against, naming what is missing.
"""

from __future__ import annotations

import collections
import functools
import importlib
import importlib.metadata
import inspect
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from echobase.platform.queue_journal import CALLS as JOURNALED_CALLS
from echobase.platform.queue_journal import COMPACT_AT

# The moto series whose internals the patch below was checked against; pyproject.toml pins
# moto[server] to the same range.
SUPPORTED_MOTO = ">=5.2.5,<5.3"

_COUNT_PROPERTIES = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)
_sending = threading.local()


def _skipped_while_sending(count: property) -> property:
    def fget(self: Any) -> int:
        if getattr(_sending, "active", False):
            return 0
        return int(count.fget(self))  # type: ignore[misc]

    return property(fget)


def _sending_call(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = getattr(_sending, "active", False)
        _sending.active = True
        try:
            return method(*args, **kwargs)
        finally:
            _sending.active = previous

    return wrapper


def _retained(self: Any, queue_name: str, message: Any) -> bool:
    from moto.core.utils import unix_time

    retention = int(self.get_queue(queue_name).message_retention_period)
    return bool(retention + message.sent_timestamp / 1000 > unix_time())


# Every receipt handle ever issued -> its message, so DeleteMessage need not search.
_by_receipt: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def _indexing_receipts(mark_received: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(mark_received)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = mark_received(self, *args, **kwargs)
        _by_receipt[self.receipt_handle] = self
        return result

    return wrapper


class _VisibleMessages:
    """The queue's visible messages as a lazy view: ReceiveMessage stops after the few it
    takes instead of moto building a list of the whole queue, and the clock (moto's is
    slow) is read once per view instead of twice per message."""

    def __init__(self, messages: list[Any]) -> None:
        from moto.core.utils import unix_time_millis

        self._messages, self._now = messages, unix_time_millis()

    def __iter__(self) -> Iterator[Any]:
        now = self._now
        # Over a copy of the references: a concurrent in-place delete must not skip one.
        return (m for m in list(self._messages) if now > m.visible_at and now >= m.delayed_until)

    def __bool__(self) -> bool:
        return any(True for _ in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _LiveInstances(weakref.WeakSet[Any]):
    """moto's record of a model's instances (``instances_tracked``, listed by
    /moto-api/data.json), holding them weakly. moto appends every instance it makes and only
    a reset drops them, so the server kept every message ever sent: 16,000 orders through a
    queue left 32,000 Message objects and ~45 MiB behind after they were all deleted."""

    def append(self, instance: Any) -> None:
        self.add(instance)


def _visible_messages(self: Any) -> _VisibleMessages:
    return _VisibleMessages(self._messages)


# How many receipt handles of deleted messages a queue remembers, so that a repeated
# DeleteMessage succeeds as SQS's does. moto remembered every one, about 0.3 KiB a message for
# as long as the server ran (1.5 MiB more per 5,000 orders, run after run). A repeat comes
# from a consumer retrying its batch within seconds (4,096 are over 10 s of deletes at the
# system's peak intake); an older one answers ReceiptHandleIsInvalid, which consumers
# treat as "gone", as they do after a restart.
DELETED_RECEIPTS_KEPT = 4_096


def _delete_message(self: Any, receipt_handle: str) -> None:
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if receipt_handle in self.deleted_messages:
        return  # already deleted: SQS accepts a repeat
    found = _by_receipt.get(receipt_handle)
    with self._messages_lock:
        try:
            if found is None:
                raise ValueError(receipt_handle)
            self._messages.remove(found)  # in place: a concurrent append is never lost
        except ValueError:
            raise ReceiptHandleIsInvalid() from None
        self.pending_messages.discard(found)
        _remember_deleted(self, found.all_receipt_handles)


def _remember_deleted(queue: Any, handles: list[str | None]) -> None:
    """Under the queue's lock: the newest handles in its set, the oldest ones dropped."""
    order: collections.deque[str] | None = queue.__dict__.get("_echobase_deleted_order")
    if order is None:
        order = queue._echobase_deleted_order = collections.deque()
    # moto lists a None before the first receive's handle.
    receipt_handles = [handle for handle in handles if handle is not None]
    queue.deleted_messages.update(receipt_handles)
    order.extend(receipt_handles)
    while len(order) > DELETED_RECEIPTS_KEPT:
        queue.deleted_messages.discard(order.popleft())


class MotoIncompatible(RuntimeError):
    """The installed moto lacks an internal that the patch wraps or replaces."""


_MODELS = "moto.sqs.models"
_IAM_MODELS = "moto.iam.models"
_AUTH_CHECKS = (
    "_authenticate_and_authorize_normal_action",
    "_authenticate_and_authorize_s3_action",
)
# What keep_moto_lean relies on (checked alone where only it applies: the secrets store).
_LEAN_SHAPE: tuple[tuple[str, str, str], ...] = (
    ("moto.core.authorization", "ActionAuthenticatorMixin.request_count", "int"),
    *(
        ("moto.core.authorization", f"ActionAuthenticatorMixin.{name}", "function")
        for name in _AUTH_CHECKS
    ),
    ("moto.core", "DEFAULT_ACCOUNT_ID", "str"),
    ("moto.settings", "INITIAL_NO_AUTH_ACTION_COUNT", "number"),
    ("moto.core.base_backend", "AccountSpecificBackend.get_session", "classmethod"),
)
# (module, dotted attribute, what it must be): everything patch_sqs, the helpers it
# installs and keep_alive_handler wrap, replace or call. "property" and "function" are
# looked up statically on the class (a property replaced by a plain value would still be
# found by getattr); "class", "callable" and "mapping" are module-level names.
_SHAPE: tuple[tuple[str, str, str], ...] = (
    *((_MODELS, f"Queue.{name}", "property") for name in _COUNT_PROPERTIES),
    (_MODELS, "Queue.messages", "property"),
    (_MODELS, "Queue.pending_messages", "property"),
    (_MODELS, "Queue.delete_message", "function"),
    (_MODELS, "Message.mark_received", "function"),
    (_MODELS, "Message.all_receipt_handles", "property"),
    (_MODELS, "SQSBackend.send_message", "function"),
    (_MODELS, "SQSBackend.send_message_batch", "function"),
    (_MODELS, "SQSBackend.is_message_valid_based_on_retention_period", "function"),
    (_MODELS, "SQSBackend.get_queue", "function"),
    ("moto.sqs.exceptions", "ReceiptHandleIsInvalid", "class"),
    ("moto.core.utils", "unix_time", "callable"),
    ("moto.core.utils", "unix_time_millis", "callable"),
    *_LEAN_SHAPE,
    ("moto.moto_server.werkzeug_app", "MotoRequestHandler", "class"),
    ("moto.moto_server.werkzeug_app", "MotoRequestHandler.make_environ", "function"),
    ("moto.moto_server.werkzeug_app", "DomainDispatcherApplication", "class"),
    ("moto.moto_server.werkzeug_app", "create_backend_app", "callable"),
    # What queue_journal wraps to record every change.
    *((_MODELS, f"SQSBackend.{name}", "function") for name in JOURNALED_CALLS),
    (_MODELS, "SQSBackend.change_message_visibility", "function"),
    (_MODELS, "Queue.add_message", "function"),
    (_MODELS, "Message", "class"),
    (_MODELS, "Message.instances_tracked", "instances"),
    (_MODELS, "sqs_backends", "mapping"),
)
# State that moto's constructors set on each instance, read or mutated by the patch.
_QUEUE_STATE: dict[str, type | tuple[type, ...]] = {
    "_messages": list,
    "_messages_lock": type(threading.Condition()),
    "deleted_messages": set,
    "pending_messages": set,
    "message_retention_period": (int, str),
}
_MESSAGE_STATE: dict[str, type | tuple[type, ...]] = {
    "receipt_handle": (str, type(None)),
    "visible_at": (int, float),
    "delayed_until": (int, float),
    "sent_timestamp": (int, type(None)),
}


def _shape_problem(module: ModuleType, dotted: str, kind: str) -> str | None:
    owner: Any = module
    *path, name = dotted.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    found = inspect.getattr_static(owner, name, None) if owner is not None else None
    where = f"{module.__name__}.{dotted}"
    if found is None:
        return f"{where} is missing"
    ok = {
        "property": isinstance(found, property),
        "function": inspect.isfunction(found),
        "class": isinstance(found, type),
        "callable": callable(found),
        "mapping": isinstance(found, dict),
        "classmethod": isinstance(found, classmethod),
        "int": isinstance(found, int),
        "number": isinstance(found, int | float),
        "str": isinstance(found, str),
        "instances": isinstance(found, (list, _LiveInstances)),  # a list until patched
    }[kind]
    return None if ok else f"{where} is not a {kind} (found {type(found).__name__})"


def _state_problems(
    what: str, make: Callable[[], Any], expected: dict[str, type | tuple[type, ...]]
) -> list[str]:
    try:
        instance = make()
    except Exception as exc:  # any failure means the constructor is not the one we know
        return [f"cannot make a {what}: {type(exc).__name__}: {exc}"]
    # moto tracks every model it makes and lists them in /moto-api/data.json: forget this one.
    tracked = getattr(type(instance), "instances_tracked", None)
    if isinstance(tracked, list):
        tracked[:] = [other for other in tracked if other is not instance]
    problems = []
    for name, types in expected.items():
        if not hasattr(instance, name):
            problems.append(f"a {what} has no attribute {name}")
        elif not isinstance(getattr(instance, name), types):
            problems.append(f"{what}.{name} is a {type(getattr(instance, name)).__name__}")
    return problems


def moto_problems(
    load: Callable[[str], ModuleType] = importlib.import_module,
    shape: tuple[tuple[str, str, str], ...] = _SHAPE,
) -> list[str]:
    """What the installed moto lacks of the internals the patch relies on; empty when all
    is there. ``load`` imports a module by name (a test passes stand-ins)."""
    problems = []
    modules: dict[str, ModuleType | None] = {}
    for module_name, dotted, kind in shape:
        if module_name not in modules:
            try:
                modules[module_name] = load(module_name)
            except ImportError as exc:
                modules[module_name] = None
                problems.append(f"module {module_name} cannot be imported ({exc})")
        module = modules[module_name]
        if module is not None and (problem := _shape_problem(module, dotted, kind)):
            problems.append(problem)
    models = modules.get(_MODELS)
    if models is not None and not problems:
        # Throwaway objects, never registered with a backend: only their attributes count.
        problems += _state_problems(
            "Queue",
            lambda: models.Queue("echobase-check", region="us-east-1", account_id="0" * 12),
            _QUEUE_STATE,
        )
        problems += _state_problems("Message", lambda: models.Message("id", "body"), _MESSAGE_STATE)
    return problems


def check_moto(
    load: Callable[[str], ModuleType] = importlib.import_module,
    shape: tuple[tuple[str, str, str], ...] = _SHAPE,
) -> None:
    """Refuse, with one message, a moto whose internals the patch would break."""
    problems = moto_problems(load, shape)
    if problems:
        try:
            version = importlib.metadata.version("moto")
        except importlib.metadata.PackageNotFoundError:
            version = "(not installed)"
        raise MotoIncompatible(
            f"moto {version} is installed, but echobase's patches support moto"
            f"{SUPPORTED_MOTO} only: {'; '.join(problems)}. Install the locked version "
            "(bash scripts/install), or check the patch against this moto and widen the pin."
        )


def patch_sqs() -> None:
    """Apply the patch once; calling again changes nothing. Raises MotoIncompatible before
    touching anything if moto's internals are not the expected ones."""
    from moto.sqs import models

    queue_cls: Any = models.Queue
    if getattr(queue_cls, "_echobase_patched", False):
        return
    check_moto()
    for name in _COUNT_PROPERTIES:
        setattr(queue_cls, name, _skipped_while_sending(getattr(queue_cls, name)))
    queue_cls.delete_message = _delete_message
    queue_cls.messages = property(_visible_messages)
    models.Message.mark_received = _indexing_receipts(models.Message.mark_received)
    models.Message.instances_tracked = _LiveInstances(models.Message.instances_tracked)
    backend: Any = models.SQSBackend
    backend.send_message = _sending_call(backend.send_message)
    backend.send_message_batch = _sending_call(backend.send_message_batch)
    backend.is_message_valid_based_on_retention_period = _retained
    queue_cls._echobase_patched = True


def _unless_auth_is_off(check: Callable[..., Any]) -> Callable[..., Any]:
    """moto checks permissions only after ``INITIAL_NO_AUTH_ACTION_COUNT`` requests (never,
    by default) and counts them until then; its check imports IAM before looking. This
    counts the same way and imports nothing while the count says "not yet"."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    @functools.wraps(check)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
            ActionAuthenticatorMixin.request_count += 1
            return None
        return check(self, *args, **kwargs)

    return checked


# What the emulators serve: moto lists these services' regions from botocore's data.
EMULATED_SERVICES = ("sqs", "secretsmanager", "kms")


def keep_moto_lean() -> None:
    """Keep out of moto what an emulator never uses: IAM until something needs it, and the
    endpoint data of the services it does not emulate. Call before the first request (a
    journal's replay included); calling again changes nothing. Raises MotoIncompatible
    before touching anything if moto's internals are not the expected ones."""
    check_moto(shape=_LEAN_SHAPE)
    _defer_iam()
    _keep_emulated_endpoints()


def _keep_emulated_endpoints() -> None:
    """moto reads a service's regions from botocore's endpoint data through one session of
    its own, which keeps all of that data: keep the emulated services' part only."""
    from moto.core.base_backend import AccountSpecificBackend

    from echobase.aws_endpoints import EndpointsOf

    botocore_session = AccountSpecificBackend.get_session()._session
    if not isinstance(botocore_session.get_component("data_loader"), EndpointsOf):
        botocore_session.register_component("data_loader", EndpointsOf(EMULATED_SERVICES))


def _defer_iam() -> None:
    """Load moto's IAM models on the first use that needs them, not on every request.

    Every request calls ``mark_account_as_visited`` (stamps "last used" on the caller's
    IAM access key) and ``get_account_id_from`` (the account owning that key). While IAM
    is not loaded no IAM key exists, so the answers are known: nothing to stamp, and
    moto's default account. A stand-in module gives those two answers; any other name
    asked of it (IAM's API, a permission check, a reset) loads the real models, which
    answer from then on."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.core.authorization import ActionAuthenticatorMixin

    mixin: Any = ActionAuthenticatorMixin
    if getattr(mixin, "_echobase_patched", False) or _IAM_MODELS in sys.modules:
        return
    for name in _AUTH_CHECKS:
        setattr(mixin, name, _unless_auth_is_off(getattr(mixin, name)))
    mixin._echobase_patched = True

    stand_in = ModuleType(_IAM_MODELS, "echobase's stand-in until IAM is needed")

    def mark_account_as_visited(
        account_id: str, access_key: str, service: str, region: str
    ) -> None:
        return None

    def get_account_id_from(access_key: str) -> str:
        return DEFAULT_ACCOUNT_ID

    def load_iam(name: str) -> Any:
        if name.startswith("__"):  # what the import system asks of any module (__path__)
            raise AttributeError(name)
        if sys.modules.get(_IAM_MODELS) is stand_in:
            del sys.modules[_IAM_MODELS]
        return getattr(importlib.import_module(_IAM_MODELS), name)

    stand_in.mark_account_as_visited = mark_account_as_visited  # type: ignore[attr-defined]
    stand_in.get_account_id_from = get_account_id_from  # type: ignore[attr-defined]
    stand_in.__getattr__ = load_iam  # type: ignore[method-assign]  # PEP 562
    sys.modules[_IAM_MODELS] = stand_in


class _Body:
    """One request's body: reads stop at its Content-Length, so nothing a handler does with
    it (Werkzeug drains "the rest of the socket" after every answer) can read into the next
    request on a kept-alive connection."""

    def __init__(self, stream: Any, length: int) -> None:
        self._stream, self.left = stream, length

    def _take(self, reader: Callable[[int], bytes], size: int | None) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = reader(size) if size else b""
        self.left -= len(data)
        return bytes(data)

    def read(self, size: int | None = -1) -> bytes:
        return self._take(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._take(self._stream.readline, size)

    def discard_rest(self) -> bool:
        """Read what the application left; True when the connection is at the next request."""
        while self.left > 0:
            if not self.read(65536):
                return False
        return True


def keep_alive_handler() -> type:
    """Moto's request handler, keeping HTTP/1.1 connections open between requests as SQS does.

    Werkzeug's development server answers everything with ``Connection: close`` because
    http.server cannot tell where an unread body ends. Every SendMessageBatch, ReceiveMessage
    and DeleteMessageBatch then paid for a TCP handshake and a new server thread: under the
    order load py-spy put 13 % of the gateway's CPU and 11 % of the processor's in aiohttp
    connecting. Here a body with a Content-Length is bounded and read to its end, so the
    connection can stay; a chunked body (no length to bound) still closes it.
    """
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveRequestHandler(MotoRequestHandler):
        _socket_rfile: Any = None
        _body: _Body | None = None

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in two writes; on a kept connection Nagle's algorithm
            # would hold the body until the client's delayed ACK (40 ms a request).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def handle_one_request(self) -> None:
            self._body = None
            super().handle_one_request()
            if self._socket_rfile is not None:
                self.rfile, self._socket_rfile = self._socket_rfile, None
            if self._body is not None and not self._body.discard_rest():
                self.close_connection = True

        def make_environ(self) -> dict[str, Any]:
            length = self.headers.get("Content-Length", "0").strip()
            if "Transfer-Encoding" not in self.headers and length.isdigit():
                self._socket_rfile, self._body = self.rfile, _Body(self.rfile, int(length))
                self.rfile = self._body  # what Werkzeug puts in wsgi.input and drains
            return dict(super().make_environ())

        def send_header(self, keyword: str, value: str) -> None:
            closing = keyword.lower() == "connection" and value.lower() == "close"
            if closing and self._body is not None:
                return  # http.server then keeps the connection unless the client closes it
            super().send_header(keyword, value)

    return KeepAliveRequestHandler


def main(argv: list[str] | None = None) -> None:
    """Serve moto on a port. With ``--state-dir`` the queues are durable (queue_journal):
    the journal is replayed before the port opens, so any answer means "restored"."""
    import argparse
    import logging
    import os
    import signal
    from pathlib import Path

    parser = argparse.ArgumentParser(description="moto's AWS APIs, with echobase's SQS patch.")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)  # moto's default
    parser.add_argument("--state-dir", type=Path, help="keep the queues in this directory")
    parser.add_argument(
        "--compact-at", type=int, default=COMPACT_AT, help="compact the journal past these bytes"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        patch_sqs()
        keep_moto_lean()
    except MotoIncompatible as exc:
        sys.exit(f"aws_emulator: {exc}")
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto's own main does
    app: Any = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    if args.state_dir is not None:
        from echobase.platform.queue_journal import DurableAnswers, open_queues
        from echobase.platform.runtime.journal import JournalError

        try:
            app = DurableAnswers(app, open_queues(args.state_dir, _by_receipt, args.compact_at))
        except (JournalError, OSError) as exc:
            sys.exit(f"queue server: {exc}")
    from echobase.platform.queue_metrics import QueueMetrics

    app = QueueMetrics(app)  # outermost: a scrape is neither an AWS call nor journaled
    # Acknowledged changes are on disk already: stopping needs nothing but an exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    run_simple(args.host, args.port, app, threaded=True, request_handler=keep_alive_handler())


if __name__ == "__main__":
    main()
