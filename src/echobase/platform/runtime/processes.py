"""Starting and stopping child processes by pid, and waiting for their ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports: all bound at once, so none is handed out twice (one
    at a time, the kernel may give a just-closed port again)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def spawn(
    argv: Sequence[str], log_file: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # a Ctrl-C in the terminal must not reach it twice
        )


def wait_http(
    url: str, timeout: float, process: subprocess.Popen[bytes] | None = None, ok: int = 200
) -> None:
    """Wait until ``url`` answers ``ok`` (any status when ok=0)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.pid} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if ok in (0, response.status):
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            if ok == 0:
                return
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last})")


def terminate(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the process group we started, then SIGKILL whatever is left."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def python_executable() -> str:
    """The environment's interpreter under one stable name: a program definition must not
    change (and restart the service) because a caller was started as python3 or python."""
    for name in ("python", "python3"):
        candidate = Path(sys.prefix) / "bin" / name
        if candidate.exists():
            return str(candidate)
    return sys.executable


def listening_sockets(proc: Path = Path("/proc")) -> dict[int, tuple[int, int]]:
    """Listening TCP port -> (uid, socket inode), from /proc/net/tcp{,6}: readable by every
    user, so even a root-owned squatter can be named."""
    found: dict[int, tuple[int, int]] = {}
    for table in ("tcp", "tcp6"):
        try:
            rows = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A":  # 0A: LISTEN
                port = int(fields[1].rsplit(":", 1)[1], 16)
                found.setdefault(port, (int(fields[7]), int(fields[9])))
    return found
