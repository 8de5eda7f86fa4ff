"""An encrypted, append-only journal on disk, for the local stand-ins of AWS's durable
services (the secrets store, the colours' queue servers) that moto keeps in memory only.

One entry a line: base64(nonce || AES-256-GCM(JSON)). Each line's associated data is its
line number under a label, so a line deleted or moved from the middle makes the following
ones undecryptable instead of silently changing history, and a line from one kind of journal
cannot be passed off as another's. A last line cut short by a crash is dropped (it was never
acknowledged: an append is acknowledged only after its fsync); anything else unreadable
refuses the start, naming the file.

``GroupCommit`` lets many request threads share one write and one fsync: a thread submits
its entries, gets a sequence number, and waits until that number is on disk before
answering.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from echobase.platform.runtime.files import fsync_path, private_dir, write_private

log = logging.getLogger(__name__)

_NONCE_LEN = 12


class JournalError(RuntimeError):
    """The journal cannot be used; the message names the file and never holds an entry."""


def _load_or_create_key(path: Path, journal: Path) -> bytes:
    if not path.exists():
        if journal.exists() and journal.stat().st_size > 0:
            # A new key could never read the old entries: say so instead of line 1 failing.
            raise JournalError(f"{journal} exists but its key {path} is missing")
        write_private(path, base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        fsync_path(path)  # before any entry it seals can be on disk
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise JournalError(f"{path} does not hold a base64 32-byte key")
    return key


class Journal:
    """``state_dir/name``, sealed with the key in ``state_dir/key_name`` (made when missing)."""

    def __init__(self, state_dir: Path, label: str, name: str, key_name: str) -> None:
        private_dir(state_dir)
        os.chmod(state_dir, 0o700)  # also tightens a directory made earlier by someone else
        self.path = state_dir / name
        self.key_path = state_dir / key_name
        self.key = _load_or_create_key(self.key_path, self.path)
        self._aead = AESGCM(self.key)
        self._label = label
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        os.chmod(self.path, 0o600)
        # The new key's and journal's directory entries must outlive a power cut too.
        fsync_path(state_dir)
        self._lines = 0  # set by read(), which must come before the first append
        self._fd: int | None = None  # kept open between appends
        self._size: int | None = None

    def _aad(self, line_number: int) -> bytes:
        return f"{self._label} line {line_number}".encode()

    def _seal_all(self, entries: Iterable[dict[str, Any]], first: int) -> bytes:
        entries = list(entries)
        # One draw for every nonce of the batch: a getrandom call per entry showed in
        # profiles of the queue server.
        nonces = os.urandom(_NONCE_LEN * len(entries))
        lines = []
        for index, entry in enumerate(entries):
            nonce = nonces[index * _NONCE_LEN : (index + 1) * _NONCE_LEN]
            plain = json.dumps(entry).encode()
            sealed = self._aead.encrypt(nonce, plain, self._aad(first + index))
            lines.append(base64.b64encode(nonce + sealed) + b"\n")
        return b"".join(lines)

    def read(self) -> list[dict[str, Any]]:
        """Decrypt every entry; drop (and cut off) a last line left half-written by a crash."""
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline, as every append does
        if tail:
            log.warning("%s: dropping a truncated last line %d", self.path, len(lines) + 1)
            with self.path.open("r+b") as handle:
                handle.truncate(len(data) - len(tail))
                os.fsync(handle.fileno())
        entries = []
        for number, line in enumerate(lines, start=1):
            try:
                raw = base64.b64decode(line, validate=True)
                plain = self._aead.decrypt(raw[:_NONCE_LEN], raw[_NONCE_LEN:], self._aad(number))
                entries.append(json.loads(plain))
            except (binascii.Error, ValueError, InvalidTag):
                raise JournalError(
                    f"{self.path} line {number} is corrupt or not encrypted with "
                    f"{self.key_path}; refusing to start"
                ) from None
        self._lines = len(entries)
        return entries

    def _file(self) -> int:
        if self._fd is None:
            # No O_CREAT: a journal that vanished must not become a fresh, empty one.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        return self._fd

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        """Write the entries in one write and one fsync, or raise OSError leaving the file
        as it was."""
        data = self._seal_all(entries, self._lines + 1)
        if not data:
            return
        fd = self._file()
        found = os.fstat(fd)
        if found.st_nlink == 0:  # removed or replaced behind our back: writing there is lost
            raise OSError(2, f"{self.path} was removed while open")
        start = found.st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)  # the data and the new size: all a reader needs
        except OSError:
            # Undo a partial line: the next append must not be glued onto it.
            try:
                os.ftruncate(fd, start)
            except OSError:
                log.exception("%s: could not cut off a failed append", self.path)
            raise
        self._lines += data.count(b"\n")
        self._size = start + len(data)

    def replace(self, entries: list[dict[str, Any]]) -> None:
        """Swap the whole journal for ``entries`` (compaction): a crash at any moment leaves
        either the old file or the new one, both complete."""
        temporary = self.path.with_name(self.path.name + ".new")
        data = self._seal_all(entries, 1)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        fsync_path(self.path.parent)
        self.close()  # the old file's descriptor
        self._lines, self._size = len(entries), len(data)

    def size(self) -> int:
        if self._size is None:
            self._size = self.path.stat().st_size
        return self._size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


Snapshot = Callable[[], list[dict[str, Any]]]


class GroupCommit:
    """Entries from many threads, one write and one fsync for all that are waiting: the
    first thread to wait becomes the writer (no thread of its own, so an answer waits for
    no hand-over between threads), and whatever is submitted while it writes goes out in
    the next thread's write. ``wait(seq)`` returns once entry ``seq`` is on disk, or raises
    ``JournalError`` if the journal failed (the caller must not acknowledge, and the
    process should stop: memory is then ahead of the disk).

    ``compact_at`` bytes: past it, the writer asks ``snapshot`` for entries that rebuild
    the present state and replaces the file with them. It calls ``snapshot`` holding
    ``state_lock``, the lock under which callers change their state and submit: so the
    snapshot holds exactly the entries submitted so far (and the lock order is always
    ``state_lock`` first, as in the callers).
    """

    def __init__(
        self,
        journal: Journal,
        snapshot: Snapshot | None = None,
        state_lock: AbstractContextManager[Any] | None = None,
        compact_at: int = 64 << 20,
    ) -> None:
        self.journal = journal
        self._snapshot = snapshot
        self._state_lock = state_lock or threading.RLock()
        self._compact_at = compact_at
        self._changed = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._submitted = 0
        self._durable = 0
        self._writing = False
        self._failure: str | None = None
        self.compactions = 0
        self.writes = 0  # appends, each one write and one fsync
        self.written = 0  # entries those appends held

    def submit(self, entry: dict[str, Any]) -> int:
        with self._changed:
            self._pending.append(entry)
            self._submitted += 1
            return self._submitted

    def wait(self, seq: int, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._changed:
                while self._durable < seq and self._failure is None and self._writing:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise JournalError(f"{self.journal.path}: no fsync within {timeout} s")
                    self._changed.wait(left)
                if self._durable >= seq:
                    return
                if self._failure is not None:
                    raise JournalError(self._failure)
                self._writing = True  # this thread writes for everyone waiting
            try:
                self._write()
            finally:
                with self._changed:
                    self._writing = False
                    self._changed.notify_all()

    def flush(self) -> None:
        """Wait until everything submitted so far is on disk."""
        with self._changed:
            last = self._submitted
        self.wait(last)

    def _take(self) -> tuple[list[dict[str, Any]], int]:
        with self._changed:
            batch, self._pending = self._pending, []
            return batch, self._submitted

    def _write(self) -> None:
        compact = self._snapshot is not None and self.journal.size() > self._compact_at
        if compact:
            assert self._snapshot is not None
            with self._state_lock:
                # Everything submitted so far is in the snapshot: drop what is pending.
                batch, (_, last) = self._snapshot(), self._take()
        else:
            batch, last = self._take()
        try:
            if compact:
                self.journal.replace(batch)
                self.compactions += 1
                log.info("%s: compacted to %d entries", self.journal.path, len(batch))
            else:
                self.journal.append(batch)
                self.writes += 1
                self.written += len(batch)
        except OSError as exc:
            with self._changed:
                self._failure = (
                    f"{self.journal.path}: write failed ({type(exc).__name__}: "
                    f"{exc.strerror or exc}); nothing after entry {self._durable} is kept"
                )
            log.error("%s", self._failure)
            return
        with self._changed:
            self._durable = max(self._durable, last)
