"""What an environment's durable layer consists of, derived from the stack description:
where each server keeps its files, how it is configured and how supervisor runs it.
Everything here is pure; ``durable/layer.py`` carries it out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from echobase.app.core.names import DEFAULT_MCP_DB_SECRET, DEFAULT_MCP_KEY_SECRET, MCP_PATH
from echobase.platform.render import nginx, prometheus
from echobase.platform.render.machine import Machine
from echobase.platform.render.mariadb import PRIVATE_FILES_ENV, MariaDBServer, launch_command
from echobase.platform.render.names import EMULATOR_AWS_ENV, ENCRYPTION_KEY_SECRET
from echobase.platform.render.supervisor import Program
from echobase.platform.stack import COLOURS, Service, Stack, web_link


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
    # The machine it runs on; the defaults render for any (see Machine).
    machine: Machine = field(default_factory=Machine)

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
        service = self.service("mcp")
        return f"{self.stack.url(service.port)}{service.health_path}"

    def mcp_env(self) -> dict[str, str]:
        """Plain settings only: the API key and the database password are in the store."""
        service = self.service("mcp")
        return {
            **EMULATOR_AWS_ENV,
            **self.stack.service_settings,
            "ECHOBASE_HOST": self.stack.host,
            "ECHOBASE_PORT": str(service.port),
            "ECHOBASE_SECRETS_ENDPOINT_URL": self.secrets_url,
            "ECHOBASE_DB_SECRET_NAME": DEFAULT_MCP_DB_SECRET,
            "ECHOBASE_MCP_KEY_SECRET_NAME": DEFAULT_MCP_KEY_SECRET,
            "ECHOBASE_ENVIRONMENT": self.env,
            "ECHOBASE_TRACES_DIR": str(self.traces_dir),
        }

    # --- MariaDB ------------------------------------------------------------------------

    @property
    def database(self) -> MariaDBServer:
        return MariaDBServer(
            self.home / "mariadb",
            self.service("mariadb").port,
            self.stack.host,
            os_user=self.machine.user,
        )

    # --- load balancer -------------------------------------------------------------------

    @property
    def tls_dir(self) -> Path:
        return self.home / "nginx" / "tls"

    @property
    def load_balancer(self) -> nginx.LoadBalancerSpec:
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
            worker_user=self.machine.nginx_worker_user,
            web_roots={colour: web_link(self.stack.home, colour) for colour in COLOURS},
            binary=self.machine.nginx,
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
            tls_ca_file=self.load_balancer.cert_file,
            binary=self.machine.prometheus,
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
        return platform_metrics_target(self.load_balancer)

    # --- supervisor programs ------------------------------------------------------------

    def program(self, role: str) -> Program:
        service = self.service(role)
        log = self.stack.logs_dir / f"{service.name}.log"
        if role == "secrets":
            command = [
                self.machine.python,
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
            command = launch_command(
                self.database, self.secrets_url, ENCRYPTION_KEY_SECRET, self.machine.python
            )
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
            command = nginx.launch_command(self.load_balancer, self.machine.python)
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
            command = [self.machine.python, "-m", "echobase.app.mcp"]
            return Program(
                service.name, command, log_file=log, environment=self.mcp_env(), stopwaitsecs=20
            )
        raise ValueError(f"unknown durable service {role!r}")

    def programs(self) -> list[Program]:
        return [self.program(service.role) for service in self.services]
