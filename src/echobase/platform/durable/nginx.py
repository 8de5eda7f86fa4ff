"""The durable layer's load balancer, carried out: nginx in a directory of its own. A new
configuration (``render/nginx.py``) is validated with ``nginx -t`` before it replaces the
current one (:func:`apply_config`); :func:`set_routing` switches without a reload.

Every file here is the state directory's owner's, 0600 in 0700 directories: nginx's workers
run as that same owner (see ``Machine.nginx_worker_user``), so they read the htpasswd file
and the routing state, spill bodies to the temp dirs and serve the app bundles without
anything being opened to another user. The master alone reads the config, the certificate
and the key.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import bcrypt

from echobase.platform.durable.routing import read_state, write_state
from echobase.platform.render import routing
from echobase.platform.render.nginx import (
    HTPASSWD_BCRYPT_ROUNDS,
    TEMP_KINDS,
    LoadBalancerSpec,
    check_command,
    legacy_active,
    render_config,
)
from echobase.platform.render.routing import RoutingState
from echobase.platform.runtime.files import fsync_path, write_private, write_private_if_changed
from echobase.platform.runtime.machine import which


class LoadBalancerError(RuntimeError):
    pass


def htpasswd_line(username: str, password: str, rounds: int = HTPASSWD_BCRYPT_ROUNDS) -> str:
    """``user:$2b$...`` for auth_basic_user_file; Debian's nginx verifies it with libxcrypt."""
    if not username or any(c in username for c in ":\r\n\0") or username != username.strip():
        raise ValueError("htpasswd user names cannot be empty or contain ':' or line breaks")
    secret = password.encode()
    if not secret or b"\0" in secret or b"\n" in secret:
        raise ValueError("the password must be non-empty, without NUL or line breaks")
    if len(secret) > 72:
        # crypt() would silently compare only the first 72 bytes.
        raise ValueError("bcrypt passwords are limited to 72 bytes")
    hashed = bcrypt.hashpw(secret, bcrypt.gensalt(rounds, prefix=b"2b")).decode()
    return f"{username}:{hashed}\n"


def nginx_binary() -> str:
    found = which("nginx")
    if not found:
        raise LoadBalancerError("nginx not found: install Debian's nginx")
    return found


# --- thin: files on disk --------------------------------------------------------------------


def prepare(spec: LoadBalancerSpec) -> None:
    """Create the home, log and temp dirs; nothing else."""
    for path in (spec.home, spec.log_dir, spec.temp_root, *map(spec.temp_dir, TEMP_KINDS)):
        _mkdir(path, 0o700)


def _mkdir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)  # mkdir's mode is filtered by the umask and ignored for existing dirs


def install_htpasswd(spec: LoadBalancerSpec, line: str) -> None:
    """The htpasswd file, 0600: the workers that check Basic auth run as its owner."""
    write_private(spec.htpasswd_file, line if line.endswith("\n") else line + "\n")


def install_certificate(spec: LoadBalancerSpec, cert_pem: str, key_pem: str) -> None:
    """Certificate and key, 0600 and owned by the current user: only the master reads them."""
    write_private(spec.cert_file, cert_pem)
    write_private(spec.key_file, key_pem)


def current_routing(spec: LoadBalancerSpec) -> RoutingState:
    """Where traffic goes: the routing state as nginx reads it, or, in a home an earlier
    version set up, the colour its config recorded."""
    state = read_state(spec.routing)
    if state is not None:
        return state
    try:
        return RoutingState(legacy_active(spec.config_path.read_text()))
    except (FileNotFoundError, ValueError):
        return RoutingState(None)


def current_active(spec: LoadBalancerSpec) -> str | None:
    """The colour most users go to (what ``/.active-env`` answers)."""
    return current_routing(spec).active


def install_routing(spec: LoadBalancerSpec, state: RoutingState) -> bool:
    """The routing script, and a routing state when there is none (``state``: carried over
    from the record found). True when the script changed: nginx loads it with its config,
    so only a reload makes it current."""
    changed = write_private_if_changed(spec.routing.script, routing.render_script(spec.routing))
    if read_state(spec.routing) is None:
        write_state(spec.routing, state)
    return changed


