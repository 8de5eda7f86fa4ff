"""Pieces the benchmarks share: a private system driven through the real CLI, CPU and memory
of process trees, percentiles, wrk with a JSON summary, a trivial nginx for ceilings, and
filling a queue."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from echobase.app.core.secrets import DatabaseCredentials
from echobase.app.messages import build_order_message
from echobase.platform.bluegreen.analysis_settings import UNWATCHED
from echobase.platform.bluegreen.pipeline import BlueGreen
from echobase.platform.durable import credentials, nginx
from echobase.platform.durable.layer import tree_rss
from echobase.platform.durable.mariadb import app_connection
from echobase.platform.release import build_release
from echobase.platform.render.durable import DurablePlan
from echobase.platform.render.ephemeral import ColourPlan
from echobase.platform.render.nginx import TEMP_KINDS
from echobase.platform.render.release import Release
from echobase.platform.runtime.machine import this_machine
from echobase.platform.runtime.processes import free_port, free_ports
from echobase.platform.runtime.supervisor import Supervisor
from echobase.platform.stack import Stack, free_port_overrides, render_config_toml

ECHOBASE = str(Path(sys.executable).parent / "echobase")
REPO = Path(__file__).resolve().parent.parent
ENV = "devlocal"
ORIGIN = "https://bench.local"
ORDER_BODY = json.dumps({"productId": 11, "quantity": 2})
# Fast hashing and no rate limit: the benchmarks measure the order path, not bcrypt or the
# limiter refusing one user's 600 orders a second. The same keys a team sets in echobase.toml.
BENCH_SERVICE_SETTINGS = {
    "ECHOBASE_BCRYPT_ROUNDS": "4",
    "ECHOBASE_RATE_LIMIT_MAX": "100000000",
    "ECHOBASE_LOG_LEVEL": "warning",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds) of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process (the load generator, where it is Python)."""
    return _stat(os.getpid())[1]


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by a process and its children (uvicorn or nginx workers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid, seconds = _stat(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
        if int(entry.name) == root or ppid == root:
            total += seconds
    return total


def stop_pid(pid: int, grace: float = 30) -> None:
    """SIGTERM one process we started, SIGKILL after ``grace`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class System:
    """One private state directory on free ports, driven through the real CLI."""

    home: Path
    steps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def create(
        cls, services: dict[str, str] | None = None, analysis: dict[str, object] | None = None
    ) -> System:
        # Short: unix socket paths (supervisor, MariaDB) must stay under 108 bytes.
        home = Path(tempfile.mkdtemp(prefix="eb-bench-", dir="/tmp"))
        # Benchmarks measure switches, not the analysis window after them.
        toml = render_config_toml(
            free_port_overrides(free_ports), services, analysis=analysis or UNWATCHED
        )
        (home / "echobase.toml").write_text(toml)
        (home / "echobase.toml").chmod(0o600)
        return cls(home)

    def cli(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOBASE_")}
        env["ECHOBASE_HOME"] = str(self.home)
        env["COLUMNS"] = "200"
        started = time.perf_counter()
        result = subprocess.run(
            [ECHOBASE, *args],
            env=env,
            cwd=cwd or self.home,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        seconds = time.perf_counter() - started
        if check and result.returncode != 0:
            raise SystemExit(f"echobase {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return seconds, result

    @property
    def stack(self) -> Stack:
        return Stack.load(self.home, offset=0, cwd=self.home)

    def plan(self) -> DurablePlan:
        return DurablePlan(self.stack, ENV, this_machine())

    def pids(self) -> dict[str, int]:
        """Running services by name ("durable mariadb", "green api-gateway", ...) -> pid."""
        found: dict[str, int] = {}
        durable = json.loads(self.cli("durable", "status", ENV, "--json", check=False)[1].stdout)
        for service in durable["services"]:
            if service.get("pid"):
                found[f"durable {service['role']}"] = int(service["pid"])
        colours = json.loads(self.cli("status", "--env", ENV, "--json")[1].stdout)
        for colour in colours["colours"]:
            for service in colour["services"]:
                if service.get("pid"):
                    found[f"{colour['colour']} {service['role']}"] = int(service["pid"])
        return found

    def destroy(self) -> None:
        """Stop what this state directory runs (by supervisord's pid), then delete it."""
        self.cli("down", "--all", "--env", ENV, check=False)
        pidfile = self.home / "supervisor" / "supervisord.pid"
        try:
            stop_pid(int(pidfile.read_text().strip()), grace=60)
        except (OSError, ValueError):
            pass
        subprocess.run(["chmod", "-R", "u+w", str(self.home)], check=False)  # releases are r/o
        shutil.rmtree(self.home, ignore_errors=True)


# --- comparing two modes of one system -----------------------------------------------------


def deploy_both_colours(
    system: System, ref: str
) -> tuple[Release, BlueGreen, dict[str, ColourPlan]]:
    """A release of ``ref`` ('': the working tree) on both colours (green, then blue), for a
    bench that changes one colour and compares it with the other."""
    release, _ = build_release(system.home, REPO, ref or None)
    system.cli("durable", "setup", ENV)
    for _ in range(2):
        system.cli("deploy", "--release", release.id, "--env", ENV)
    bluegreen = BlueGreen(system.stack, ENV)
    plans = {}
    for colour in ("blue", "green"):
        plan = bluegreen.running_plan(colour)
        assert plan is not None, f"{colour} runs nothing"
        plans[colour] = plan
    return release, bluegreen, plans


def intake_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a bench that compares two modes by alternating intake rounds."""
    parser.add_argument("--rounds", type=int, default=3, help="intake rounds per mode")
    parser.add_argument("--seconds", type=float, default=20, help="each intake round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--ref", default="HEAD", help="what to release ('': the working tree)")


def alternating(rounds: int, modes: tuple[str, str]) -> Iterator[tuple[int, str]]:
    """(round, mode) in the order A B, B A, A B, ...: a drift of the shared machine during
    the run hits both modes alike."""
    for number in range(rounds):
        for mode in modes if number % 2 == 0 else modes[::-1]:
            yield number, mode


# --- the running system's processes ----------------------------------------------------


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def pid_of(supervisor: Supervisor, name: str) -> int:
    info = supervisor.info(name)
    assert info is not None and info.pid, f"{name} is not running"
    return int(info.pid)


def rerun_with_env(
    supervisor: Supervisor, plan: ColourPlan, env_by_role: Mapping[str, Mapping[str, str]]
) -> None:
    """The colour's programs of these roles again, with this environment added
    (``Supervisor.apply`` restarts a changed program)."""
    programs = [
        replace(plan.program(role), environment={**plan.program(role).environment, **env})
        for role, env in env_by_role.items()
    ]
    result = supervisor.apply(programs)
    assert {p.name for p in programs} <= set(result.changed), result


def wait_healthy(bluegreen: BlueGreen, colour: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while unhealthy := bluegreen.unhealthy(colour):
        if time.monotonic() > deadline:
            raise SystemExit(f"{colour} not healthy after {timeout:.0f} s: {unhealthy}")
        time.sleep(0.5)


# --- users and orders -----------------------------------------------------------------------


def register(lb_url: str, verify: ssl.SSLContext, count: int) -> list[str]:
    """Users registered through the LB; their JWTs (the session cookie's value)."""
    tokens = []
    with httpx.Client(base_url=lb_url, verify=verify, headers={"Origin": lb_url}) as http:
        for i in range(count):
            name = f"bench{i}_{os.urandom(4).hex()}"
            response = http.post(
                "/api/v1/auth/register",
                json={
                    "username": name,
                    "email": f"{name}@bench.local",
                    "fullName": "Bench",
                    "password": "Bench1234x",
                },
            )
            assert response.status_code == 201, response.text
            tokens.append(response.cookies["echobase_token"])
    return tokens


def database_credentials(plan: DurablePlan) -> DatabaseCredentials:
    """The app's MariaDB credentials, from the environment's secrets store."""
    secret = credentials.aws_client("secretsmanager", plan.secrets_url).get_secret_value(
        SecretId=credentials.DATABASE
    )
    return DatabaseCredentials.from_secret(secret["SecretString"])


def stored_counts(creds: DatabaseCredentials, uids: list[str]) -> dict[str, int]:
    """order_uid -> rows stored with it, for the uids that have any."""
    counts: dict[str, int] = {}
    conn = app_connection(creds, autocommit=True)
    try:
        with conn.cursor() as cur:
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                placeholders = ", ".join(["%s"] * len(chunk))  # only %s: values stay bound
                cur.execute(
                    "SELECT order_uid, COUNT(*) FROM orders WHERE order_uid IN"  # noqa: S608
                    f" ({placeholders}) GROUP BY order_uid",
                    chunk,
                )
                counts.update({str(uid): int(n) for uid, n in cur.fetchall()})
    finally:
        conn.close()
    return counts


def first_user(creds: DatabaseCredentials) -> int:
    conn = app_connection(creds)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT MIN(id) FROM users")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def tree_pss(pid: int) -> int:
    """Proportional set size of a process and its descendants, in bytes: each shared page
    split between the processes mapping it, so the sum over a system is what it holds."""
    family, todo = [], [pid]
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(stat.parent.name))
    while todo:
        current = todo.pop()
        family.append(current)
        todo += parents.get(current, [])
    total = 0
    for member in family:
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total


def pss_mib(pids: dict[str, int]) -> dict[str, float]:
    return {name: tree_pss(pid) / 2**20 for name, pid in pids.items()}


def rss_mib(pids: dict[str, int]) -> dict[str, float]:
    """Resident memory of each process tree (workers included), in MiB."""
    return {name: tree_rss(pid) / 2**20 for name, pid in pids.items()}


# --- wrk -----------------------------------------------------------------------------

_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int  # socket errors (connect, read, write, timeout)
    bad_status: int  # answers >= 400
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Good answers a second."""
        return (self.requests - self.bad_status) / self.seconds


def wrk_request_script(
    method: str,
    path: str,
    tokens: list[str] | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    origin: str = ORIGIN,
) -> str:
    """A wrk Lua ``request`` that sends ``method path``, rotating bearer ``tokens`` (one per
    logged-in user) so the gateway verifies a different user's JWT on each request."""
    all_headers = {"Origin": origin, **(headers or {})}
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    lua_headers = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in all_headers.items())
    lua_tokens = ", ".join(json.dumps(t) for t in tokens or [])
    lua_body = json.dumps(body) if body is not None else "nil"
    return f"""
local tokens = {{{lua_tokens}}}
local n = 0
request = function()
  local h = {{{lua_headers}}}
  if #tokens > 0 then
    n = n + 1
    h["Authorization"] = "Bearer " .. tokens[n % #tokens + 1]
  end
  return wrk.format({json.dumps(method)}, {json.dumps(path)}, h, {lua_body})
end
"""


def wrk(url: str, script: str, connections: int, seconds: float, threads: int = 2) -> WrkResult:
    """wrk (C, event loop) at fixed concurrency: a closed loop of ``connections`` clients."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script + _WRK_DONE)
    try:
        result = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds:.0f}s",
                "--timeout",
                "10s",
                "-s",
                lua.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    finally:
        os.unlink(lua.name)
    line = next(x for x in result.stdout.splitlines() if x.startswith("WRK_JSON "))
    data = json.loads(line.removeprefix("WRK_JSON "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        bad_status=data["status"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


def wrk_row(label: str, r: WrkResult, unit: str = "req/s") -> str:
    return (
        f"{label:<52} {r.rate:9.1f} {unit:<8} p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms"
        f"  errors {r.errors}  non-2xx {r.bad_status}"
    )


# --- a trivial nginx, for the ceilings ----------------------------------------------------


@dataclass(frozen=True)
class TrivialNginx:
    direct_tls_url: str  # nginx answering 200 itself, over TLS: the load client's ceiling
    proxy_tls_url: str  # nginx over TLS proxying to a trivial upstream: nginx's ceiling
    upstream_url: str  # the trivial upstream (nginx answering 200 over plain HTTP)


@contextmanager
def trivial_nginx(cert: Path, key: Path) -> Iterator[TrivialNginx]:
    """A second nginx with the LB's worker count, TLS protocols and upstream keep-alive, on
    free ports, whose upstream answers at once: what the LB costs when the app costs nothing."""
    root = Path(tempfile.mkdtemp(prefix="eb-nginx-", dir="/tmp"))
    direct, proxy, upstream = free_port(), free_port(), free_port()
    tls = f"""
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:bench_tls:10m;"""
    temp = "".join(f"    {kind}_temp_path {root}/{kind};\n" for kind in TEMP_KINDS)
    (root / "nginx.conf").write_text(
        f"""
worker_processes 2;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
{temp}    access_log off;
    keepalive_requests 100000;
    upstream trivial {{ server 127.0.0.1:{upstream}; keepalive 16; }}
    server {{ listen 127.0.0.1:{upstream}; location / {{ return 200 "ok"; }} }}
    server {{
        listen 127.0.0.1:{direct} ssl;{tls}
        location / {{ return 200 "ok"; }}
    }}
    server {{
        listen 127.0.0.1:{proxy} ssl;{tls}
        location / {{
            proxy_pass http://trivial;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    )
    process = subprocess.Popen(
        [nginx.nginx_binary(), "-p", str(root), "-c", str(root / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        yield TrivialNginx(
            f"https://127.0.0.1:{direct}",
            f"https://127.0.0.1:{proxy}",
            f"http://127.0.0.1:{upstream}",
        )
    finally:
        stop_pid(process.pid)  # the master takes its workers along
        process.wait()
        shutil.rmtree(root, ignore_errors=True)


# --- queues ---------------------------------------------------------------------------------


def sqs_send_script(queue_url: str, batch: int = 1) -> str:
    """A wrk Lua ``request`` speaking SQS's JSON protocol straight to the queue server (moto
    does not check signatures; the credential scope names the service): its bare rate."""
    if batch == 1:
        target = "SendMessage"
        payload = {"QueueUrl": queue_url, "MessageBody": "x" * 300}
    else:
        target = "SendMessageBatch"
        payload = {
            "QueueUrl": queue_url,
            "Entries": [{"Id": str(i), "MessageBody": "x" * 300} for i in range(batch)],
        }
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"AmazonSQS.{target}",
        "Authorization": "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/sqs/aws4_request,"
        " SignedHeaders=host, Signature=0",
    }
    return wrk_request_script("POST", "/", body=json.dumps(payload), headers=headers)


def fill_queue(client: Callable[[], Any], queue_url: str, user_id: int, count: int) -> None:
    """``count`` valid order messages onto the queue, 10 a call from 4 threads."""

    def send(n: int) -> None:
        sqs = client()
        for start in range(0, n, 10):
            entries = []
            for i in range(min(10, n - start)):
                body = build_order_message(
                    user_id=user_id,
                    product_id=11,
                    product_name="Webcam",
                    sku="WC-606",
                    quantity=2,
                    total_price=Decimal("119.98"),
                    correlation_id="bench",
                )
                entries.append({"Id": str(i), "MessageBody": json.dumps(body)})
            sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)

    threads = 4
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, [count // threads + (i < count % threads) for i in range(threads)]))


def queue_depth(sqs: Any, queue_url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])
