"""Programs that outlived their supervisord: found by pid, stopped by process group.

A SIGKILLed supervisord takes none of its children with it: they are reparented to init and
go on serving, holding their ports, with nobody to restart them. A new supervisord knows
nothing of them, and every program it starts fails to bind.

How they are told apart from everything else on the machine, by pid and never by name:
supervisord puts each child in a process group of its own (setpgrp, so the group id is the
pid it spawned) and writes ``SUPERVISOR_SERVER_URL`` (its socket) and
``SUPERVISOR_PROCESS_NAME`` into the child's environment, which /proc/PID/environ shows and
which the child's own children inherit. A group whose leader is not a child of the running
supervisord of that socket is an orphan. The kernel does not hand out a pid while a process
group of that number still has a member, so the group id keeps naming the same program even
after its leader died (a SIGKILLed uvicorn master's workers, say).

A program that rewrites its environment block (nginx puts its process title there) is
declared by the caller instead: a group id from the program's own pid file, accepted only if
every member runs the expected executable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from echobase.platform.runtime.processes import listening_sockets

PROC = Path("/proc")


@dataclass(frozen=True)
class Orphan:
    program: str  # supervisor's name for it
    pgid: int  # the pid supervisord spawned: its process group
    pids: tuple[int, ...]  # every live member of the group


@dataclass(frozen=True)
class _Process:
    pid: int
    ppid: int
    pgid: int


def _stat(pid: int, proc: Path = PROC) -> tuple[str, int, int] | None:
    """(state, ppid, pgid), or None when the process is gone."""
    try:
        raw = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields follow the last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _environ(pid: int, proc: Path = PROC) -> dict[bytes, bytes]:
    try:
        raw = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if b"=" in item)
    return {key: value for key, _, value in pairs}


def _executable(pid: int, proc: Path = PROC) -> str | None:
    try:
        return os.readlink(proc / str(pid) / "exe")
    except OSError:
        return None


def _processes(proc: Path = PROC) -> list[_Process]:
    """This user's live processes (zombies excluded: a reparented child's exit may never be
    reaped where init does not reap, and a zombie holds no port)."""
    uid = os.geteuid()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        stat = _stat(int(entry.name), proc)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        found.append(_Process(int(entry.name), stat[1], stat[2]))
    return found


def group_members(pgid: int, proc: Path = PROC) -> list[int]:
    """Live processes of this user in process group ``pgid``."""
    return sorted(p.pid for p in _processes(proc) if p.pgid == pgid)


def find_orphans(
    server_url: str,
    supervisord_pid: int | None,
    declared: Mapping[str, tuple[int, str]] | None = None,
    proc: Path = PROC,
) -> list[Orphan]:
    """Program groups started by a supervisord of ``server_url`` that the live one
    (``supervisord_pid``, None when none runs) is not running.

    ``declared``: program name -> (process group, executable) for programs whose
    environment cannot be read back (see the module's docstring)."""
    processes = _processes(proc)
    by_pid = {p.pid: p for p in processes}
    members: dict[int, list[int]] = {}
    for p in processes:
        members.setdefault(p.pgid, []).append(p.pid)
    url = server_url.encode()
    names: dict[int, str] = {}
    for p in processes:
        environ = _environ(p.pid, proc)
        if environ.get(b"SUPERVISOR_SERVER_URL") != url:
            continue
        name = environ.get(b"SUPERVISOR_PROCESS_NAME", b"").decode(errors="replace")
        # The leader's name wins: it is the process supervisord spawned.
        if name and (p.pgid not in names or p.pid == p.pgid):
            names[p.pgid] = name
    for name, (pgid, executable) in (declared or {}).items():
        pids = members.get(pgid, [])
        if pids and all(_executable(pid, proc) == executable for pid in pids):
            names.setdefault(pgid, name)

    def supervised(pgid: int) -> bool:
        leader = by_pid.get(pgid)
        return supervisord_pid is not None and leader is not None and leader.ppid == supervisord_pid

    return sorted(
        (
            Orphan(name, pgid, tuple(sorted(members.get(pgid, []))))
            for pgid, name in names.items()
            if not supervised(pgid) and pgid != os.getpgrp()
        ),
        key=lambda orphan: orphan.program,
    )


def stop_orphan(orphan: Orphan, stopsignal: str, timeout: float, proc: Path = PROC) -> bool:
    """Stop an orphaned program the way supervisord would have: ``stopsignal`` to its whole
    group, up to ``timeout`` seconds to finish (a processor its batch, a gateway its
    requests), then SIGKILL. Returns True if it had to be killed."""
    sig = signal.Signals[f"SIG{stopsignal.upper().removeprefix('SIG')}"]
    if not _signal_group(orphan.pgid, sig, proc):
        return False
    deadline = time.monotonic() + timeout
    while group_members(orphan.pgid, proc):
        if time.monotonic() >= deadline:
            _signal_group(orphan.pgid, signal.SIGKILL, proc)
            _wait_gone(orphan.pgid, 10.0, proc)
            return True
        time.sleep(0.05)
    return False


def kill_orphans(orphans: Iterable[Orphan], proc: Path = PROC) -> None:
    """SIGKILL every group at once (cleanup, or a power cut's worth of fault)."""
    orphans = list(orphans)
    for orphan in orphans:
        _signal_group(orphan.pgid, signal.SIGKILL, proc)
    for orphan in orphans:
        _wait_gone(orphan.pgid, 10.0, proc)


def _signal_group(pgid: int, sig: signal.Signals, proc: Path) -> bool:
    # Checked just before signalling: while a member lives, pgid cannot name anyone else.
    if not group_members(pgid, proc):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    return True


def _wait_gone(pgid: int, timeout: float, proc: Path) -> None:
    deadline = time.monotonic() + timeout
    while group_members(pgid, proc) and time.monotonic() < deadline:
        time.sleep(0.05)


def retire_group(
    pgid: int,
    executable: str,
    sig: signal.Signals,
    ports: Iterable[int],
    timeout: float,
    proc: Path = PROC,
) -> list[int]:
    """Ask a dead or orphaned server's process group to leave, and return as soon as it no
    longer listens on ``ports`` (its members may still be finishing requests). Only a group
    whose every member runs ``executable`` is touched; past ``timeout``, SIGKILL. Returns
    the members signalled."""
    members = [pid for pid in group_members(pgid, proc) if pid != os.getpid()]
    if not members or any(_executable(pid, proc) != executable for pid in members):
        return []
    _signal_group(pgid, sig, proc)
    wanted = set(ports)
    deadline = time.monotonic() + timeout
    while group_members(pgid, proc) and wanted & set(listening_sockets(proc)):
        if time.monotonic() >= deadline:
            _signal_group(pgid, signal.SIGKILL, proc)
            _wait_gone(pgid, 10.0, proc)
            break
        time.sleep(0.02)
    return members
