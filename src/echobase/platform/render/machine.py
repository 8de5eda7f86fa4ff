"""What the renderings for this machine need to know about it: binaries, users, CPUs. Found
once by ``runtime/machine.py``; passed in, so every renderer stays a pure function."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Machine:
    """The defaults are plain names that resolve through PATH: a rendering made without
    looking at a machine (a unit test, another target) is still a valid one."""

    # The platform's own interpreter: the AWS emulators, MCP, the nginx and MariaDB launchers.
    python: str = "python3"
    nginx: str = "nginx"
    prometheus: str = "prometheus"
    # Who runs every process of the system: the state directory's owner.
    user: str = "echobase"
    # nginx's `user` directive ("user group"), only when its master starts as root.
    nginx_worker_user: str | None = None
    cpus: int = 2
