"""This machine, found once: the binaries the durable layer runs, who runs them, its CPUs.
The renderers take the result (``render/machine.Machine``) and never look for themselves."""

from __future__ import annotations

import functools
import getpass
import grp
import os
import pwd
import shutil

from echobase.platform.render.machine import Machine
from echobase.platform.runtime.processes import python_executable

# Debian installs the servers in sbin, which a non-root PATH may lack.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def which(name: str) -> str | None:
    """Its full path: on PATH, else where Debian installs it."""
    return shutil.which(name) or shutil.which(name, path=SYSTEM_PATH)


def find_binary(name: str) -> str:
    """Its full path, or the plain name when it is missing (doctor and preflight say so)."""
    return which(name) or name


def nginx_worker_user() -> str | None:
    """Who nginx's workers run as: the state directory's owner, like every other process of
    the system (MariaDB, the moto servers and the colours' services run as this user too).

    A master started by root would otherwise drop its workers to www-data or nobody, which
    cannot pass through a 0700 home such as /root to reach the app bundles; opening the state
    directory to them would loosen that home. An unprivileged master cannot change user at
    all, so nginx gets no ``user`` directive then (it would only warn)."""
    uid = os.geteuid()
    if uid != 0:
        return None
    # "user group": a lone name would make nginx look up a group of the same name.
    return f"{pwd.getpwuid(uid).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


@functools.cache
def this_machine() -> Machine:
    return Machine(
        python=python_executable(),
        nginx=find_binary("nginx"),
        prometheus=find_binary("prometheus"),
        user=getpass.getuser(),
        nginx_worker_user=nginx_worker_user(),
        cpus=os.cpu_count() or 2,
    )
