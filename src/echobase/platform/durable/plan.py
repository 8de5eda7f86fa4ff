"""What an environment's durable layer consists of, derived from the stack description:
where each server keeps its files, how it is configured and how supervisor runs it.
Everything here is pure; ``layer.py`` carries it out."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from echobase.app.core.names import MCP_PATH
from echobase.platform import frontend
from echobase.platform.durable import credentials, nginx, prometheus
from echobase.platform.durable.credentials import EMULATOR_AWS_ENV
from echobase.platform.durable.mariadb import PRIVATE_FILES_ENV, MariaDBServer, launch_command
from echobase.platform.render.supervisor import Program
from echobase.platform.runtime.processes import python_executable
from echobase.platform.stack import COLOURS, Service, Stack


def nginx_worker_user() -> str | None:
    """Who nginx's workers run as: the state directory's owner, like every other process of
    the system (MariaDB, the moto servers and the colours' services run as this user too).

    A master started by root would otherwise drop its workers to www-data or nobody, which
    cannot pass through a 0700 home such as /root to reach the app bundles; opening the state
    directory to them would loosen that home. An unprivileged master cannot change user at
    all, so nginx gets no ``user`` directive then (it would only warn)."""
    uid = os.geteuid()
    if uid != 0:
        return None
    # "user group": a lone name would make nginx look up a group of the same name.
    return f"{pwd.getpwuid(uid).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


def platform_metrics_target(lb: nginx.LoadBalancerSpec) -> prometheus.ScrapeTarget:
    """nginx's HTTPS port (where the live-colour record is), so the job scraping it must
    trust the LB's certificate: ``tls_config.ca_file`` = ``lb.cert_file`` (self-signed, a CA
    for itself, naming the stack's host)."""
    return prometheus.ScrapeTarget(
        f"{lb.host}:{lb.https_port}",
        nginx.PLATFORM_METRICS_PATH,
        {"env": lb.env, "layer": "durable", "service": "nginx", "__scheme__": "https"},
    )


@dataclass(frozen=True)
class DurablePlan:
    stack: Stack
    env: str

    @property
    def home(self) -> Path:
        return self.stack.durable_dir(self.env)

    def service(self, role: str) -> Service:
        return self.stack.durable_service(self.env, role)

    @property
    def services(self) -> list[Service]:
        return self.stack.durable_services(self.env)

    # --- telemetry ----------------------------------------------------------------------

    @property
    def traces_dir(self) -> Path:
        """Spans of every service run against this environment (its own and both colours'),
        as OTLP JSON lines, one file per process; what `echobase trace` reads."""
        return self.home / "telemetry" / "traces"

    # --- secrets store ------------------------------------------------------------------

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def secrets_url(self) -> str:
        return self.stack.url(self.service("secrets").port)

    # --- recommendations (MCP) ----------------------------------------------------------

    @property
    def mcp_url(self) -> str:
        """The MCP endpoint on the service's own port, for the colours' gateways."""
        return f"{self.stack.url(self.service('mcp').port)}{MCP_PATH}"

    @property
    def mcp_health_url(self) -> str:
        return f"{self.stack.url(self.service('mcp').port)}/health"

    def mcp_env(self) -> dict[str, str]:
        """Plain settings only: the API key and the database password are in the store."""
        service = self.service("mcp")
        return {
            **EMULATOR_AWS_ENV,
            **self.stack.service_settings,
            "ECHOBASE_HOST": self.stack.host,
            "ECHOBASE_PORT": str(service.port),
            "ECHOBASE_SECRETS_ENDPOINT_URL": self.secrets_url,
            "ECHOBASE_DB_SECRET_NAME": credentials.MCP_DATABASE,
            "ECHOBASE_MCP_KEY_SECRET_NAME": credentials.MCP_API_KEY,
            "ECHOBASE_ENVIRONMENT": self.env,
            "ECHOBASE_TRACES_DIR": str(self.traces_dir),
        }

    # --- MariaDB ------------------------------------------------------------------------

    @property
    def database(self) -> MariaDBServer:
        return MariaDBServer(self.home / "mariadb", self.service("mariadb").port, self.stack.host)

    # --- load balancer -------------------------------------------------------------------

    @property
    def tls_dir(self) -> Path:
        return self.home / "nginx" / "tls"

    def load_balancer(self, active: str | None) -> nginx.LoadBalancerSpec:
        ports = self.stack.ports.of(self.env)
        return nginx.LoadBalancerSpec(
            env=self.env,
            home=self.home / "nginx",
            host=self.stack.host,
            http_port=ports["lb_http"],
            https_port=ports["lb_https"],
            direct_ports={colour: ports[f"lb_{colour}"] for colour in COLOURS},
            upstreams={colour: self.stack.ports.of(colour)["gateway"] for colour in COLOURS},
            prometheus_port=ports["prometheus"],
            mcp_port=ports["mcp"],
            cert_file=self.tls_dir / "lb.crt",
            key_file=self.tls_dir / "lb.key",
            htpasswd_file=self.home / "nginx" / "htpasswd",
            active=active,
            worker_user=nginx_worker_user(),
            web_roots={colour: frontend.web_link(self.stack.home, colour) for colour in COLOURS},
        )

    @property
    def lb_url(self) -> str:
        return self.stack.url(self.stack.ports.of(self.env)["lb_https"], "https")

    # --- Prometheus -------------------------------------------------------------------

    @property
    def prometheus(self) -> prometheus.PrometheusSpec:
        return prometheus.PrometheusSpec(
            env=self.env,
            home=self.home / "prometheus",
            host=self.stack.host,
            port=self.service("prometheus").port,
            external_url=f"{self.lb_url}{prometheus.ROUTE_PREFIX}/",
            settings=self.stack.monitoring,
            tls_ca_file=self.load_balancer(None).cert_file,
        )

    def scrape_targets(self) -> list[prometheus.ScrapeTarget]:
        """The durable layer's own: Prometheus itself, the recommendations service, and the
        platform's metrics (live colour, deploy counters) that nginx serves."""
        mcp = self.service("mcp")
        return [
            prometheus.self_target(self.prometheus),
            prometheus.ScrapeTarget(
                f"{self.stack.host}:{mcp.port}",
                "/metrics",
                {"env": self.env, "layer": "durable", "service": mcp.role},
            ),
            self.platform_metrics_target(),
        ]

    def platform_metrics_target(self) -> prometheus.ScrapeTarget:
        return platform_metrics_target(self.load_balancer(None))

    # --- supervisor programs ------------------------------------------------------------

    def program(self, role: str) -> Program:
        service = self.service(role)
        log = self.stack.logs_dir / f"{service.name}.log"
        if role == "secrets":
            command = [
                python_executable(),
                "-m",
                "echobase.platform.durable.secrets_store",
                "--host",
                self.stack.host,
                "--port",
                str(service.port),
                "--state-dir",
                str(self.secrets_dir),
            ]
            return Program(service.name, command, log_file=log, stopwaitsecs=20)
        if role == "mariadb":
            command = launch_command(self.database, self.secrets_url, credentials.ENCRYPTION_KEY)
            # InnoDB must never be killed mid-shutdown: a long wait beats a crash recovery.
            return Program(
                service.name,
                command,
                log_file=log,
                environment=PRIVATE_FILES_ENV,
                stopwaitsecs=300,
                startsecs=2,
            )
        if role == "nginx":
            command = nginx.launch_command(self.load_balancer(None), python_executable())
            return Program(service.name, command, log_file=log, stopsignal="QUIT")
        if role == "prometheus":
            command = prometheus.server_command(self.prometheus)
            return Program(
                service.name,
                command,
                log_file=log,
                environment=prometheus.RUNTIME_ENV,
                stopwaitsecs=60,
            )
        if role == "mcp":
            # The platform's own interpreter: the durable layer outlives every release.
            command = [python_executable(), "-m", "echobase.app.mcp"]
            return Program(
                service.name, command, log_file=log, environment=self.mcp_env(), stopwaitsecs=20
            )
        raise ValueError(f"unknown durable service {role!r}")

    def programs(self) -> list[Program]:
        return [self.program(service.role) for service in self.services]
