"""Carrying out an environment's durable layer: setup, teardown and status.

Setup is ordered so that nothing is created from a secret the store has not kept: the store
first, then the secrets, then MariaDB, the schema, the load balancer and Prometheus. Each
step leaves running what already runs and rewrites only files whose content changed, so a
second setup changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import bcrypt

from echobase.platform.bluegreen import event_metrics
from echobase.platform.durable import credentials, mariadb, nginx, prometheus
from echobase.platform.durable.credentials import DurableSecrets
from echobase.platform.monitoring import console, rules
from echobase.platform.monitoring.alerts import FiringAlert, firing_alerts
from echobase.platform.render.durable import DurablePlan
from echobase.platform.render.prometheus import PrometheusSpec, render_config
from echobase.platform.runtime.files import private_dir, write_private_if_changed
from echobase.platform.runtime.machine import this_machine
from echobase.platform.runtime.migrations import MigrationToolError, run_migrate
from echobase.platform.runtime.orphans import Orphan
from echobase.platform.runtime.processes import python_executable
from echobase.platform.runtime.services import (
    ServiceFailed,
    ServiceRunner,
    http_answers,
    supervisor_for,
)
from echobase.platform.stack import COLOURS, Stack

Progress = Callable[[str], None]


class DurableError(RuntimeError):
    """Setup or teardown stopped; the message says what failed and what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    role: str
    state: str  # supervisor's: RUNNING, STOPPED, FATAL, ... or ABSENT
    pid: int | None
    port: int
    uptime_seconds: float | None
    healthy: bool
    detail: str
    rss_bytes: int | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class AlertsReport:
    """The firing alerts, or why they are not known (Prometheus down)."""

    alerts: list[FiringAlert] | None
    problem: str | None = None


def _quiet(_: str) -> None:
    return None


def attached_env_file(stack: Stack, colour: str) -> Path:
    """Written by a colour's deploy: which durable environment it talks to."""
    return stack.ephemeral_dir(colour) / "env"


