"""Durable queues for the local SQS (moto): what SQS promises across a crash of its server.

moto keeps queues and messages in memory only, so a killed queue server came back empty:
messages that SendMessage had acknowledged were gone, and so were the queues, which left
the colour answering 503 until a deploy. Here every change to the queues is journaled
(``runtime.journal``: encrypted, group-committed, fsynced) and the server answers a request
only once the changes it made are on disk. At startup the journal is replayed into moto
before the port opens.

What is journaled is the *resulting state*, not the request, because SQS's answers depend
on the clock (visibility, receive timestamps) and on random ids: replaying ReceiveMessage
would hand out new receipt handles at new times. Entries:

- ``call``: a queue-level call (create, set attributes, tag, permissions, purge, delete),
  replayed by calling moto again: these are deterministic and rare.
- ``put``: a message as it entered a queue, whole (also a move to a dead-letter queue,
  which moto makes by adding the message to the DLQ).
- ``upd``: a message's receive state after ReceiveMessage or ChangeMessageVisibility:
  receive count, first receive time, receipt handle, visible-at time. So an in-flight
  message reappears when its visibility timeout ends, and a poison message still reaches
  the DLQ after maxReceiveCount receives.
- ``del``: a message deleted (or purged with its queue).

The same ``QueueState.apply`` that replays the journal keeps a shadow of the live state as
entries are made, under one lock with the change itself; compaction writes that shadow as
a new journal. So the file holds the queues' history only since the last compaction.

Not kept: receipt handles a message had before its latest receive, and the record of
deleted receipt handles (a repeated DeleteMessage after a restart answers
ReceiptHandleIsInvalid instead of success; consumers treat both as "gone").
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echobase.platform.runtime.journal import GroupCommit, Journal, JournalError

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal"
KEY_FILE = "queue.key"
LABEL = "echobase queue journal"
# Queue-level calls of moto's SQSBackend that change state; each is replayed as it was made.
CALLS = (
    "create_queue",
    "delete_queue",
    "set_queue_attributes",
    "tag_queue",
    "untag_queue",
    "add_permission",
    "remove_permission",
    "purge_queue",
)
# Calls after which the queue holds no message: the shadow drops that queue's messages.
_EMPTYING = ("purge_queue", "delete_queue")
# A message's fields that ReceiveMessage and ChangeMessageVisibility change.
_RECEIVE_STATE = {
    "rc": "approximate_receive_count",
    "first": "approximate_first_receive_timestamp",
    "rh": "receipt_handle",
    "visible": "visible_at",
}
_MESSAGE_FIELDS = {
    **_RECEIVE_STATE,
    "sent": "sent_timestamp",
    "delayed": "delayed_until",
    "dedup": "deduplication_id",
    "group": "group_id",
    "seq": "sequence_number",
    "sender": "sender_id",
}
# Replay reads ~40 MiB/s of journal (60,000 orders' put, receive and delete: 70 MiB in
# 1.7 s): past 32 MiB the journal is rewritten as the live state, so a restart stays under
# a second of replay.
COMPACT_AT = 32 << 20
# GET: the journal's counters as JSON (appends, entries, compactions, bytes, messages).
STATS_PATH = "/echobase/journal"
# How long a request may wait for its fsync before the server gives up on the disk.
DURABLE_WAIT_SECONDS = 10.0


def _plain(value: Any) -> Any:
    """JSON for a message's attributes: a Binary attribute's bytes are base64 under a mark."""
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        return {key: _unplain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unplain(item) for item in value]
    return value


def queue_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    return entry["account"], entry["region"], entry["queue"]


@dataclass
class QueueState:
    """What the journal says: the queue-level calls in order, and every message present,
    in the order it entered its queue. Pure: no moto, no files."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, entry: dict[str, Any]) -> None:
        op = entry["op"]
        if op == "call":
            self.calls.append(entry)
            if entry["method"] in _EMPTYING:
                emptied = queue_key(entry)
                self.messages = {
                    mid: m for mid, m in self.messages.items() if queue_key(m) != emptied
                }
        elif op == "put":
            self.messages.pop(entry["id"], None)  # a move to a DLQ: now last in the DLQ
            self.messages[entry["id"]] = dict(entry)
        elif op == "upd":
            message = self.messages.get(entry["id"])
            if message is not None:
                message.update({k: entry[k] for k in _RECEIVE_STATE if k in entry})
        elif op == "del":
            self.messages.pop(entry["id"], None)
        else:
            raise ValueError(f"unknown journal entry {op!r}")

    def entries(self) -> list[dict[str, Any]]:
        """Entries that rebuild this state: the calls, then each message whole."""
        return [*self.calls, *self.messages.values()]


