"""The deploy lock of an environment, kept in its durable state directory: one deploy,
switch or rollback at a time, and whoever is refused learns who holds it and since when."""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from echobase.platform.runtime.files import private_dir, write_private


class LockHeld(RuntimeError):
    """Another command holds the lock; the message names it."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.with_suffix(".holder").read_text())
    except (OSError, ValueError):
        return "another echobase command"
    return f"pid {info['pid']} ({info['user']}: {info['command']}) since {info['since']}"


@contextmanager
def deploy_lock(directory: Path, wait_seconds: float = 0) -> Iterator[None]:
    """flock: released by the kernel if the holder dies, so a crash never wedges deploys."""
    private_dir(directory)
    path = directory / "deploy.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeld(
                        f"the deploy lock of {directory.name} is held by {_holder(path)}; "
                        "wait for it, or pass --lock-wait SECONDS"
                    ) from None
                time.sleep(0.2)
        holder = {
            "pid": os.getpid(),
            "user": getpass.getuser(),
            "command": " ".join(["echobase", *sys.argv[1:3]]),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        write_private(path.with_suffix(".holder"), json.dumps(holder))
        try:
            yield
        finally:
            path.with_suffix(".holder").unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
