"""What an environment's durable layer consists of, derived from the stack description:
where each server keeps its files, how it is configured and how supervisor runs it.
Everything here is pure; ``layer.py`` carries it out."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from echobase.platform import frontend
from echobase.platform.durable import credentials, nginx, prometheus
from echobase.platform.durable.mariadb import PRIVATE_FILES_ENV, MariaDBServer, launch_command
from echobase.platform.runtime.processes import python_executable
from echobase.platform.runtime.supervisor import Program
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

    # --- secrets store ------------------------------------------------------------------

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def secrets_url(self) -> str:
        return self.stack.url(self.service("secrets").port)

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
        )

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
            return Program(service.name, command, log_file=log, stopwaitsecs=60)
        raise ValueError(f"unknown durable service {role!r}")

    def programs(self) -> list[Program]:
        return [self.program(service.role) for service in self.services]
