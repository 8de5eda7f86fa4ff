"""Before a command starts anything: can this user listen on every port it will need?

Without it an unprivileged user's ``bash scripts/run`` started the secrets store, MariaDB and
supervisord, and only then failed to bind nginx to port 443, leaving half a system behind.
The ports are judged by doctor's ``classify_ports`` (one piece of code for both); this
module only says which ports a command needs, which of them echobase itself already holds,
and words the one refusal."""

from __future__ import annotations

import os
import pwd
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

from echobase.platform.doctor import (
    SYSCTL,
    TAKEN_FIX,
    PortUse,
    classify_ports,
    port_free,
    ways_out,
)
from echobase.platform.runtime.processes import listening_sockets
from echobase.platform.runtime.services import supervisor_for
from echobase.platform.runtime.supervisor import SupervisorError
from echobase.platform.stack import COLOURS, Stack, check_env

UNPRIVILEGED_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")


class PortsUnavailable(RuntimeError):
    """Some port a command needs cannot be had; nothing has been started."""

    def __init__(self, uses: Sequence[PortUse], message: str) -> None:
        super().__init__(message)
        self.uses = list(uses)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": False,
            "error": "ports unavailable",
            "message": str(self),
            "ports": [
                {"port": u.port, "owner": u.owner, "key": u.key, "state": u.state}
                for u in self.uses
                if u.state in ("privileged", "taken")
            ],
        }


def needed_ports(
    stack: Stack, env: str, durable: bool = True, colours: bool = True
) -> list[tuple[str, str, int]]:
    """(owner, key, port) of what a command may start: the environment's durable layer
    and/or the colours (every colour: which one a deploy picks is decided later)."""
    owners = ([check_env(env)] if durable else []) + (list(COLOURS) if colours else [])
    return [(owner, key, port) for owner in owners for key, port in stack.ports.of(owner).items()]


def held_ports(stack: Stack, active_programs: Collection[str]) -> dict[int, str]:
    """Ports of the stack's services whose supervisor programs are active (running,
    starting or backing off): taken, but by echobase itself, so not a problem."""
    services = [
        *(s for env in stack.ports.durable for s in stack.durable_services(env)),
        *(s for colour in stack.ports.colours for s in stack.colour_services(colour)),
    ]
    return {
        port: service.name
        for service in services
        if service.name in active_programs
        for port in service.ports
    }


def ours(stack: Stack) -> dict[int, str]:
    """Ports held by this state directory's running services: those its supervisord runs,
    and those a dead supervisord left running (found by pid, see runtime.orphans), which
    `echobase up` puts back under supervision. Nothing is started to find out."""
    from echobase.platform.durable.layer import unsupervised

    supervisor = supervisor_for(stack.home)
    active = {orphan.program for orphan in unsupervised(stack)}
    try:
        if supervisor.running():
            active |= {info.name for info in supervisor.all_info() if info.active}
    except SupervisorError:
        pass
    return held_ports(stack, active)


class Unsupervised(RuntimeError):
    """Programs of this state directory run without a supervisord; only `up` recovers."""


def check_supervised(stack: Stack) -> None:
    """Refuse to start anything beside programs a dead supervisord left running: a new
    one's copies could not bind their ports, and the orphans would go on unsupervised."""
    from echobase.platform.durable.layer import unsupervised

    orphans = unsupervised(stack)
    if orphans:
        listed = "\n".join(f"  - {o.program} (pids {', '.join(map(str, o.pids))})" for o in orphans)
        raise Unsupervised(
            f"supervisord of {stack.home} is not running these programs, which still run "
            f"unsupervised (their supervisord died):\n{listed}\n"
            "run `echobase up` to put them back under supervision without dropping an order"
        )


def unprivileged_start() -> int | None:
    try:
        return int(UNPRIVILEGED_START.read_text().strip())
    except (OSError, ValueError):
        return None


def socket_owner(inode: int, proc: Path = Path("/proc")) -> str | None:
    """ "name (pid N)" of the process holding a socket, when this user may look (its own
    processes; every process for root)."""
    target = f"socket:[{inode}]"
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(entry / "fd" / fd) == target:
                    return f"{(entry / 'comm').read_text().strip()} (pid {entry.name})"
            except OSError:
                continue
    return None


def port_holders(ports: Iterable[int]) -> dict[int, str]:
    """Who listens on each of ``ports`` (those anybody listens on): for the refusal."""
    sockets = listening_sockets()
    holders = {}
    for port in ports:
        if port not in sockets:
            continue
        uid, inode = sockets[port]
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = f"uid {uid}"
        process = socket_owner(inode)
        holders[port] = f"{process} of user {user}" if process else f"a process of user {user}"
    return holders


def refusal(
    uses: Iterable[PortUse],
    first_unprivileged: int | None = None,
    holders: Mapping[int, str] | None = None,
) -> str | None:
    """The one message for every port that cannot be had, or None when all can.
    ``holders``: port -> who listens there, for the ports another program holds."""
    uses = list(uses)
    holders = holders or {}
    privileged = [u for u in uses if u.state == "privileged"]
    taken = [u for u in uses if u.state == "taken"]
    if not privileged and not taken:
        return None
    paragraphs = []
    if privileged:
        limit = (
            f"ports below {first_unprivileged} need root ({SYSCTL} = {first_unprivileged})"
            if first_unprivileged is not None
            else f"privileged ports need root ({SYSCTL})"
        )
        lines = [
            f"this user may not listen on port(s) {', '.join(u.label for u in privileged)}: "
            f"{limit}. Any one of these fixes it:",
            *(f"  - {way}" for way in ways_out(privileged)),
        ]
        paragraphs.append("\n".join(lines))
    if taken:
        lines = [
            "these ports are in use by another program:",
            *(
                f"  - {u.label}" + (f": {holders[u.port]}" if u.port in holders else "")
                for u in taken
            ),
            f"  {TAKEN_FIX}",
        ]
        paragraphs.append("\n".join(lines))
    paragraphs.append("Nothing was started.")
    return "\n".join(paragraphs)


def check_ports_free(stack: Stack, env: str, durable: bool = True, colours: bool = True) -> None:
    """Raise PortsUnavailable unless this user can listen on every port the command may
    start a server on (those echobase already holds excepted)."""
    uses = classify_ports(
        needed_ports(stack, env, durable, colours),
        ours(stack),
        lambda port: port_free(stack.host, port),
    )
    taken = [use.port for use in uses if use.state == "taken"]
    message = refusal(uses, unprivileged_start(), port_holders(taken) if taken else {})
    if message is not None:
        raise PortsUnavailable(uses, message)