def put_entry(queue: Any, message: Any) -> dict[str, Any]:
    entry = {
        "op": "put",
        "account": queue.account_id,
        "region": queue.region,
        "queue": queue.name,
        "id": message.id,
        "body": message.body,
        "attrs": _plain(message.message_attributes),
        "sys": _plain(message.system_attributes),
    }
    entry.update({key: getattr(message, name) for key, name in _MESSAGE_FIELDS.items()})
    return entry


def upd_entry(message: Any) -> dict[str, Any]:
    entry = {"op": "upd", "id": message.id}
    entry.update({key: getattr(message, name) for key, name in _RECEIVE_STATE.items()})
    return entry


class QueueJournal:
    """The journal of one queue server: its state on disk and the shadow kept with it."""

    def __init__(self, state_dir: Path, by_receipt: Any, compact_at: int = COMPACT_AT) -> None:
        self.journal = Journal(state_dir, LABEL, JOURNAL_FILE, KEY_FILE)
        # aws_emulator's index: a message by any receipt handle it was given.
        self.by_receipt = by_receipt
        self.state = QueueState()
        # Held while moto's state changes and the entry saying so is submitted: the shadow
        # and the journal's order then match moto's, and a snapshot sees no half-change.
        self.lock = threading.RLock()
        self.commit: GroupCommit | None = None  # None while replaying: nothing to record
        self._compact_at = compact_at
        self._local = threading.local()

    # --- recording, from the hooks in moto ---------------------------------------------

    def record(self, entry: dict[str, Any]) -> None:
        if self.commit is None:
            return
        self.state.apply(entry)
        self._local.seq = self.commit.submit(entry)

    def take_seq(self) -> int:
        """The last entry this thread submitted since the previous call (0: none)."""
        seq = getattr(self._local, "seq", 0)
        self._local.seq = 0
        return int(seq)

    # --- startup ----------------------------------------------------------------------

    def read(self) -> QueueState:
        state = QueueState()
        for entry in self.journal.read():
            try:
                state.apply(entry)
            except (KeyError, TypeError, ValueError) as exc:
                raise JournalError(
                    f"{self.journal.path} holds an entry this server cannot apply "
                    f"({type(exc).__name__}); refusing to start"
                ) from None
        return state

    def start(self, restore: Callable[[QueueState], None]) -> int:
        """Replay the journal through ``restore``, then start recording. Returns how many
        messages came back."""
        state = self.read()
        restore(state)
        self.state = state
        self.commit = GroupCommit(
            self.journal, self.state.entries, state_lock=self.lock, compact_at=self._compact_at
        )
        return len(state.messages)


# --- moto ----------------------------------------------------------------------------

_active: QueueJournal | None = None