class DurableLayer:
    def __init__(self, stack: Stack, env: str, progress: Progress = _quiet) -> None:
        self.plan = DurablePlan(stack, env, this_machine())
        self.stack = stack
        self.env = env
        self.progress = progress
        self.supervisor = supervisor_for(stack.home)
        self.runner = ServiceRunner(self.supervisor)

    # --- setup ------------------------------------------------------------------------

    def setup(self, repair_credentials: bool = False) -> DurableSecrets:
        os.umask(0o077)  # whatever this process or its children create stays private
        private_dir(self.stack.home)
        private_dir(self.plan.home)
        self.progress("starting the secrets store")
        self.start_secrets_store()

        self.progress("reading secrets (generating any that are missing)")
        server = self.plan.database
        data_exists = (server.datadir / "mysql").is_dir()
        try:
            secrets, _created = credentials.load_or_create(
                self.plan.secrets_url,
                self.env,
                self.stack.host,
                server.port,
                data_exists,
            )
        except credentials.SecretsStoreError as exc:
            raise DurableError(str(exc)) from None

        self.progress("initialising MariaDB" if not data_exists else "starting MariaDB")
        try:
            mariadb.prepare(server, secrets.encryption_key_hex)
        except mariadb.MariaDBError as exc:
            raise DurableError(str(exc)) from None
        self._run("mariadb", lambda: self._database_answers(server), timeout=120)

        self.progress("provisioning the database (users, grants)")
        self._provision(server, secrets, repair_credentials)

        self.progress("starting the recommendations service (MCP)")
        self._run("mcp", lambda: self._probe("mcp")[0], timeout=60)

        self.progress("starting the load balancer")
        self._setup_load_balancer(secrets)

        self.progress("starting Prometheus")
        self._setup_prometheus()

        # Healthy already; supervisor calls a program RUNNING once it has lived startsecs
        # (what guards against crash loops). Return when it agrees, so status says RUNNING.
        self.progress("confirming with supervisor")
        try:
            self.runner.wait_running([service.name for service in self.plan.services])
        except ServiceFailed as exc:
            raise DurableError(str(exc)) from None
        return secrets

    def start_secrets_store(self) -> None:
        private_dir(self.stack.home)
        self.supervisor.ensure_running(timeout=30)
        self._run("secrets", lambda: self._http_answers(f"{self.plan.secrets_url}/moto-api/"))

    def _provision(
        self, server: mariadb.MariaDBServer, secrets: DurableSecrets, repair: bool
    ) -> None:
        app = secrets.database
        mariadb.bootstrap(server, app, secrets.root_password)
        if repair:
            mariadb.run_admin(server, mariadb.repair_statements(app))
        if not _has_schema(server, app.dbname):
            # A database no release has migrated yet: created by this echobase's own
            # migration tool, in a process of its own (the platform's interpreter carries the
            # installed echobase, the code the first release is built from). Once a schema
            # exists, only a deploy moves it, with the release's own tool and the contract
            # check against the live release; setup never does, so a newer platform cannot
            # apply migrations a running release has not been checked against.
            self.progress("creating the schema")
            try:
                run_migrate(
                    python_executable(), "upgrade", server.socket, server.os_user, app.dbname
                )
            except MigrationToolError as exc:
                raise DurableError(str(exc)) from None
        # Table grants need the tables, which exist from here on.
        mariadb.run_admin(server, mariadb.read_only_statements(secrets.mcp_database))
        problem = mariadb.verify_app_login(app)
        if problem is not None:
            raise DurableError(
                f"the app user {app.username!r} cannot log in with the credentials stored in "
                f"{credentials.DATABASE!r} ({problem}). The secrets store is the source of "
                f"truth: run `echobase durable setup {self.env} --repair-credentials` to set "
                "the database user's password from it"
            )

    def _setup_load_balancer(self, secrets: DurableSecrets) -> None:
        current = nginx.current_routing(self.plan.load_balancer)
        spec = self.plan.load_balancer
        nginx.prepare(spec)
        # Before nginx serves it: the deploy counters, rebuilt from the history if lost.
        event_metrics.publish(self.plan.home, spec.platform_events_file)
        # State directories of earlier versions let www-data workers search through (0711);
        # the workers now run as the owner, so nobody else needs to enter them.
        for directory in (self.stack.home, self.plan.home.parent, self.plan.home):
            os.chmod(directory, 0o700)
        private_dir(self.plan.tls_dir)
        changed = write_private_if_changed(spec.cert_file, secrets.tls_cert_pem)
        changed |= write_private_if_changed(spec.key_file, secrets.tls_key_pem)
        if not _htpasswd_matches(
            spec.htpasswd_file, secrets.observability_user, secrets.observability_password
        ):
            line = nginx.htpasswd_line(secrets.observability_user, secrets.observability_password)
            nginx.install_htpasswd(spec, line)
        # The routing state before the config that reads it; a home of an earlier version
        # carries its live colour over from its config.
        changed |= nginx.install_routing(spec, current)
        name = self.plan.service("nginx").name
        running = self._is_running(name)
        try:
            nginx.apply_config(spec, reload=lambda: self._reload(name) if running else None)
        except nginx.LoadBalancerError as exc:
            raise DurableError(f"nginx config not applied: {exc}") from None
        if changed and running:
            self._reload(name)
        self._run("nginx", self._lb_answers)

    def _setup_prometheus(self) -> None:
        spec = self.plan.prometheus
        changed = write_prometheus_files(spec)
        prometheus.write_targets(spec, "durable", self.plan.scrape_targets())
        name = self.plan.service("prometheus").name
        if changed and self._is_running(name):
            self._reload(name)  # SIGHUP rereads the config and the rules
        self._run("prometheus", lambda: self._http_answers(spec.ready_url, ok=200), timeout=60)

    # --- running a service ---------------------------------------------------------------

    def start_service(self, role: str, timeout: float = 120) -> None:
        """Start one service under supervisor (a no-op when it runs) and wait for its
        health check: what setup does for each, without the steps around it."""
        self._run(role, lambda: self._probe(role)[0], timeout)

    def _run(self, role: str, healthy: Callable[[], bool], timeout: float = 30) -> None:
        try:
            self.runner.run(self.plan.program(role), healthy, timeout)
        except ServiceFailed as exc:
            raise DurableError(str(exc)) from None

    def _wait(self, name: str, healthy: Callable[[], bool], timeout: float) -> None:
        try:
            self.runner.wait(name, healthy, timeout)
        except ServiceFailed as exc:
            raise DurableError(str(exc)) from None

    def _is_running(self, name: str) -> bool:
        return self.runner.is_running(name)

    def _reload(self, name: str) -> None:
        self.supervisor.signal(name, "HUP")

    # --- health probes -------------------------------------------------------------------

    def _http_answers(self, url: str, ok: int = 0, context: ssl.SSLContext | None = None) -> bool:
        return http_answers(url, ok, context)

    def _database_answers(self, server: mariadb.MariaDBServer) -> bool:
        try:
            mariadb.admin_connection(server).close()
            return True
        except Exception:
            return False

    def tls_context(self) -> ssl.SSLContext:
        cert = self.plan.load_balancer.cert_file
        return ssl.create_default_context(cafile=str(cert))

    def _lb_answers(self) -> bool:
        return self.active() is not None

    def dashboard_url(self) -> str | None:
        """The console dashboard through the LB (basic auth), if it is installed."""
        spec = self.plan.prometheus
        if not (spec.consoles_dir / console.TEMPLATE_NAME).is_file():
            return None
        return f"{self.plan.lb_url}{spec.dashboard_path}"

    def firing_alerts(self, timeout: float = 2) -> AlertsReport:
        """What Prometheus says fires now, asked on its loopback port."""
        spec = self.plan.prometheus
        try:
            with urllib.request.urlopen(spec.alerts_url, timeout=timeout) as response:  # noqa: S310 - loopback
                return AlertsReport(firing_alerts(json.load(response)))
        except (OSError, ValueError, KeyError) as exc:
            reason = getattr(exc, "reason", None) or exc
            return AlertsReport(
                None, f"Prometheus of {self.env} does not answer on {spec.local_url}: {reason}"
            )

    def active(self) -> str | None:
        """The live colour as nginx serves it; None when nginx does not answer."""
        body = self.get("/.active-env")
        return None if body is None else body.strip()

    def get(self, path: str) -> str | None:
        """What the load balancer answers at ``path`` (its own endpoints); None when it
        does not answer."""
        try:
            with urllib.request.urlopen(  # noqa: S310 - loopback
                f"{self.plan.lb_url}{path}", timeout=2, context=self.tls_context()
            ) as response:
                return str(response.read().decode())
        except (OSError, ssl.SSLError, UnicodeDecodeError):
            return None

    # --- teardown ---------------------------------------------------------------------

    def attached_colours(self) -> list[str]:
        """Colours running against this environment."""
        if not self.supervisor.running():
            return []
        running = {
            info.name
            for info in self.supervisor.all_info()
            if info.state in ("RUNNING", "STARTING")
        }
        attached = []
        for colour in COLOURS:
            marker = attached_env_file(self.stack, colour)
            env = marker.read_text().strip() if marker.is_file() else None
            names = {service.name for service in self.stack.colour_services(colour)}
            if env == self.env and running & names:
                attached.append(colour)
        return attached

    def teardown(self, volumes: bool = False, force: bool = False) -> None:
        attached = self.attached_colours()
        if attached and not force:
            raise DurableError(
                f"colour(s) {', '.join(attached)} still run against {self.env}: stop them "
                f"with `echobase down`, or pass --force"
            )
        if self.supervisor.running():
            for service in reversed(self.plan.services):
                if self.supervisor.info(service.name) is not None:
                    self.progress(f"stopping {service.name}")
                    self.supervisor.stop(service.name)
                    if volumes:
                        self.supervisor.remove(service.name)
            if not any(
                info.state in ("RUNNING", "STARTING", "BACKOFF")
                for info in self.supervisor.all_info()
            ):
                self.progress("stopping supervisord (nothing else runs)")
                self.supervisor.shutdown(timeout=60)
        if volumes:
            self.progress(f"removing {self.plan.home}")
            shutil.rmtree(self.plan.home, ignore_errors=True)
            for service in self.plan.services:
                for log in self.stack.logs_dir.glob(f"{service.name}.log*"):
                    log.unlink(missing_ok=True)

    # --- status -------------------------------------------------------------------------

    def status(self) -> list[ServiceStatus]:
        up = self.supervisor.running()
        result = []
        for service in self.plan.services:
            info = self.supervisor.info(service.name) if up else None
            state = info.state if info else "ABSENT"
            healthy, detail = False, ""
            if state in ("RUNNING", "STARTING"):
                healthy, detail = self._probe(service.role)
            pid = info.pid if info and info.pid else None
            result.append(
                ServiceStatus(
                    name=service.name,
                    role=service.role,
                    state=state,
                    pid=pid,
                    port=service.port,
                    uptime_seconds=info.uptime if info and pid else None,
                    healthy=healthy,
                    detail=detail,
                    rss_bytes=tree_rss(pid) if pid else None,
                )
            )
        return result

    def _probe(self, role: str) -> tuple[bool, str]:
        if role == "secrets":
            return self._http_answers(f"{self.plan.secrets_url}/moto-api/"), ""
        if role == "mariadb":
            return self._database_answers(self.plan.database), ""
        if role == "nginx":
            active = self.active()
            return active is not None, f"live colour: {active}" if active else "no answer"
        if role == "mcp":
            return self._http_answers(self.plan.mcp_health_url, ok=200), ""
        ready = self._http_answers(self.plan.prometheus.ready_url, ok=200)
        return ready, "" if ready else "not ready"


