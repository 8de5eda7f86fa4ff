"""Orphans of a dead supervisord are found by pid (their environment and process group) and
stopped by process group, never by name; the nginx launcher retires a dead master's workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from echobase.platform.runtime.orphans import (
    find_orphans,
    group_members,
    kill_orphans,
    retire_group,
    stop_orphan,
)
from echobase.platform.runtime.processes import free_port, listening_sockets

URL = "unix:///tmp/eb-orphan-test/supervisor/supervisor.sock"
# A parent and a child in one group, like a uvicorn master and its worker.
FAMILY = (
    "import os, signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(600)\n"
)


def spawn(name: str, url: str = URL, code: str = FAMILY) -> subprocess.Popen[str]:
    env = {**os.environ, "SUPERVISOR_SERVER_URL": url, "SUPERVISOR_PROCESS_NAME": name}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,  # as supervisord's setpgrp
    )


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if group_members(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_orphans_are_found_by_environment_and_group(
    started: list[subprocess.Popen[str]],
) -> None:
    ours = spawn("echobase-blue-api-gateway")
    other = spawn("echobase-blue-api-gateway", url="unix:///elsewhere/supervisor.sock")
    started += [ours, other]
    assert ours.stdout is not None
    child = int(ours.stdout.readline())
    found = find_orphans(URL, supervisord_pid=None)
    assert [(o.program, o.pgid) for o in found] == [("echobase-blue-api-gateway", ours.pid)]
    assert set(found[0].pids) == {ours.pid, child}
    # Under a live supervisord (its parent), the same group is not an orphan.
    assert find_orphans(URL, supervisord_pid=os.getpid()) == []


def test_a_group_whose_leader_died_is_still_found_and_stopped(
    started: list[subprocess.Popen[str]],
) -> None:
    ours = spawn("echobase-green-order-processor")
    started.append(ours)
    assert ours.stdout is not None
    child = int(ours.stdout.readline())
    os.kill(ours.pid, signal.SIGKILL)
    ours.wait()
    (orphan,) = find_orphans(URL, supervisord_pid=os.getpid())
    assert orphan.pgid == ours.pid and orphan.pids == (child,)
    assert not stop_orphan(orphan, "TERM", timeout=5)  # SIGTERM was enough: no SIGKILL
    assert group_members(ours.pid) == []


def test_stop_orphan_is_graceful_first(started: list[subprocess.Popen[str]]) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    ours = spawn("echobase-devlocal-durable-secrets", code=code)
    started.append(ours)
    assert ours.stdout is not None and ours.stdout.readline().strip() == "ready"
    (orphan,) = find_orphans(URL, supervisord_pid=None)
    assert not stop_orphan(orphan, "TERM", timeout=10)
    assert ours.wait(5) == 0


def test_declared_groups_must_run_the_declared_executable(
    started: list[subprocess.Popen[str]],
) -> None:
    plain = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        process_group=0,
        env={k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")},
    )
    started.append(plain)  # type: ignore[arg-type]
    wrong = {"nginx": (plain.pid, "/usr/sbin/nginx")}
    assert find_orphans(URL, None, wrong) == []
    right = {"nginx": (plain.pid, os.readlink(f"/proc/{plain.pid}/exe"))}
    assert [o.program for o in find_orphans(URL, None, right)] == ["nginx"]
    kill_orphans(find_orphans(URL, None, right))
    assert group_members(plain.pid) == []


def test_retire_group_returns_once_the_port_is_free(tmp_path: Path) -> None:
    port = free_port()
    code = (
        "import signal, socket, sys, time\n"
        f"s = socket.create_server(('127.0.0.1', {port}))\n"
        "def quit(*a):\n"
        "    s.close()\n"
        "    time.sleep(1)\n"  # still finishing requests after it stopped listening
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGQUIT, quit)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, process_group=0
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        executable = os.readlink(f"/proc/{server.pid}/exe")
        assert retire_group(server.pid, "/usr/sbin/nginx", signal.SIGQUIT, [port], 5) == []
        began = time.monotonic()
        assert retire_group(server.pid, executable, signal.SIGQUIT, [port], 5) == [server.pid]
        assert time.monotonic() - began < 0.9  # did not wait for the exit
        assert port not in listening_sockets()
        assert server.wait(5) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# Behaves as nginx's master does where it matters here: it writes its own pid file, and on
# SIGQUIT stops listening, finishes its requests, then unlinks that pid file on the way out.
FAKE_NGINX = (
    "import os, pathlib, signal, socket, sys, time\n"
    "pid_file, port = pathlib.Path(sys.argv[1]), int(sys.argv[2])\n"
    "s = socket.create_server(('127.0.0.1', port))\n"
    "pid_file.write_text(f'{os.getpid()}\\n')\n"
    "def quit(*a):\n"
    "    s.close()\n"
    "    time.sleep(1)\n"
    "    pid_file.unlink(missing_ok=True)\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGQUIT, quit)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)


def test_the_launcher_record_outlives_a_retiring_master(tmp_path: Path) -> None:
    """The successor starts while its predecessor still finishes requests; the predecessor's
    exit removes nginx's pid file, never the launcher's record of the running master."""
    port = free_port()
    fake = tmp_path / "fake_nginx.py"
    fake.write_text(FAKE_NGINX)
    record, own = tmp_path / "master.pid", tmp_path / "nginx.pid"
    argv = [
        sys.executable, "-m", "echobase.platform.durable.nginx",
        "--pid-file", str(record), "--ports", str(port),
        "--", sys.executable, str(fake), str(own), str(port),
    ]  # fmt: skip
    masters: list[subprocess.Popen[str]] = []
    try:
        for _ in range(2):
            master = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, process_group=0)
            masters.append(master)
            assert master.stdout is not None and master.stdout.readline().strip() == "ready"
            assert record.read_text().strip() == str(master.pid)  # exec kept the pid
        first, second = masters
        assert first.wait(5) == 0  # retired gracefully, after the second began serving
        assert not own.exists()  # what nginx's own exit does to a successor's pid file
        assert record.read_text().strip() == str(second.pid)
        assert port in listening_sockets()
    finally:
        for master in masters:
            if master.poll() is None:
                master.kill()
                master.wait()
