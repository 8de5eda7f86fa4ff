"""Starting supervised services and waiting on their health checks, the same way for the
durable and the ephemeral layer."""

from __future__ import annotations

import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from echobase.platform.render.supervisor import Program, SupervisorPaths
from echobase.platform.runtime.supervisor import Supervisor

LIVE_STATES = ("RUNNING", "STARTING")
DEAD_STATES = ("FATAL", "EXITED", "STOPPED")


def runtime_environment() -> dict[str, str]:
    """What supervisord (and so every service) inherits: the basics, nothing of the caller's
    shell, which may hold real cloud credentials or settings meant for something else."""
    keep = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR")
    return {key: os.environ[key] for key in keep if key in os.environ}


def supervisor_for(home: Path) -> Supervisor:
    """The one supervisord of a state directory."""
    return Supervisor(SupervisorPaths(home), environ=runtime_environment())


class ServiceFailed(RuntimeError):
    """A service did not come up; the message names it and ends with its last log lines."""


def http_answers(url: str, ok: int = 0, context: ssl.SSLContext | None = None) -> bool:
    """True when ``url`` answers ``ok`` (any status when ok=0)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return ok in (0, response.status)
    except urllib.error.HTTPError as exc:
        return ok in (0, exc.code)
    except OSError:
        return False


class ServiceRunner:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def is_running(self, name: str) -> bool:
        info = self.supervisor.info(name) if self.supervisor.running() else None
        return info is not None and info.state in LIVE_STATES

    def run(self, program: Program, healthy: Callable[[], bool], timeout: float = 30) -> None:
        """Define the program (a no-op when unchanged), start it unless running, wait."""
        self.supervisor.apply([program])
        if not self.is_running(program.name):
            try:
                # Not waiting out startsecs: the health check below is the better signal.
                self.supervisor.start(program.name, wait=False)
            except Exception as exc:
                raise ServiceFailed(self.failure(program.name, str(exc))) from None
        self.wait(program.name, healthy, timeout)

    def wait(self, name: str, healthy: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.supervisor.info(name)
            if info is None or info.state in DEAD_STATES:
                state = info.state if info else "absent"
                raise ServiceFailed(self.failure(name, f"{name} is {state}"))
            if healthy():
                return
            time.sleep(0.1)
        raise ServiceFailed(self.failure(name, f"{name} not healthy after {timeout:.0f}s"))

    def wait_running(self, names: list[str], timeout: float = 30) -> None:
        """supervisor calls a program RUNNING once it has lived startsecs (its guard against
        crash loops); healthy services get there within a second."""
        for name in names:
            self.wait(name, lambda n=name: self.supervisor.info(n).state == "RUNNING", timeout)

    def failure(self, name: str, reason: str, nbytes: int = 2000) -> str:
        tail = self.supervisor.tail(name, nbytes).strip()
        return f"{reason}\n--- last lines of {name}'s log ---\n{tail}" if tail else reason