def write_prometheus_files(spec: PrometheusSpec) -> bool:
    """Config, rules and the console dashboard; True when the config or the rules changed
    (a running Prometheus rereads those on SIGHUP, the consoles on every request). Without
    Debian's prom.lib there is no dashboard page (`durable setup` says so), only rules."""
    for directory in (spec.home, spec.data_dir, spec.rules_file.parent):
        private_dir(directory)
    changed = write_private_if_changed(spec.config_file, render_config(spec))
    changed |= write_private_if_changed(spec.rules_file, rules.render_rules(spec.settings))
    private_dir(spec.consoles_dir)
    private_dir(spec.console_libraries_dir)
    library = prometheus.debian_console_library()
    page = spec.consoles_dir / console.TEMPLATE_NAME
    if library is None:
        page.unlink(missing_ok=True)  # it would only show a template error
        return changed
    libraries = {
        console.DEBIAN_LIBRARY: library.read_text(),
        console.LIBRARY_NAME: console.render_library(),
    }
    for name, text in libraries.items():
        write_private_if_changed(spec.console_libraries_dir / name, text)
    write_private_if_changed(page, console.render_console(spec.env, COLOURS, spec.settings))
    return changed


def _htpasswd_matches(path: Path, user: str, password: str) -> bool:
    """A salted hash differs every time: compare by checking, so setup rewrites nothing."""
    try:
        stored_user, _, hashed = path.read_text().strip().partition(":")
    except OSError:
        return False
    try:
        return stored_user == user and bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def _has_schema(server: mariadb.MariaDBServer, dbname: str) -> bool:
    """Whether any migration ran in ``dbname``: alembic's version table exists."""
    conn = mariadb.admin_connection(server)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'alembic_version'",
                (dbname,),
            )
            row = cur.fetchone()
    finally:
        conn.close()
    return bool(row and row[0])


