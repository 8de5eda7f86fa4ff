"""A whole echobase system in a temporary state directory on free ports, driven through the
real CLI: used by the durable-layer tests (and later the blue-green ones)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echobase.app.core.secrets import DatabaseCredentials
from echobase.platform import build_cache
from echobase.platform.bluegreen.analysis_settings import UNWATCHED
from echobase.platform.durable import credentials
from echobase.platform.durable.layer import unsupervised
from echobase.platform.durable.mariadb import app_connection
from echobase.platform.render.durable import DurablePlan
from echobase.platform.runtime.machine import this_machine
from echobase.platform.runtime.orphans import kill_orphans
from echobase.platform.runtime.processes import free_ports
from echobase.platform.stack import (
    ENVIRONMENTS,
    Stack,
    free_port_overrides,
    render_config_toml,
)

ECHOBASE = str(Path(sys.executable).parent / "echobase")
SECRET_NAMES = credentials.SECRET_NAMES


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class DurableSystem:
    home: Path
    ports: dict[str, dict[str, int]]

    @classmethod
    def create(
        cls,
        services: dict[str, str] | None = None,
        monitoring: dict[str, float] | None = None,
        analysis: dict[str, object] | None = None,
    ) -> DurableSystem:
        """``monitoring``: the [monitoring] table (Prometheus intervals, thresholds);
        ``analysis``: the [analysis] table (by default switches and canaries are not
        watched: only the tests of the analysis wait for its windows)."""
        # Short: unix socket paths (supervisor, MariaDB) must stay under 108 bytes.
        home = Path(tempfile.mkdtemp(prefix="eb-", dir="/tmp"))
        ports = free_port_overrides(free_ports)
        toml = render_config_toml(
            ports,
            services,
            monitoring=monitoring,
            analysis=UNWATCHED if analysis is None else analysis,
        )
        (home / "echobase.toml").write_text(toml)
        (home / "echobase.toml").chmod(0o600)
        return cls(home, ports)

    @property
    def stack(self) -> Stack:
        return Stack.load(self.home, offset=0, cwd=self.home)

    def plan(self, env: str) -> DurablePlan:
        return DurablePlan(self.stack, env, this_machine())

    def env(self) -> dict[str, str]:
        # Nothing of the test run's own settings, but its build cache (tests/conftest.py).
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOBASE_")}
        if build_cache.CACHE_ENV in os.environ:
            env[build_cache.CACHE_ENV] = os.environ[build_cache.CACHE_ENV]
        env["ECHOBASE_HOME"] = str(self.home)
        env["COLUMNS"] = "200"  # rich tables unwrapped, so tests can read them
        env["_TYPER_STANDARD_TRACEBACK"] = "1"
        return env

    def start_cli(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        """The CLI in the background, for tests that act while it runs (output piped)."""
        return subprocess.Popen(
            [ECHOBASE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=cwd or self.home,
        )

    def cli(
        self, *args: str, timeout: float = 240, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        with self.start_cli(*args, cwd=cwd) as process:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()  # by its pid; the with block then reaps it
                raise
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def ok(
        self, *args: str, timeout: float = 240, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = self.cli(*args, timeout=timeout, cwd=cwd)
        assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stderr[-4000:]}"
        return result

    def status(self, env: str) -> dict[str, dict[str, Any]]:
        result = self.cli("durable", "status", env, "--json")
        assert result.returncode in (0, 1), result.stderr
        return {s["role"]: s for s in json.loads(result.stdout)["services"]}

    def secrets_client(self, env: str) -> Any:
        return credentials.aws_client("secretsmanager", self.plan(env).secrets_url)

    def secret(self, env: str, name: str) -> str:
        return str(self.secrets_client(env).get_secret_value(SecretId=name)["SecretString"])

    def secret_values(self, env: str) -> dict[str, str]:
        return {name: self.secret(env, name) for name in SECRET_NAMES}

    def query(self, env: str, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        """As the app user, with the credentials the store holds (what the services use)."""
        creds = DatabaseCredentials.from_secret(self.secret(env, credentials.DATABASE))
        conn = app_connection(creds)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args or None)  # None: a literal % in sql is not a placeholder
                return list(cur.fetchall())
        finally:
            conn.close()

    def supervisord_pid(self) -> int | None:
        pidfile = self.home / "supervisor" / "supervisord.pid"
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def destroy(self) -> None:
        """Stop everything this system started (by pid), then delete its directory."""
        for env in ENVIRONMENTS:
            self.cli("durable", "teardown", env, "--force", timeout=300)
        pid = self.supervisord_pid()
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        # What a SIGKILLed supervisord left running (a chaos scenario that failed before its
        # recovery): found by pid through the product's own lookup, killed by process group.
        kill_orphans(unsupervised(self.stack))
        subprocess.run(["chmod", "-R", "u+w", str(self.home)], check=False)  # releases are r/o
        shutil.rmtree(self.home, ignore_errors=True)
