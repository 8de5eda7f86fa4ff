"""A SIGKILLed gateway master takes its uvicorn workers along (regression: found by the chaos
suite, they were reparented, kept the listening socket and served on unsupervised while every
restart failed with "address already in use")."""

from __future__ import annotations

import os
import signal
import socket
import time

from durable_support import alive, children, cmdline


def test_workers_leave_and_free_the_port_when_their_master_is_killed(backing):
    url = backing.start_gateway("gw-workers", backing.new_queues(), ECHOBASE_WORKERS="2")
    master = backing.stack.processes["gw-workers"]
    workers = [pid for pid in children(master.pid) if "spawn_main" in cmdline(pid)]
    try:
        assert len(workers) == 2
        os.kill(master.pid, signal.SIGKILL)
        master.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), "orphaned workers kept running"
        with socket.socket() as sock:
            # As uvicorn binds: only a listener, not the health check's TIME_WAIT, refuses.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))  # free for a restart
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        backing.stack.stop("gw-workers")
