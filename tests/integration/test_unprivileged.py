"""`bash scripts/run` as a real unprivileged user, exactly as that user would run it: from a
clone of this checkout, with Debian's python3 and an empty pip/npm cache.

With the default ports (80/443 need root) it must refuse before anything starts, with the
one message that names the three ways out; with ECHOBASE_PORT_OFFSET it must give a working
system, and `down --all` plus `durable teardown` must leave no process of that user behind.

As root the tests create a throwaway user (and delete it with its home at the end); run as
an unprivileged user they use that user, with HOME in a temporary directory so that user's
real state directory is never touched."""

from __future__ import annotations

import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from echobase.platform.doctor import port_free
from echobase.platform.preflight import needed_ports, unprivileged_start
from echobase.platform.stack import HOST, Stack, resolve_ports
from user_path_support import check_live, clone_checkout

pytestmark = [pytest.mark.timeout(1800), pytest.mark.slow]

PATH = "/usr/local/bin:/usr/bin:/bin"  # no pyenv, no /root: what a plain login has


@dataclass
class User:
    name: str
    uid: int
    home: Path  # HOME for every command: the default state directory lives under it
    created: bool  # a throwaway user of ours (root only), deleted at the end
    baseline: frozenset[int]  # the user's processes before the tests (non-root mode)

    @property
    def state(self) -> Path:
        return self.home / ".local" / "share" / "echobase"

    def argv(self, *command: str, **env: str) -> list[str]:
        clean = ["env", "-i", f"HOME={self.home}", f"PATH={PATH}"]
        clean += [f"{key}={value}" for key, value in env.items()]
        if self.created:
            return ["runuser", "-u", self.name, "--", *clean, *command]
        return [*clean, *command]

    def processes(self) -> dict[int, str]:
        """This user's processes (pid -> command line) not there before the tests."""
        found = {}
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                uid_line = next(
                    line for line in status.read_text().splitlines() if line.startswith("Uid:")
                )
                cmdline = (status.parent / "cmdline").read_bytes()
            except (OSError, StopIteration):
                continue
            pid = int(status.parent.name)
            if int(uid_line.split()[1]) == self.uid and pid not in self.baseline:
                if pid != os.getpid():
                    found[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace")
        return found

    def kill_leftovers(self) -> dict[int, str]:
        """Kill (by pid) whatever of the user still runs; returns what there was."""
        left = self.processes()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.processes():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.2)
        return left


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        home = Path(tempfile.mkdtemp(prefix="eb-u-", dir="/tmp"))
        mine = {pid for pid in _pids() if _uid(pid) == me.pw_uid}
        found = User(me.pw_name, me.pw_uid, home, False, frozenset(mine))
        try:
            yield found
        finally:
            found.kill_leftovers()
            subprocess.run(["chmod", "-R", "u+w", str(home)], check=False)  # releases are r/o
            shutil.rmtree(home, ignore_errors=True)
        return
    name = f"echobase-test-{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    entry = pwd.getpwnam(name)
    found = User(name, entry.pw_uid, Path(entry.pw_dir), True, frozenset())
    try:
        yield found
    finally:
        found.kill_leftovers()
        subprocess.run(["userdel", "-r", name], check=False, capture_output=True)


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _uid(pid: int) -> int | None:
    try:
        return Path(f"/proc/{pid}").stat().st_uid
    except OSError:
        return None


@pytest.fixture(scope="module")
def clone(user: User) -> Path:
    target = clone_checkout(user.home / "echobase")
    if user.created:
        # Owned by the user, so that git's "dubious ownership" check passes for them.
        subprocess.run(["chown", "-R", f"{user.name}:", str(user.home)], check=True)
    return target


def run_as(
    user: User, clone: Path, *command: str, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        user.argv(*command, **env),
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_offset() -> int:
    """An offset that puts every devlocal and colour port on a free, unprivileged port,
    below the kernel's ephemeral range (where other tests take their free ports)."""
    candidates = list(range(11000, 23000, 100))
    random.shuffle(candidates)
    for offset in candidates:
        stack = Stack(Path("/nonexistent"), resolve_ports(offset))
        if all(port_free(HOST, port) for _, _, port in needed_ports(stack, "devlocal")):
            return offset
    raise AssertionError("no free port offset found")


def test_default_ports_are_refused_before_anything_starts(user, clone):
    first = unprivileged_start()
    if first is not None and first <= 80:
        pytest.skip(f"this machine lets every user listen from port {first}")
    started = time.monotonic()
    result = run_as(user, clone, "bash", "scripts/run", timeout=1200)
    print(f"refused run (with scripts/install): {time.monotonic() - started:.1f}s")
    print(result.stderr)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-4000:]
    ways = ("ECHOBASE_PORT_OFFSET=10000", "[ports.devlocal]", "ip_unprivileged_port_start=80")
    for fix in ways:
        assert fix in result.stderr, result.stderr
    assert result.stderr.count("error:") == 1, result.stderr  # one message
    assert "Nothing was started" in result.stderr
    assert "Traceback" not in output
    assert user.processes() == {}
    state = user.state
    left = [p for p in state.rglob("*") if not p.is_dir()] if state.exists() else []
    assert left == [], left  # no supervisord socket, pid file, config or data


def test_with_an_offset_the_user_gets_a_working_system(user, clone):
    offset = free_offset()
    env = {"ECHOBASE_PORT_OFFSET": str(offset)}
    started = time.monotonic()
    try:
        result = run_as(user, clone, "bash", "scripts/run", timeout=1500, **env)
        print(f"scripts/run with offset {offset}: {time.monotonic() - started:.1f}s")
        assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        assert "Traceback" not in result.stderr
        https = resolve_ports(offset).of("devlocal")["lb_https"]
        cert = user.state / "durable" / "devlocal" / "nginx" / "tls" / "lb.crt"
        check_live(f"https://127.0.0.1:{https}", cert)  # what CI checks of the user's path
    finally:
        down = run_as(user, clone, ".venv/bin/echobase", "down", "--all", **env)
        teardown = run_as(
            user, clone, ".venv/bin/echobase", "durable", "teardown", "devlocal", **env
        )
    assert down.returncode == 0, down.stderr[-4000:]
    assert teardown.returncode == 0, teardown.stderr[-4000:]
    deadline = time.monotonic() + 30  # supervisord exits just after answering
    while user.processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert user.kill_leftovers() == {}
    print(f"whole scenario: {time.monotonic() - started:.1f}s")