def _recording(
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a hook a no-op (the original call only) when no journal is active."""

    def decorate(original: Callable[..., Any]) -> Callable[..., Any]:
        hooked = wrap(original)

        @functools.wraps(original)
        def choose(*args: Any, **kwargs: Any) -> Any:
            if _active is None or _active.commit is None:
                return original(*args, **kwargs)
            return hooked(*args, **kwargs)

        return choose

    return decorate


@_recording
def _hook_call(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        assert _active is not None
        with _active.lock:
            result = original(self, *args, **kwargs)
            entry = {
                "op": "call",
                "account": self.account_id,
                "region": self.region_name,
                "queue": args[0] if args else kwargs.get("queue_name", kwargs.get("name")),
                "method": original.__name__,
                "args": _plain(list(args)),
                "kwargs": _plain(kwargs),
            }
            if original.__name__ == "create_queue":
                entry["created"] = result.created_timestamp
            _active.record(entry)
            return result

    return call


@_recording
def _hook_add_message(original: Callable[..., Any]) -> Callable[..., Any]:
    def add_message(self: Any, message: Any) -> None:
        assert _active is not None
        with _active.lock:
            # Before the message is visible: a receive of it is journaled after its put.
            _active.record(put_entry(self, message))
            original(self, message)
            if self.fifo_queue and not any(m is message for m in self._messages):
                _active.record({"op": "del", "id": message.id})  # a deduplicated FIFO send

    return add_message


@_recording
def _hook_mark_received(original: Callable[..., Any]) -> Callable[..., Any]:
    def mark_received(self: Any, *args: Any, **kwargs: Any) -> None:
        assert _active is not None
        with _active.lock:
            original(self, *args, **kwargs)
            _active.record(upd_entry(self))

    return mark_received


@_recording
def _hook_visibility(original: Callable[..., Any]) -> Callable[..., Any]:
    def change_message_visibility(
        self: Any, queue_name: str, receipt_handle: str, visibility_timeout: int
    ) -> None:
        assert _active is not None
        with _active.lock:
            original(self, queue_name, receipt_handle, visibility_timeout)
            message = _active.by_receipt.get(receipt_handle)
            if message is not None:
                _active.record(upd_entry(message))

    return change_message_visibility


@_recording
def _hook_delete(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete_message(self: Any, receipt_handle: str) -> None:
        assert _active is not None
        with _active.lock:
            already = receipt_handle in self.deleted_messages
            message = _active.by_receipt.get(receipt_handle)
            original(self, receipt_handle)
            if not already and message is not None:
                _active.record({"op": "del", "id": message.id})

    return delete_message


def install_hooks() -> None:
    """Wrap moto's SQS (already patched by aws_emulator.patch_sqs) so that every change is
    recorded while a journal is active. Once per process."""
    from moto.sqs import models

    backend: Any = models.SQSBackend
    if getattr(backend, "_echobase_journaled", False):
        return
    for name in CALLS:
        setattr(backend, name, _hook_call(getattr(backend, name)))
    backend.change_message_visibility = _hook_visibility(backend.change_message_visibility)
    queue: Any = models.Queue
    queue.add_message = _hook_add_message(queue.add_message)
    queue.delete_message = _hook_delete(queue.delete_message)
    message: Any = models.Message
    message.mark_received = _hook_mark_received(message.mark_received)
    backend._echobase_journaled = True


def restore_into_moto(state: QueueState, by_receipt: Any) -> None:
    """Rebuild moto's queues and messages from a replayed state (no recording meanwhile)."""
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Message, sqs_backends

    for call in state.calls:
        if call["method"] == "purge_queue":
            continue  # it emptied the queue of the messages before it: the state has none
        backend = sqs_backends[call["account"]][call["region"]]
        existed = call["queue"] in backend.queues
        getattr(backend, call["method"])(*_unplain(call["args"]), **_unplain(call["kwargs"]))
        if call["method"] == "create_queue" and not existed and "created" in call:
            backend.queues[call["queue"]].created_timestamp = call["created"]
    now = unix_time_millis()
    for entry in state.messages.values():
        account, region, name = queue_key(entry)
        queue = sqs_backends[account][region].queues.get(name)
        if queue is None:
            continue  # its queue was deleted after it entered: so was the message
        message = Message(entry["id"], entry["body"], _unplain(entry["sys"]))
        message.message_attributes = _unplain(entry["attrs"])
        for key, name_ in _MESSAGE_FIELDS.items():
            setattr(message, name_, entry[key])
        queue._messages.append(message)
        if message.receipt_handle:
            by_receipt[message.receipt_handle] = message
            if message.visible_at > now:
                queue.pending_messages.add(message)


def open_queues(state_dir: Path, by_receipt: Any, compact_at: int = COMPACT_AT) -> QueueJournal:
    """Replay ``state_dir``'s journal into moto and record from now on. Raises JournalError
    (naming the file) when the journal cannot be read: never starts empty in silence."""
    global _active
    install_hooks()
    journal = QueueJournal(state_dir, by_receipt, compact_at)
    _active = journal
    count = journal.start(lambda state: restore_into_moto(state, by_receipt))
    log.info("queue journal %s: %d message(s) restored", journal.journal.path, count)
    return journal


Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class DurableAnswers:
    """WSGI middleware: an answer leaves only once what its request changed is on disk.

    If the disk fails, the request gets a 500 and the server stops at once (exit 70):
    memory would be ahead of the journal, and supervisor's restart replays what is kept.
    """

    def __init__(
        self,
        app: Callable[[Environ, StartResponse], Iterable[bytes]],
        journal: QueueJournal,
        stop: Callable[[], None] = lambda: os._exit(70),
    ) -> None:
        self.app = app
        self.journal = journal
        self.stop = stop

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == STATS_PATH:
            return self._stats(start_response)
        if path.startswith("/moto-api/") and path != "/moto-api/":
            # reset, seed, data.json...: would change memory behind the journal's back.
            return self._answer(start_response, "403 Forbidden", b"not served by a durable queue")
        self.journal.take_seq()
        answer: list[Any] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer[:] = [status, headers]

        result = self.app(environ, hold)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        seq = self.journal.take_seq()
        if seq and self.journal.commit is not None:
            try:
                self.journal.commit.wait(seq, DURABLE_WAIT_SECONDS)
            except JournalError as exc:
                log.error("%s; stopping so that a restart replays what is on disk", exc)
                threading.Timer(0.2, self.stop).start()
                return self._answer(
                    start_response, "500 Internal Server Error", b"queue could not persist"
                )
        start_response(*answer)
        return [body]

    def _stats(self, start_response: StartResponse) -> list[bytes]:
        """How the journal is doing (no message content): group commit's efficiency."""
        commit = self.journal.commit
        stats = {
            "appends": commit.writes if commit else 0,
            "entries": commit.written if commit else 0,
            "compactions": commit.compactions if commit else 0,
            "bytes": self.journal.journal.size(),
            "messages": len(self.journal.state.messages),
        }
        body = json.dumps(stats).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    @staticmethod
    def _answer(start_response: StartResponse, status: str, text: bytes) -> list[bytes]:
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
        return [text]
