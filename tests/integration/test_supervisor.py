"""A real supervisord in a short temporary directory, running small real programs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from echobase.platform.render.supervisor import Program, SupervisorPaths
from echobase.platform.runtime.supervisor import Supervisor, SupervisorError, SupervisorUnavailable


def alive(pid: int) -> bool:
    """Exists and is not a zombie (an orphan's new parent may be slow to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line[stat_line.rindex(")") + 2] != "Z"


def wait_for(check: Callable[[], object], timeout: float = 10, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def pidfile_pid(paths: SupervisorPaths) -> int:
    return int(paths.pidfile.read_text().strip())


def script(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


SLEEPER = script("import time\nprint('up', flush=True)\ntime.sleep(600)")


class Harness:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.paths = SupervisorPaths(home)
        self.sup = Supervisor(self.paths)
        self.seen: set[int] = set()  # every pid a test looked at, for the finalizer

    def program(self, name: str, command: list[str], **options: object) -> Program:
        options.setdefault("startsecs", 0)
        return Program(name, command, self.paths.log_for(name), **options)  # type: ignore[arg-type]

    def pid(self, name: str) -> int:
        info = self.sup.info(name)
        assert info is not None and info.state == "RUNNING" and info.pid, info
        self.seen.add(info.pid)
        return info.pid


@pytest.fixture
def h() -> Iterator[Harness]:
    # mkdtemp under /tmp, not pytest's tmp_path: unix socket paths must stay short.
    home = Path(tempfile.mkdtemp(prefix="eb-", dir="/tmp"))
    harness = Harness(home)
    try:
        yield harness
    finally:
        daemon = None
        with contextlib.suppress(OSError, ValueError):
            daemon = pidfile_pid(harness.paths)
        with contextlib.suppress(SupervisorError):
            harness.seen.update(i.pid for i in harness.sup.all_info() if i.pid)
        try:
            harness.sup.shutdown(timeout=20)
        finally:
            # By pid only, and only what this test started.
            for pid in [daemon, *harness.seen]:
                if pid and alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            shutil.rmtree(home, ignore_errors=True)


def test_ensure_running_twice_keeps_one_daemon(h: Harness) -> None:
    assert not h.sup.running()
    h.sup.ensure_running()
    first = pidfile_pid(h.paths)
    h.sup.ensure_running()
    assert pidfile_pid(h.paths) == first and alive(first)
    assert h.sup.running()
    assert stat.S_IMODE(h.paths.config.stat().st_mode) == 0o600
    assert stat.S_IMODE(h.paths.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(h.paths.logs_dir.stat().st_mode) == 0o700


def test_apply_start_and_reapply(h: Harness) -> None:
    h.sup.ensure_running()
    prog = h.program("echobase-t-web", SLEEPER, startsecs=1)
    result = h.sup.apply([prog])
    assert result.added == ("echobase-t-web",)
    info = h.sup.info("echobase-t-web")
    assert info is not None and info.state == "STOPPED"  # autostart=false: only added

    started = time.monotonic()
    h.sup.start("echobase-t-web")
    assert time.monotonic() - started >= 0.9  # waited for startsecs
    pid = h.pid("echobase-t-web")
    assert alive(pid)
    info = h.sup.info("echobase-t-web")
    assert info is not None and info.group == "echobase-t-web"
    assert info.log_file == str(prog.log_file) and info.started_at
    assert info.uptime is not None and info.uptime >= 0

    # Unchanged: nothing rewritten, nothing restarted.
    conf = h.paths.program_file("echobase-t-web")
    mtime = conf.stat().st_mtime_ns
    result = h.sup.apply([prog])
    assert result.unchanged == ("echobase-t-web",) and not result.added + result.changed
    assert h.pid("echobase-t-web") == pid and conf.stat().st_mtime_ns == mtime
    h.sup.start("echobase-t-web")  # already started: fine, same process
    assert h.pid("echobase-t-web") == pid

    # Changed command: replaced, and running again since it was running before.
    changed = h.program("echobase-t-web", [*SLEEPER, "v2"], startsecs=1)
    result = h.sup.apply([changed])
    assert result.changed == ("echobase-t-web",)
    new_pid = h.pid("echobase-t-web")
    assert new_pid != pid and alive(new_pid) and not alive(pid)
    assert "v2" in Path(f"/proc/{new_pid}/cmdline").read_bytes().decode()


def test_crashed_program_is_restarted(h: Harness) -> None:
    h.sup.ensure_running()
    h.sup.apply([h.program("crashy", SLEEPER)])
    h.sup.start("crashy")
    pid = h.pid("crashy")
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        info = h.sup.info("crashy")
        return info is not None and info.state == "RUNNING" and info.pid not in (None, pid)

    wait_for(restarted, what="a new crashy process")
    assert alive(h.pid("crashy")) and not alive(pid)


def test_stop_is_idempotent_and_leaves_no_process(h: Harness) -> None:
    h.sup.ensure_running()
    h.sup.apply([h.program("stopme", SLEEPER)])
    h.sup.stop("stopme")  # never started: already stopped is fine
    h.sup.start("stopme")
    pid = h.pid("stopme")
    h.sup.stop("stopme")
    info = h.sup.info("stopme")
    assert info is not None and info.state == "STOPPED" and info.pid is None
    assert not alive(pid)
    h.sup.stop("stopme")
    with pytest.raises(SupervisorError) as caught:
        h.sup.stop("no-such-program")
    assert caught.value.fault == "BAD_NAME"
    assert h.sup.info("no-such-program") is None


def test_program_ignoring_sigterm_is_killed_with_its_children(h: Harness) -> None:
    h.sup.ensure_running()
    marker = h.home / "stubborn.pids"
    stubborn = script(
        f"""
        import os, signal, subprocess, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "600"])
        with open({str(marker)!r} + ".tmp", "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}}")
        os.rename({str(marker)!r} + ".tmp", {str(marker)!r})
        time.sleep(600)
        """
    )
    h.sup.apply([h.program("stubborn", stubborn, stopwaitsecs=1)])
    h.sup.start("stubborn")
    wait_for(marker.exists, what="stubborn to start its child")
    main, child = (int(p) for p in marker.read_text().split())
    h.seen.update({main, child})
    started = time.monotonic()
    h.sup.stop("stubborn")
    took = time.monotonic() - started
    assert 0.9 <= took < 5, took  # waited stopwaitsecs, then SIGKILL
    info = h.sup.info("stubborn")
    assert info is not None and info.state == "STOPPED"
    assert not alive(main)
    wait_for(lambda: not alive(child), timeout=5, what="the child to be killed with its group")


def test_signal_reaches_the_program(h: Harness) -> None:
    h.sup.ensure_running()
    ready, reloaded = h.home / "ready", h.home / "reloaded"
    reloader = script(
        f"""
        import pathlib, signal, time
        signal.signal(signal.SIGHUP, lambda *_: pathlib.Path({str(reloaded)!r}).touch())
        pathlib.Path({str(ready)!r}).touch()
        while True:
            time.sleep(1)
        """
    )
    h.sup.apply([h.program("reloader", reloader)])
    h.sup.start("reloader")
    pid = h.pid("reloader")
    wait_for(ready.exists, what="the HUP handler")
    h.sup.signal("reloader", "HUP")
    wait_for(reloaded.exists, what="SIGHUP to be handled")
    assert h.pid("reloader") == pid  # handled, not restarted
    h.sup.stop("reloader")
    with pytest.raises(SupervisorError) as caught:
        h.sup.signal("reloader", "HUP")
    assert caught.value.fault == "NOT_RUNNING"


def test_log_file_per_process_and_tail(h: Harness) -> None:
    h.sup.ensure_running()
    talker = script(
        """
        import sys, time
        print("hello from stdout", flush=True)
        print("hello from stderr", file=sys.stderr, flush=True)
        time.sleep(600)
        """
    )
    h.sup.apply([h.program("talker", talker), h.program("quiet", SLEEPER)])
    assert h.sup.tail("talker") == ""  # nothing logged yet
    h.sup.start("talker")
    h.sup.start("quiet")
    log = h.paths.log_for("talker")
    wait_for(lambda: "hello from stderr" in h.sup.tail("talker"), what="both lines in the log")
    text = log.read_text()
    assert "hello from stdout" in text and "hello from stderr" in text
    assert "hello" not in h.paths.log_for("quiet").read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600  # supervisord runs with umask 077
    assert h.sup.tail("talker", 10) == text[-10:]
    assert {i.name for i in h.sup.all_info()} == {"talker", "quiet"}


def test_environment_and_arguments_reach_the_program(h: Harness) -> None:
    h.sup.ensure_running()
    out = h.home / "seen.json"
    env = {
        "EB_PLAIN": "value",
        "EB_PERCENT": "100% %(here)x",
        "EB_QUOTE": 'say "hi" now',
        "EB_COMMA": "a,b=c d",
        "EB_SPACES": "  padded  ",
    }
    argv = ["with space", "it's", '"quoted"', "50%", "%(here)s", "a ; b", "a # b", "$HOME"]
    dumper = script(
        f"""
        import json, os, sys, time
        seen = {{"argv": sys.argv[1:], "env": {{k: v for k, v in os.environ.items()
                                                if k.startswith("EB_")}}, "cwd": os.getcwd()}}
        with open({str(out)!r} + ".tmp", "w") as f:
            json.dump(seen, f)
        os.rename({str(out)!r} + ".tmp", {str(out)!r})
        time.sleep(600)
        """
    )
    h.sup.apply([h.program("dumper", [*dumper, *argv], environment=env, directory=h.home)])
    h.sup.start("dumper")
    wait_for(out.exists, what="the program to report what it saw")
    seen = json.loads(out.read_text())
    assert seen == {"argv": argv, "env": env, "cwd": str(h.home)}


def test_start_failure_is_reported_with_the_log(h: Harness) -> None:
    h.sup.ensure_running()
    broken = script("import sys\nprint('config is broken', flush=True)\nsys.exit(3)")
    h.sup.apply([h.program("broken", broken, startsecs=1, startretries=0)])
    with pytest.raises(SupervisorError, match="config is broken") as caught:
        h.sup.start("broken")
    assert caught.value.fault == "FATAL"
    missing = h.program("missing", ["/nonexistent/bin/thing"])
    h.sup.apply([missing])
    with pytest.raises(SupervisorError) as caught:
        h.sup.start("missing")
    assert caught.value.fault == "NO_FILE"


def test_remove(h: Harness) -> None:
    h.sup.ensure_running()
    h.sup.apply([h.program("goner", SLEEPER), h.program("stayer", SLEEPER)])
    h.sup.start("goner")
    h.sup.start("stayer")
    pid, other = h.pid("goner"), h.pid("stayer")
    h.sup.remove("goner")
    assert h.sup.info("goner") is None and not alive(pid)
    assert not h.paths.program_file("goner").exists()
    assert h.pid("stayer") == other  # neighbours untouched
    h.sup.remove("goner")  # already gone: fine
    # Re-adding after removal works from the file, not from a forgotten definition.
    result = h.sup.apply([h.program("goner", [*SLEEPER, "again"])])
    assert result.added == ("goner",)


def test_apply_needs_a_running_daemon(h: Harness) -> None:
    with pytest.raises(SupervisorUnavailable):
        h.sup.apply([h.program("early", SLEEPER)])
    assert not h.paths.program_file("early").exists()


def test_recovers_from_a_killed_daemon_and_stale_socket(h: Harness) -> None:
    h.sup.ensure_running()
    h.sup.apply([h.program("survivor", SLEEPER)])
    first = pidfile_pid(h.paths)
    os.kill(first, signal.SIGKILL)  # as after a crash or power loss
    wait_for(lambda: not alive(first), what="supervisord to die")
    assert h.paths.socket.exists() and h.paths.pidfile.exists()  # stale leftovers
    assert not h.sup.running()

    h.sup.ensure_running()
    second = pidfile_pid(h.paths)
    assert second != first and alive(second) and h.sup.running()
    # Program files survive and are loaded again, stopped until the platform starts them.
    info = h.sup.info("survivor")
    assert info is not None and info.state == "STOPPED"
    h.sup.start("survivor")
    h.pid("survivor")


def test_shutdown_leaves_no_process(h: Harness) -> None:
    h.sup.ensure_running()
    h.sup.apply([h.program("one", SLEEPER), h.program("two", SLEEPER)])
    h.sup.start("one")
    h.sup.start("two")
    pids = [pidfile_pid(h.paths), h.pid("one"), h.pid("two")]
    assert all(alive(pid) for pid in pids)
    h.sup.shutdown(timeout=20)
    assert not any(alive(pid) for pid in pids)
    assert not h.sup.running()
    assert not h.paths.socket.exists() and not h.paths.pidfile.exists()
    h.sup.shutdown()  # nothing running: a no-op


def test_pidfile_naming_someone_elses_process_is_left_alone(h: Harness) -> None:
    # After a reboot the old pid may belong to any process: it must be neither waited for
    # nor killed. A bound-then-closed socket file is what a crashed daemon leaves behind.
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        h.paths.dir.mkdir(parents=True)
        h.paths.pidfile.write_text(f"{bystander.pid}\n")
        leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        leftover.bind(str(h.paths.socket))
        leftover.close()
        h.sup.shutdown(timeout=2)
        assert alive(bystander.pid)
        h.paths.pidfile.write_text(f"{bystander.pid}\n")
        started = time.monotonic()
        h.sup.ensure_running(timeout=10)
        assert time.monotonic() - started < 5
        assert h.sup.running() and pidfile_pid(h.paths) != bystander.pid
        assert alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_apply_rolls_back_when_supervisord_cannot_read_the_files(h: Harness) -> None:
    h.sup.ensure_running()
    h.sup.apply([h.program("keeper", SLEEPER)])
    before = h.paths.program_file("keeper").read_text()
    # Someone else's broken file makes every reload fail.
    broken = h.paths.programs_dir / "hand-edited.conf"
    broken.write_text("[program:hand-edited]\nautostart=maybe\n")
    with pytest.raises(SupervisorError) as caught:
        h.sup.apply([h.program("keeper", [*SLEEPER, "v2"]), h.program("newbie", SLEEPER)])
    assert caught.value.fault == "CANT_REREAD"
    # What supervisord last accepted is still on disk, so it can restart after a reboot.
    assert h.paths.program_file("keeper").read_text() == before
    assert not h.paths.program_file("newbie").exists()
    broken.unlink()
    assert h.sup.apply([h.program("keeper", SLEEPER)]).unchanged == ("keeper",)