def set_routing(spec: LoadBalancerSpec, state: RoutingState | str | None) -> bool:
    """Route by ``state`` (a colour alone: all traffic to it) from the next request on,
    without a reload. True if it changed."""
    with _locked(spec):
        return write_state(spec.routing, state)


def apply_config(spec: LoadBalancerSpec, reload: Callable[[], None]) -> None:
    apply_text(spec, render_config(spec), reload)


def apply_text(spec: LoadBalancerSpec, text: str, reload: Callable[[], None]) -> None:
    """Make ``text`` the config nginx runs, or raise and leave the current one alone.

    The new file is written, fsynced and checked with ``nginx -t`` beside the current one and
    only then renamed over it, so a crash or a bad config never leaves a half-written or
    invalid one. ``reload`` is called only when the file changed, after the rename: if it
    raises, a repeated apply is a no-op, so the caller must retry the reload itself (nginx
    also reads the file on start).
    """
    if not spec.njs_module.is_file():
        raise LoadBalancerError(
            f"nginx's njs module is missing ({spec.njs_module}): install Debian's"
            " libnginx-mod-http-js (bash scripts/install does)"
        )
    with _locked(spec):
        try:
            if spec.config_path.read_text() == text:
                return
        except FileNotFoundError:
            pass
        new = spec.new_config_path
        write_private(new, text)
        try:
            fsync_path(new)
            result = subprocess.run(
                check_command(spec, new), capture_output=True, text=True, timeout=60, check=False
            )
            if result.returncode != 0:
                message = (result.stderr + result.stdout).strip()
                raise LoadBalancerError(f"nginx rejected the new config: {message}")
            os.replace(new, spec.config_path)
        finally:
            new.unlink(missing_ok=True)
        _fsync_dir(spec.home)
    reload()


@contextmanager
def _locked(spec: LoadBalancerSpec) -> Iterator[None]:
    # Two switches racing would otherwise share nginx.conf.new.
    spec.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(spec.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the supervised launcher ------------------------------------------------------------
# A SIGKILLed master leaves its workers running: reparented to init, still holding the
# listening sockets and serving with the config they had (measured: supervisor's restarts
# then failed "address already in use" in a loop, each lasting past startsecs, so the
# program looked RUNNING while switches reached nobody). The program supervisor runs is this
# launcher: it retires the previous master's group, by the pid it recorded for that master
# (the master rewrites its environment with its process title, so SUPERVISOR_* cannot be
# read back), records its own pid, then becomes nginx (same pid, so supervisor signals nginx
# itself). The record is not nginx's pid file: the retiring master, still finishing requests
# after the new one started, unlinks that file when it exits (measured in the chaos suite: a
# second SIGKILL of supervisord then found no nginx to replace).

PREDECESSOR_TIMEOUT_SECONDS = 10.0


def retire_predecessor(pid_file: Path, binary: str, ports: list[int]) -> list[int]:
    """SIGQUIT (graceful: stop listening, finish requests) the group of the master the
    launcher's pid file names, if that group still has members running nginx; wait until
    the ports are free. Returns the pids asked to leave."""
    import signal

    from echobase.platform.runtime.orphans import retire_group

    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return []
    if pid <= 1:
        return []
    return retire_group(pid, binary, signal.SIGQUIT, ports, PREDECESSOR_TIMEOUT_SECONDS)


def record_master(pid_file: Path) -> None:
    """This process's pid, which nginx keeps after exec; replaced whole, so a reader never
    sees half of it."""
    from echobase.platform.runtime.files import write_private

    partial = pid_file.with_name(f".{pid_file.name}.{os.getpid()}")
    write_private(partial, f"{os.getpid()}\n")
    os.replace(partial, pid_file)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Start nginx once its predecessor has left.")
    parser.add_argument("--pid-file", type=Path, required=True)
    parser.add_argument("--ports", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("the nginx command line goes after --")
    ports = [int(port) for port in args.ports.split(",") if port]
    retired = retire_predecessor(args.pid_file, os.path.realpath(command[0]), ports)
    if retired:
        print(f"retired the previous nginx group: pids {retired}", file=sys.stderr, flush=True)
    record_master(args.pid_file)
    os.execv(command[0], command)  # noqa: S606 - our own nginx, no shell


if __name__ == "__main__":
    main()
