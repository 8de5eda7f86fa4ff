"""The local runtime's process manager: one supervisord per state directory runs every service.

The pure half, rendering supervisord's configuration from plain values, is
``render/supervisor.py``. This thin half, ``Supervisor``, writes those files and drives the
daemon through its XML-RPC API on a unix socket, the same socket ``supervisorctl -c CONFIG``
uses, so a human can always inspect or override what the platform did.

Every program lives in its own ``programs/NAME.conf``, which makes it its own process group
named exactly NAME: groups are supervisor's unit of add/remove, so one service can be
replaced without touching the others.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import shutil
import signal as signals
import socket
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echobase.platform.render.supervisor import (
    Program,
    SupervisorError,
    SupervisorPaths,
    check_socket_path,
    render_program,
    render_supervisord_config,
    validate_name,
)
from echobase.platform.runtime.files import write_private
from echobase.platform.runtime.orphans import Orphan, find_orphans

# Process states in which a process is (or is about to be) running; see supervisor.states.
_ACTIVE_STATES = frozenset({"STARTING", "RUNNING", "BACKOFF"})
_HALTED_STATES = frozenset({"STOPPED", "EXITED", "FATAL"})

# supervisor.xmlrpc.Faults, written out: importing supervisor's module costs ~90 ms of every
# CLI command's start-up (a switch waits for it), and these codes are its stable API.
_FAULT_NAMES = {
    1: "UNKNOWN_METHOD",
    2: "INCORRECT_PARAMETERS",
    3: "BAD_ARGUMENTS",
    4: "SIGNATURE_UNSUPPORTED",
    6: "SHUTDOWN_STATE",
    10: "BAD_NAME",
    11: "BAD_SIGNAL",
    20: "NO_FILE",
    21: "NOT_EXECUTABLE",
    30: "FAILED",
    40: "ABNORMAL_TERMINATION",
    50: "SPAWN_ERROR",
    60: "ALREADY_STARTED",
    70: "NOT_RUNNING",
    80: "SUCCESS",
    90: "ALREADY_ADDED",
    91: "STILL_RUNNING",
    92: "CANT_REREAD",
}


class SupervisorUnavailable(SupervisorError):
    """Nothing answers on the socket: supervisord is not running (or not yet)."""


# --------------------------------------------------------------------------------------------
# Thin: talking to supervisord
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    group: str
    # STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL or UNKNOWN.
    state: str
    pid: int | None
    started_at: float | None  # epoch seconds of the last start
    stopped_at: float | None
    uptime: float | None  # seconds, while it has a pid
    exit_status: int
    log_file: str | None
    spawn_error: str | None
    description: str

    @classmethod
    def from_rpc(cls, data: Mapping[str, Any]) -> ProcessInfo:
        pid = int(data.get("pid") or 0) or None
        start = float(data.get("start") or 0) or None
        now = float(data.get("now") or 0) or None
        return cls(
            name=str(data["name"]),
            group=str(data["group"]),
            state=str(data["statename"]),
            pid=pid,
            started_at=start,
            stopped_at=float(data.get("stop") or 0) or None,
            uptime=max(0.0, now - start) if pid and start and now else None,
            exit_status=int(data.get("exitstatus") or 0),
            log_file=str(data.get("stdout_logfile") or "") or None,
            spawn_error=str(data.get("spawnerr") or "") or None,
            description=str(data.get("description") or ""),
        )

    @property
    def active(self) -> bool:
        return self.state in _ACTIVE_STATES


@dataclass(frozen=True)
class ApplyResult:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]


class _UnixHTTPConnection(http.client.HTTPConnection):
    # supervisor's own connection class has no timeout: a wedged supervisord would hang us.
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__()
        self._path, self._timeout = str(path), timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self._path, self._timeout)


_UNREACHABLE = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)


class Supervisor:
    """Drives the supervisord of one state directory. Holds no state beyond the paths."""

    def __init__(
        self,
        paths: SupervisorPaths,
        *,
        rpc_timeout: float = 10.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        check_socket_path(paths.socket)
        self.paths = paths
        self.rpc_timeout = rpc_timeout
        # What supervisord (and so every program, under its own environment=) inherits.
        # None: the caller's environment.
        self.environ = dict(environ) if environ is not None else None

    # -- RPC plumbing ------------------------------------------------------------------------

    def _call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        # A fresh connection per call: a Supervisor outlives supervisord restarts, and this
        # keeps it usable from several threads.
        transport = _Transport(self.paths.socket, timeout or self.rpc_timeout)
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        try:
            return getattr(proxy.supervisor, method)(*args)
        except xmlrpc.client.Fault as fault:
            name = _FAULT_NAMES.get(fault.faultCode, str(fault.faultCode))
            shown = ", ".join(repr(arg) for arg in args)
            raise SupervisorError(
                f"supervisor.{method}({shown}) failed: {fault.faultString}", fault=name
            ) from None
        except _UNREACHABLE as exc:
            raise SupervisorUnavailable(
                f"supervisord is not answering on {self.paths.socket} "
                f"({type(exc).__name__}: {exc}); is it running? (supervisorctl -c "
                f"{self.paths.config} status)"
            ) from exc
        finally:
            transport.close()

    def _state(self) -> str | None:
        """supervisord's own state (RUNNING, SHUTDOWN, ...), or None when nothing answers."""
        try:
            return str(self._call("getState", timeout=min(self.rpc_timeout, 3.0))["statename"])
        except SupervisorUnavailable:
            return None
        except SupervisorError as exc:
            if exc.fault == "SHUTDOWN_STATE":
                return "SHUTDOWN"
            raise

    def running(self) -> bool:
        return self._state() == "RUNNING"

    @property
    def server_url(self) -> str:
        """What supervisord writes into each child's SUPERVISOR_SERVER_URL."""
        return f"unix://{self.paths.socket}"

    def daemon_pid(self) -> int | None:
        """The running supervisord's pid, or None when none answers."""
        try:
            return int(self._call("getPID", timeout=min(self.rpc_timeout, 3.0)))
        except SupervisorUnavailable:
            return None

    def orphans(self, declared: Mapping[str, tuple[int, str]] | None = None) -> list[Orphan]:
        """Programs a previous supervisord of this state directory started and nobody
        supervises now (see runtime.orphans)."""
        return find_orphans(self.server_url, self.daemon_pid(), declared)

    # -- daemon lifecycle --------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Two CLI invocations at once must not both decide to start a daemon.
        _private_dir(self.paths.dir)
        fd = os.open(self.paths.lockfile, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def ensure_running(self, timeout: float = 15.0) -> None:
        """Start supervisord for this state directory unless it already answers."""
        if self._state() == "RUNNING":
            return
        deadline = time.monotonic() + timeout
        with self._lock():
            state = self._state()
            if state == "RUNNING":
                return
            pid = self._pidfile_pid()
            if pid is not None:
                # Ours and alive, but not answering: shutting down, or just started by
                # someone else. Wait for it to settle either way.
                self._wait(
                    lambda: self._state() == "RUNNING" or not _alive(pid),
                    deadline,
                    f"supervisord (pid {pid}) neither answers nor exits; stop it with kill {pid}",
                )
                if self._state() == "RUNNING":
                    return
            # Nothing of ours is alive: whatever socket or pidfile is left is stale (a crash,
            # a reboot). supervisord would cope with the socket, but not with a leftover
            # pidfile naming a reused pid in our later checks; start from a clean slate.
            self._remove_runtime_files()
            for directory in (self.paths.dir, self.paths.programs_dir, self.paths.logs_dir):
                _private_dir(directory)
            write_private(self.paths.config, render_supervisord_config(self.paths))
            self._launch(deadline)

    def _launch(self, deadline: float) -> None:
        argv = [*_supervisord_command(), "-c", str(self.paths.config)]
        # A file, not a pipe: if the daemon kept our pipe open we would wait on it forever.
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.paths.dir,
                env=self.environ,
                start_new_session=True,  # a Ctrl-C in the terminal must not reach it
            )
            try:
                # The first process exits as soon as the daemon has forked off, after it
                # parsed the config and bound the socket; errors before that show up here.
                code = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = None
            output.seek(0)
            said = output.read().decode(errors="replace").strip()
        if code != 0:
            # Lost a race with another starter: theirs answers, which is all we wanted.
            if self._state() == "RUNNING":
                return
            raise SupervisorError(
                f"supervisord failed to start ({' '.join(argv)}; exit {code}): "
                f"{said or _tail_file(self.paths.logfile, 2000)}"
            )
        self._wait(
            lambda: self._state() == "RUNNING",
            deadline,
            f"supervisord started but does not answer on {self.paths.socket}; see "
            f"{self.paths.logfile}",
        )

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop every program, then supervisord, and return once its pid is gone.

        supervisord stops programs itself (each within its stopwaitsecs), so timeout should
        exceed the largest stopwaitsecs. Past it, the daemon and the processes it ran are
        killed by pid, each only after checking it is still the same process.
        """
        deadline = time.monotonic() + timeout
        with self._lock():
            self._shutdown(deadline)

    def _shutdown(self, deadline: float) -> None:
        pid: int | None = None
        children: list[tuple[int, int | None]] = []
        try:
            pid = int(self._call("getPID"))
            children = [(info.pid, _start_ticks(info.pid)) for info in self.all_info() if info.pid]
            self._call("shutdown")
        except SupervisorUnavailable:
            pass
        except SupervisorError as exc:
            if exc.fault != "SHUTDOWN_STATE":
                raise
        if pid is None:
            pid = self._pidfile_pid()
        if pid is None:
            self._remove_runtime_files()
            return
        with contextlib.suppress(TimeoutError):
            self._wait(lambda: not _alive(pid), deadline, "")
        if _alive(pid):
            # Last resort, by pid: the daemon did not finish in time.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signals.SIGKILL)
            # Its programs lead their own process groups (supervisor calls setpgrp) and would
            # be orphaned now; kill those groups, unless the pid went to someone else.
            for child, ticks in children:
                if _alive(child) and _start_ticks(child) == ticks:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child, signals.SIGKILL)
            self._wait(lambda: not _alive(pid), time.monotonic() + 5, f"pid {pid} survived")
        self._remove_runtime_files()

    def _pidfile_pid(self) -> int | None:
        """The pidfile's pid if that process is alive and is our supervisord, else None.

        After a reboot the pidfile may name a pid now used by anything at all.
        """
        try:
            pid = int(self.paths.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid <= 0 or not _alive(pid):
            return None
        cmdline = _cmdline(pid)
        if cmdline is None:  # no /proc: cannot tell, trust the file
            return pid
        if any("supervisord" in arg for arg in cmdline) and str(self.paths.config) in cmdline:
            return pid
        return None

    def _remove_runtime_files(self) -> None:
        # Only called when no supervisord of ours is alive.
        for stale in (self.paths.socket, self.paths.pidfile):
            stale.unlink(missing_ok=True)

    @staticmethod
    def _wait(done: Callable[[], bool], deadline: float, message: str) -> None:
        while not done():
            if time.monotonic() >= deadline:
                raise TimeoutError(message)
            time.sleep(0.05)

    # -- programs ----------------------------------------------------------------------------

    def apply(self, programs: Iterable[Program], restart_changed: bool = True) -> ApplyResult:
        """Make supervisord run exactly these definitions for these names (others untouched).

        New programs are added stopped. A changed program is stopped, replaced and, if it
        was running before and restart_changed, started again. Unchanged ones are left alone,
        so applying the same list twice restarts nothing.
        """
        programs = list(programs)
        names = [program.name for program in programs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate program names in {names}")
        # Render everything before touching anything: one bad value must not half-apply.
        rendered = {program.name: render_program(program) for program in programs}
        if self._state() != "RUNNING":
            raise SupervisorUnavailable(
                f"supervisord is not running for {self.paths.home}; call ensure_running first"
            )
        for program in programs:
            _private_dir(program.log_file.parent)  # supervisord will not create it

        previous: dict[Path, str | None] = {}
        for name, content in rendered.items():
            path = self.paths.program_file(name)
            old = path.read_text() if path.exists() else None
            if old != content:
                previous[path] = old
                write_private(path, content)
        try:
            added, changed, _removed = self._call("reloadConfig")[0]
        except SupervisorError:
            # Leave the directory as supervisord last accepted it: a file it cannot parse
            # would also stop it from starting after the next reboot.
            for path, old in previous.items():
                if old is None:
                    path.unlink(missing_ok=True)
                else:
                    write_private(path, old)
            raise

        ours = set(rendered)
        for name in sorted(ours & set(added)):
            self._add_group(name)
        for name in sorted(ours & set(changed)):
            before = self.info(name)
            self.stop(name)
            self._remove_group(name)
            self._add_group(name)
            if restart_changed and before is not None and before.active:
                self.start(name)
        return ApplyResult(
            added=tuple(sorted(ours & set(added))),
            changed=tuple(sorted(ours & set(changed))),
            unchanged=tuple(sorted(ours - set(added) - set(changed))),
        )

    def _add_group(self, name: str) -> None:
        try:
            self._call("addProcessGroup", name)
        except SupervisorError as exc:
            if exc.fault != "ALREADY_ADDED":  # a concurrent apply got there first
                raise

    def _remove_group(self, name: str) -> None:
        try:
            self._call("removeProcessGroup", name)
        except SupervisorError as exc:
            if exc.fault != "BAD_NAME":
                raise

    def remove(self, name: str) -> None:
        """Stop a program and forget it; its log file stays."""
        validate_name(name)  # before it becomes part of a path we delete
        try:
            self.stop(name)
        except SupervisorError as exc:
            if exc.fault != "BAD_NAME":
                raise
        self._remove_group(name)
        self.paths.program_file(name).unlink(missing_ok=True)
        # Forget the parsed definition too, or a later addProcessGroup would revive it.
        self._call("reloadConfig")

    # -- processes ---------------------------------------------------------------------------

    def start(self, name: str, wait: bool = True, timeout: float | None = None) -> None:
        """Start a program; with wait, return once it is RUNNING (up for startsecs).

        Without a timeout this waits as long as supervisord takes to decide, which
        startsecs and startretries bound: it ends RUNNING or FATAL.
        """
        try:
            self._call("startProcess", name, False)
        except SupervisorError as exc:
            if exc.fault in ("SPAWN_ERROR", "NO_FILE", "NOT_EXECUTABLE"):
                raise self._failed(name, str(exc), exc.fault) from None
            if exc.fault != "ALREADY_STARTED":
                raise
        if not wait:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self._info_or_raise(name)
            # EXITED is only reachable from RUNNING: it started, then finished on its own.
            if info.state in ("RUNNING", "EXITED"):
                return
            if info.state == "FATAL":
                raise self._failed(name, f"{name} could not be started (FATAL)", "FATAL")
            if info.state in ("STOPPED", "STOPPING"):
                raise SupervisorError(f"{name} was stopped while starting", fault=info.state)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{name} not RUNNING after {timeout:.0f}s ({info.state})")
            time.sleep(0.05)

    def stop(self, name: str, timeout: float | None = None) -> None:
        """Stop a program and return once it has no process; already stopped is fine.

        supervisord escalates to SIGKILL after stopwaitsecs, which bounds the wait.
        """
        try:
            self._call("stopProcess", name, False)
        except SupervisorError as exc:
            if exc.fault != "NOT_RUNNING":
                raise
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self._info_or_raise(name)
            if info.state in _HALTED_STATES:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{name} still {info.state} after {timeout:.0f}s")
            time.sleep(0.05)

    def signal(self, name: str, sig: str) -> None:
        """Send a signal (e.g. "HUP") to the program's main process, not its group."""
        self._call("signalProcess", name, sig)

    def info(self, name: str) -> ProcessInfo | None:
        try:
            return ProcessInfo.from_rpc(self._call("getProcessInfo", name))
        except SupervisorError as exc:
            if exc.fault == "BAD_NAME":
                return None
            raise

    def all_info(self) -> list[ProcessInfo]:
        return [ProcessInfo.from_rpc(data) for data in self._call("getAllProcessInfo")]

    def tail(self, name: str, nbytes: int = 4096) -> str:
        """The last nbytes of the program's log (stdout and stderr together). Read from the
        file: over XML-RPC a log holding control characters (colour codes) breaks the reply."""
        info = self.info(name)
        path = Path(info.log_file) if info and info.log_file else self.paths.log_for(name)
        try:
            with path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - nbytes))
                return log.read().decode(errors="replace")
        except OSError:  # never started, so nothing logged yet
            return ""

    def _info_or_raise(self, name: str) -> ProcessInfo:
        info = self.info(name)
        if info is None:
            raise SupervisorError(f"no program named {name}; apply it first", fault="BAD_NAME")
        return info

    def _failed(self, name: str, message: str, fault: str) -> SupervisorError:
        info = self.info(name)
        details = [message]
        if info is not None and info.spawn_error:
            details.append(f"spawn error: {info.spawn_error}")
        with contextlib.suppress(SupervisorError):
            log = self.tail(name, 2000).strip()
            if log:
                details.append(f"last log lines:\n{log}")
        return SupervisorError("; ".join(details), fault=fault)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _supervisord_command() -> list[str]:
    # The venv's own supervisord matches the supervisor we import; a system one may not.
    beside = Path(sys.executable).parent / "supervisord"
    if os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("supervisord")
    if found:
        return [found]
    return [sys.executable, "-m", "supervisor.supervisord"]


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; the fields follow the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (a daemon's parent may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return fields is None or fields[0] != "Z"


def _start_ticks(pid: int) -> int | None:
    """When pid started (clock ticks since boot): with the pid, identifies one process."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [os.fsdecode(arg) for arg in raw.split(b"\0") if arg]


def _tail_file(path: Path, nbytes: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - nbytes))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""