def tree_rss(pid: int) -> int:
    """Resident memory of a process and its descendants (nginx's workers, say)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            child, parent = int(stat.parent.name), int(fields[1])
            rss[child] = int(fields[21]) * 4096  # pages; 4 KiB on every Linux we target
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(child)
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo.extend(children.get(current, []))
    return total


def declared_groups(stack: Stack) -> dict[str, tuple[int, str]]:
    """nginx program name -> (the master's process group, the nginx binary), from the pid
    each environment's nginx launcher recorded: nginx overwrites its environment block with
    its process title, so its SUPERVISOR_* variables cannot be read back (see
    runtime.orphans)."""
    groups: dict[str, tuple[int, str]] = {}
    for env in stack.ports.durable:
        plan = DurablePlan(stack, env, this_machine())
        try:
            pid = int(plan.load_balancer.master_pid_file.read_text().strip())
            binary = os.path.realpath(nginx.nginx_binary())
        except (OSError, ValueError, nginx.LoadBalancerError):
            continue
        if pid > 1:
            groups[plan.service("nginx").name] = (pid, binary)
    return groups


def unsupervised(stack: Stack) -> list[Orphan]:
    """This state directory's programs that no running supervisord supervises: what a
    SIGKILLed supervisord leaves behind, still serving and holding its ports."""
    return supervisor_for(stack.home).orphans(declared_groups(stack))
