"""What ``echobase doctor`` checks: the binaries, the ports and the state directory, each
with how to fix what is wrong."""

from __future__ import annotations

import os
import pwd
import re
import socket
import stat
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from echobase.platform.render.nginx import NJS_MODULE
from echobase.platform.render.release import RELEASES_DIR
from echobase.platform.runtime.machine import which
from echobase.platform.stack import ENVIRONMENTS, WEB_DIR, Stack

Outcome = Literal["ok", "warn", "fail"]

BINARIES = {
    "mariadbd": "apt-get install mariadb-server (or: bash scripts/install)",
    "mariadb-install-db": "apt-get install mariadb-server (or: bash scripts/install)",
    "nginx": "apt-get install nginx (or: bash scripts/install)",
    "prometheus": "apt-get install prometheus (or: bash scripts/install)",
    "supervisord": "pip install supervisor (or: bash scripts/install)",
}


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def find_binary(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return which(name)


def check_binaries() -> list[Check]:
    checks = []
    for name, fix in BINARIES.items():
        found = find_binary(name)
        checks.append(
            Check(f"binary {name}", "ok", found)
            if found
            else Check(f"binary {name}", "fail", "not found", fix)
        )
    # The load balancer reads the live colour per request through it.
    checks.append(
        Check("nginx module njs", "ok", str(NJS_MODULE))
        if NJS_MODULE.is_file()
        else Check(
            "nginx module njs",
            "fail",
            f"{NJS_MODULE} not found",
            "apt-get install libnginx-mod-http-js (or: bash scripts/install)",
        )
    )
    return checks


def port_free(host: str, port: int) -> bool | None:
    """True free, False taken, None: this user may not bind it (privileged port)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except PermissionError:
            return None
        except OSError:
            return False
    return True


PortState = Literal["free", "ours", "privileged", "taken"]

# Every default port + 10000 lands in 10080-19190: above any privileged port, below 65536
# (tests/unit/test_preflight.py checks it), so one offset is the whole fix for most users.
SUGGESTED_OFFSET = 10000
SYSCTL = "net.ipv4.ip_unprivileged_port_start"


@dataclass(frozen=True)
class PortUse:
    """A port a system will listen on, and whether this user can have it."""

    owner: str  # environment or colour
    key: str  # lb_https, gateway, ...
    port: int
    state: PortState
    holder: str = ""  # for "ours": the echobase service that holds it

    @property
    def label(self) -> str:
        return f"{self.port} ({self.owner} {self.key})"


def classify_ports(
    ports: Iterable[tuple[str, str, int]],
    ours: Mapping[int, str],
    probe: Callable[[int], bool | None],
) -> list[PortUse]:
    """Each (owner, key, port) as free, ours, privileged or taken. ``ours``: ports held by
    echobase's own running services, not probed (they are taken, by us); ``probe`` is
    ``port_free`` bound to a host, or a fake in the unit tests. Doctor and the preflight of
    ``up``/``deploy``/``durable setup`` both judge ports with this one function."""
    uses = []
    for owner, key, port in ports:
        if port in ours:
            uses.append(PortUse(owner, key, port, "ours", ours[port]))
            continue
        free = probe(port)
        state: PortState = "free" if free else "privileged" if free is None else "taken"
        uses.append(PortUse(owner, key, port, state))
    return uses


def ways_out(privileged: Sequence[PortUse]) -> list[str]:
    """The three fixes for privileged ports, in the words of the README's Ports section."""
    lowest = min(use.port for use in privileged)
    by_owner: dict[str, list[str]] = {}
    for use in privileged:
        by_owner.setdefault(use.owner, []).append(f"{use.key} = {use.port + SUGGESTED_OFFSET}")
    example = "; ".join(f"[ports.{owner}] {', '.join(keys)}" for owner, keys in by_owner.items())
    return [
        f"move every port up: ECHOBASE_PORT_OFFSET={SUGGESTED_OFFSET} bash scripts/run "
        "(the variable works for every echobase command)",
        f"set the ports in echobase.toml (working directory or state directory): {example}",
        f"let unprivileged users listen from port {lowest}: sudo sysctl {SYSCTL}={lowest}",
    ]


TAKEN_FIX = (
    "stop that program, or move echobase to other ports: another ECHOBASE_PORT_OFFSET, "
    "or the port in echobase.toml"
)


def port_checks(uses: Sequence[PortUse]) -> list[Check]:
    """Doctor's rows for classified ports: one per port, each with its fix."""
    privileged = [use for use in uses if use.state == "privileged"]
    privileged_fix = "; or ".join(ways_out(privileged)) if privileged else ""
    checks = []
    for use in uses:
        name = f"port {use.label}"
        if use.state == "ours":
            checks.append(Check(name, "ok", f"in use by {use.holder}"))
        elif use.state == "free":
            checks.append(Check(name, "ok", "free"))
        elif use.state == "privileged":
            detail = "privileged port: this user may not listen on it"
            checks.append(Check(name, "fail", detail, privileged_fix))
        else:
            checks.append(Check(name, "fail", "in use by another program", TAKEN_FIX))
    return checks


def check_ports(stack: Stack, ours: dict[int, str]) -> list[Check]:
    """``ours``: ports held by echobase's own running services (not a problem)."""
    return port_checks(
        classify_ports(stack.ports.all(), ours, lambda port: port_free(stack.host, port))
    )


def check_state_dir(home: Path) -> list[Check]:
    if not home.exists():
        parent = next((p for p in home.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return [Check("state directory", "ok", f"{home} will be created")]
        return [Check("state directory", "fail", f"cannot create {home}", "set ECHOBASE_HOME")]
    info = home.stat()
    checks = []
    if info.st_uid != os.geteuid():
        checks.append(
            Check(
                "state directory owner",
                "fail",
                f"{home} belongs to uid {info.st_uid}",
                f"chown -R {os.geteuid()} {home}, or use another ECHOBASE_HOME",
            )
        )
    if info.st_mode & 0o077:  # every process of the system runs as the owner: nobody else
        checks.append(
            Check(
                "state directory permissions",
                "fail",
                f"{home} is mode {stat.S_IMODE(info.st_mode):o}",
                f"chmod 700 {home}",
            )
        )
    exposed = [p for p in world_readable_files(home) if RELEASES_DIR not in p.parts]
    if exposed:
        checks.append(
            Check(
                "state files",
                "fail",
                f"{len(exposed)} file(s) readable by others, e.g. {exposed[0]}",
                f"chmod -R go-rwx {home}",
            )
        )
    if not checks:
        checks.append(Check("state directory", "ok", f"{home} private to this user"))
    return [*checks, *check_served_files(home)]


def check_served_files(home: Path) -> list[Check]:
    """Whether the user nginx's workers run as (per each environment's rendered config) can
    reach every app bundle the load balancer serves; a worker that cannot answers 503."""
    checks = []
    for env in ENVIRONMENTS:
        config = home / "durable" / env / "nginx" / "nginx.conf"
        try:
            text = config.read_text()
        except OSError:
            continue
        user = configured_worker_user(text)
        name = f"nginx workers ({env})"
        try:
            uid, gids = identity(user)
        except KeyError:
            checks.append(Check(name, "fail", f"user {user} does not exist", _rerender(env)))
            continue
        bundles = sorted((home / WEB_DIR).glob("*"))
        blocked = [
            (link, wall) for link in bundles if (wall := first_unsearchable(link, uid, gids))
        ]
        if blocked:
            link, wall = blocked[0]
            checks.append(
                Check(
                    name,
                    "fail",
                    f"run as {user}, which cannot pass through {wall} to serve {link.name}",
                    _rerender(env),
                )
            )
        else:
            what = ", ".join(link.name for link in bundles) or "no app published yet"
            checks.append(Check(name, "ok", f"run as {user}; reach the app bundles ({what})"))
    return checks


def _rerender(env: str) -> str:
    return (
        f"echobase durable setup {env} (workers then run as the state directory's owner); "
        "run echobase as that owner"
    )


def configured_worker_user(config_text: str) -> str:
    """The user nginx's workers run as under this config: its ``user`` directive, else the
    master's own user (nginx changes user only when started by root, else it is nobody)."""
    found = re.search(r"^user\s+([^\s;]+)", config_text, re.MULTILINE)
    if found:
        return found[1]
    return "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def identity(user: str) -> tuple[int, set[int]]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, set(os.getgrouplist(user, entry.pw_gid))


def first_unsearchable(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first directory on the way to ``path`` (links followed, as nginx does) that
    ``uid`` may not pass through, or ``path`` itself if it cannot be read; None if reachable."""
    if uid == 0:
        return None
    target = path.resolve()
    for directory in [*reversed(target.parents), target]:
        try:
            info = directory.stat()
        except OSError:
            return directory
        need = 0o4 if directory == target else 0o1  # read the bundle, search the rest
        if info.st_uid == uid:
            need <<= 6
        elif info.st_gid in gids:
            need <<= 3
        if not info.st_mode & need:
            return directory
    return None


def world_readable_files(home: Path) -> list[Path]:
    """Regular files under ``home`` that other users could read."""
    found = []
    for root, _dirs, files in os.walk(home):
        for name in files:
            path = Path(root) / name
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and mode & 0o044:
                found.append(path)
    return found


def run_checks(stack: Stack, ours: dict[int, str]) -> list[Check]:
    return [*check_binaries(), *check_ports(stack, ours), *check_state_dir(stack.home)]


__all__ = ["ENVIRONMENTS", "Check", "run_checks"]
