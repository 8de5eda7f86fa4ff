"""The queue journal's pure parts: the state its entries rebuild, and the group commit that
writes them (a real file in a temporary directory; no server)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from echobase.platform.queue_journal import QueueState
from echobase.platform.runtime.journal import GroupCommit, Journal, JournalError

Q = {"account": "123456789012", "region": "us-east-1"}


def put(mid: str, queue: str = "q", **fields: Any) -> dict[str, Any]:
    return {"op": "put", **Q, "queue": queue, "id": mid, "body": mid, "rc": 0, **fields}


def call(method: str, queue: str) -> dict[str, Any]:
    return {"op": "call", **Q, "queue": queue, "method": method, "args": [queue], "kwargs": {}}


def test_state_follows_puts_receives_moves_and_deletes() -> None:
    state = QueueState()
    for entry in (
        call("create_queue", "dlq"),
        call("create_queue", "q"),
        put("a"),
        put("b"),
        put("c"),
        {"op": "upd", "id": "a", "rc": 3, "rh": "h3", "visible": 9.0, "first": 1},
        put("a", queue="dlq", rc=3),  # moto's move to the DLQ adds it there whole
        {"op": "del", "id": "b"},
        {"op": "upd", "id": "gone", "rc": 1},  # a receive of a message deleted since
    ):
        state.apply(entry)
    assert list(state.messages) == ["c", "a"]
    assert state.messages["a"]["queue"] == "dlq" and state.messages["a"]["rc"] == 3
    assert [c["queue"] for c in state.calls] == ["dlq", "q"]


def test_purge_and_delete_queue_drop_that_queues_messages_only() -> None:
    state = QueueState()
    for entry in (put("a"), put("b", queue="other"), call("purge_queue", "q"), put("c")):
        state.apply(entry)
    assert list(state.messages) == ["b", "c"]
    state.apply(call("delete_queue", "other"))
    assert list(state.messages) == ["c"]


def test_entries_rebuild_the_same_state() -> None:
    state = QueueState()
    for entry in (call("create_queue", "q"), put("a"), put("b"), {"op": "upd", "id": "a", "rc": 1}):
        state.apply(entry)
    again = QueueState()
    for entry in state.entries():
        again.apply(entry)
    assert again == state


def test_an_unknown_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown journal entry"):
        QueueState().apply({"op": "rename"})


class CountingJournal(Journal):
    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir, "test journal", "journal", "key")
        self.writes = 0

    def append(self, entries: Any) -> None:
        self.writes += 1
        super().append(entries)


def test_group_commit_shares_fsyncs_and_keeps_each_threads_order(tmp_path: Path) -> None:
    journal = CountingJournal(tmp_path)
    journal.read()
    commit = GroupCommit(journal)

    def work(thread: int) -> None:
        for n in range(200):
            commit.wait(commit.submit({"thread": thread, "n": n}), timeout=30)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    commit.flush()
    entries = CountingJournal(tmp_path).read()
    assert len(entries) == 1600
    for thread in range(8):
        assert [e["n"] for e in entries if e["thread"] == thread] == list(range(200))
    assert journal.writes < 1600, "every entry had its own write and fsync"


def test_a_failed_write_fails_every_waiter_and_names_the_file(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "test journal", "journal", "key")
    journal.read()

    def broken(entries: Any) -> None:
        raise OSError(28, "No space left on device")

    journal.append = broken  # type: ignore[method-assign]
    commit = GroupCommit(journal)
    with pytest.raises(JournalError, match=f"{tmp_path / 'journal'}: write failed"):
        commit.wait(commit.submit({"n": 1}), timeout=10)
    with pytest.raises(JournalError):
        commit.wait(commit.submit({"n": 2}), timeout=10)


def test_compaction_replaces_the_file_with_the_snapshot(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "test journal", "journal", "key")
    journal.read()
    state = QueueState()
    lock = threading.RLock()
    commit = GroupCommit(journal, state.entries, state_lock=lock, compact_at=2000)
    for n in range(200):
        with lock:
            entry = put(f"m{n}") if n % 2 == 0 else {"op": "del", "id": f"m{n - 1}"}
            state.apply(entry)
            seq = commit.submit(entry)
        commit.wait(seq, timeout=10)
    commit.flush()
    assert commit.compactions > 0
    assert journal.size() < 4000
    again = QueueState()
    for entry in Journal(tmp_path, "test journal", "journal", "key").read():
        again.apply(entry)
    assert again == state


def test_another_journals_lines_do_not_decrypt(tmp_path: Path) -> None:
    Journal(tmp_path, "secrets", "journal", "key").append([{"n": 1}])
    with pytest.raises(JournalError, match="line 1 is corrupt"):
        Journal(tmp_path, "queues", "journal", "key").read()
