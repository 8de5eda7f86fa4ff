"""What one colour runs for a release against one durable environment: its queue server,
order processor and API gateway, their settings, health checks and scrape targets.
Everything here is pure; ``ephemeral/colour.py`` carries it out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from echobase.app.queues import DEAD_LETTER_QUEUE, ORDER_QUEUE, QueueUrls
from echobase.platform.render.durable import DurablePlan
from echobase.platform.render.machine import Machine
from echobase.platform.render.names import EMULATOR_AWS_ENV
from echobase.platform.render.prometheus import ScrapeTarget
from echobase.platform.render.settings import platform_settings
from echobase.platform.render.supervisor import Program
from echobase.platform.stack import Service, Stack, check_colour

# moto's queue URLs are predictable, so settings can be rendered before the queue exists.
EMULATOR_ACCOUNT = "123456789012"


def gateway_workers(cpus: int) -> int:
    """A colour's gateway worker processes unless ECHOBASE_WORKERS says otherwise: one per
    two CPUs. The gateway shares the machine with its queue server, processor, MariaDB and
    nginx; on 2 CPUs one worker took 310 orders/s through the LB against 270 for two (p99
    179 against 220 ms) and 200 MiB less (bench/memory.py). Larger machines are unmeasured."""
    return max(1, cpus // 2)


def other_colour(colour: str) -> str:
    return "green" if check_colour(colour) == "blue" else "blue"


@dataclass(frozen=True)
class ColourPlan:
    stack: Stack
    colour: str
    env: str
    python: Path  # the release's interpreter
    release_id: str
    bundle: Path | None = None  # the release's browser app, which nginx serves for the colour
    machine: Machine = field(default_factory=Machine)

    @property
    def durable(self) -> DurablePlan:
        return DurablePlan(self.stack, self.env, self.machine)

    @property
    def home(self) -> Path:
        return self.stack.ephemeral_dir(self.colour)

    @property
    def services(self) -> list[Service]:
        return self.stack.colour_services(self.colour)

    def service(self, role: str) -> Service:
        return self.stack.colour_service(self.colour, role)

    @property
    def sqs_url(self) -> str:
        return self.stack.url(self.service("sqs").port)

    @property
    def queues(self) -> QueueUrls:
        base = f"{self.sqs_url}/{EMULATOR_ACCOUNT}"
        return QueueUrls(f"{base}/{ORDER_QUEUE}", f"{base}/{DEAD_LETTER_QUEUE}")

    @property
    def gateway_url(self) -> str:
        return self.stack.url(self.service("api-gateway").port)

    @property
    def processor_url(self) -> str:
        return self.stack.url(self.service("order-processor").port)

    @property
    def direct_url(self) -> str:
        """The LB's port that always reaches this colour."""
        return self.stack.url(self.stack.ports.of(self.env)[f"lb_{self.colour}"])

    @property
    def metrics_dir(self) -> Path:
        return self.home / "metrics"

    @property
    def queue_dir(self) -> Path:
        """The queue server's journal: the colour's queues outlive its processes. One per
        environment: a colour moved to another environment must never hand the first
        one's orders to the second one's database; they wait for its return instead."""
        return self.home / "sqs" / self.env

    def origins(self) -> list[str]:
        """Where the browser app is served from: the LB (both names) and the direct port."""
        https = self.stack.ports.of(self.env)["lb_https"]
        suffix = "" if https == 443 else f":{https}"
        return [
            f"https://{self.stack.host}{suffix}",
            f"https://localhost{suffix}",
            self.direct_url,
        ]

    def service_env(self, role: str) -> dict[str, str]:
        """Plain settings only: credentials come from the environment's secrets store."""
        env = {
            **EMULATOR_AWS_ENV,
            **self.stack.service_settings,
            **platform_settings(
                colour=self.colour,
                port=self.service(role).port,
                secrets_url=self.durable.secrets_url,
                sqs_url=self.sqs_url,
                queues=self.queues,
                host=self.stack.host,
                release=self.release_id,
                environment=self.env,
                traces_dir=str(self.durable.traces_dir),
            ),
        }
        if role == "api-gateway":
            env.setdefault("ECHOBASE_WORKERS", str(gateway_workers(self.machine.cpus)))
            env.setdefault("ECHOBASE_ALLOWED_ORIGINS", ",".join(self.origins()))
            env.setdefault("ECHOBASE_TRUSTED_PROXIES", self.stack.host)  # nginx
            env["ECHOBASE_MCP_URL"] = self.durable.mcp_url
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        return env

    def program(self, role: str) -> Program:
        service = self.service(role)
        log = self.stack.logs_dir / f"{service.name}.log"
        if role == "sqs":
            command = [
                self.machine.python,
                "-m",
                "echobase.platform.aws_emulator",
                "-H",
                self.stack.host,
                "-p",
                str(service.port),
                "--state-dir",
                str(self.queue_dir),
            ]
            return Program(service.name, command, log_file=log, environment=EMULATOR_AWS_ENV)
        module = {
            "api-gateway": "echobase.app.gateway",
            "order-processor": "echobase.app.processor",
        }
        return Program(
            service.name,
            [str(self.python), "-I", "-m", module[role]],  # -I: only the release's own code
            log_file=log,
            environment=self.service_env(role),
            # uvicorn drains in-flight requests; the processor finishes its batch.
            stopwaitsecs=40,
        )

    def programs(self) -> list[Program]:
        return [self.program(service.role) for service in self.services]

    def health_url(self, role: str) -> str:
        service = self.service(role)
        return f"{self.stack.url(service.port)}{service.health_path}"

    def scrape_targets(self) -> list[ScrapeTarget]:
        """Every service of the colour: the queue server's /metrics is its queues' depths."""
        labels: Mapping[str, str] = {"env": self.env, "layer": "ephemeral", "colour": self.colour}
        return [
            ScrapeTarget(
                f"{self.stack.host}:{self.service(role).port}",
                "/metrics",
                {**labels, "service": role, "release": self.release_id},
            )
            for role in ("sqs", "api-gateway", "order-processor")
        ]
