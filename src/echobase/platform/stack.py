"""The one description of an echobase system on a machine: its environments, colours,
services, ports and state directory. Every renderer (supervisor programs, nginx, Prometheus
targets) and every command reads ports and names from here, so none is written twice.

Ports resolve in three steps: the defaults below, plus ``ECHOBASE_PORT_OFFSET`` (so a second
system fits beside the first), then single ports set in ``echobase.toml`` (used as written).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from echobase.app.core.names import HEALTH_PATH
from echobase.platform.bluegreen.analysis_settings import AnalysisSettings, AnalysisSettingsError
from echobase.platform.monitoring.settings import (
    MonitoringSettings,
    MonitoringSettingsError,
)

Layer = Literal["durable", "ephemeral"]

ENVIRONMENTS = ("devlocal", "ci")
COLOURS = ("blue", "green")
# "mcp" serves recommendations over the Model Context Protocol; it needs MariaDB's tables.
DURABLE_SERVICES = ("secrets", "mariadb", "mcp", "nginx", "prometheus")
CONFIG_FILE = "echobase.toml"
HOST = "127.0.0.1"

# The seed's table. Prometheus is reached through the LB; its own port stays on loopback.
DEFAULT_DURABLE_PORTS: Mapping[str, Mapping[str, int]] = {
    "devlocal": {
        "mariadb": 3306,
        "secrets": 4566,
        "lb_http": 80,
        "lb_https": 443,
        "lb_blue": 8080,
        "lb_green": 8081,
        "prometheus": 9090,
        "mcp": 3300,
    },
    "ci": {
        "mariadb": 3307,
        "secrets": 4567,
        "lb_http": 180,
        "lb_https": 1443,
        "lb_blue": 8180,
        "lb_green": 8181,
        "prometheus": 9190,
        "mcp": 3310,
    },
}
DEFAULT_COLOUR_PORTS: Mapping[str, Mapping[str, int]] = {
    "blue": {"gateway": 3102, "sqs": 4667, "processor": 3202},
    "green": {"gateway": 3101, "sqs": 4666, "processor": 3201},
}


class StackConfigError(ValueError):
    """A bad ``echobase.toml``, offset or name; the message says which and where."""


# Under the state directory: one link per colour to its release's browser app, served by nginx.
WEB_DIR = "web"


def web_link(home: Path, colour: str) -> Path:
    """What nginx serves for ``colour``: a link to that colour's release bundle."""
    return home / WEB_DIR / colour


def default_home() -> Path:
    root = os.environ.get("ECHOBASE_HOME") or Path.home() / ".local" / "share" / "echobase"
    return Path(root).expanduser().resolve()


def check_env(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise StackConfigError(f"unknown environment {env!r}: choose one of {ENVIRONMENTS}")
    return env


def check_colour(colour: str) -> str:
    if colour not in COLOURS:
        raise StackConfigError(f"unknown colour {colour!r}: choose one of {COLOURS}")
    return colour


@dataclass(frozen=True)
class Ports:
    """Resolved ports of one system: per environment and per colour."""

    durable: Mapping[str, Mapping[str, int]]
    colours: Mapping[str, Mapping[str, int]]

    def of(self, owner: str) -> Mapping[str, int]:
        table = self.durable if owner in ENVIRONMENTS else self.colours
        if owner not in table:
            raise StackConfigError(f"unknown environment or colour {owner!r}")
        return table[owner]

    def all(self) -> Iterator[tuple[str, str, int]]:
        for table in (self.durable, self.colours):
            for owner, ports in table.items():
                for key, port in ports.items():
                    yield owner, key, port


def resolve_ports(
    offset: int = 0, overrides: Mapping[str, Mapping[str, int]] | None = None
) -> Ports:
    """Defaults + offset, then overrides as written. Pure; validates ranges and clashes."""
    overrides = overrides or {}
    tables: dict[str, dict[str, dict[str, int]]] = {"durable": {}, "colours": {}}
    for kind, defaults in (("durable", DEFAULT_DURABLE_PORTS), ("colours", DEFAULT_COLOUR_PORTS)):
        for owner, ports in defaults.items():
            resolved = {key: port + offset for key, port in ports.items()}
            for key, port in overrides.get(owner, {}).items():
                if key not in ports:
                    raise StackConfigError(
                        f"[ports.{owner}] has no port {key!r}: known are {sorted(ports)}"
                    )
                resolved[key] = port
            tables[kind][owner] = resolved
    unknown = set(overrides) - set(DEFAULT_DURABLE_PORTS) - set(DEFAULT_COLOUR_PORTS)
    if unknown:
        raise StackConfigError(f"[ports] sections must be environments or colours, not {unknown}")
    ports = Ports(tables["durable"], tables["colours"])
    seen: dict[int, str] = {}
    for owner, key, port in ports.all():
        if not 1 <= port <= 65535:
            raise StackConfigError(f"port {owner}.{key} = {port} is outside 1-65535")
        if port in seen:
            raise StackConfigError(f"port {port} is given to both {seen[port]} and {owner}.{key}")
        seen[port] = f"{owner}.{key}"
    return ports


@dataclass(frozen=True)
class FileConfig:
    """What ``echobase.toml`` files say, merged in order (later wins)."""

    port_offset: int | None
    ports: dict[str, dict[str, int]]
    # Plain ECHOBASE_* settings for the services (rate limits, workers, ...), and
    # OpenTelemetry's OTEL_* ones.
    service_settings: dict[str, str]
    # Prometheus's intervals and the alerts' thresholds ([monitoring]).
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    # The canary steps and what the new colour may do before it is rolled back ([analysis]).
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)


# Set by the platform from the stack itself: a file must not point a service elsewhere.
RESERVED_SETTINGS = frozenset(
    {
        "ECHOBASE_COLOUR",
        "ECHOBASE_RELEASE",
        "ECHOBASE_HOST",
        "ECHOBASE_PORT",
        "ECHOBASE_SECRETS_ENDPOINT_URL",
        "ECHOBASE_SQS_ENDPOINT_URL",
        "ECHOBASE_SQS_QUEUE_URL",
        "ECHOBASE_SQS_DLQ_URL",
        "ECHOBASE_DB_SECRET_NAME",
        "ECHOBASE_JWT_SECRET_NAME",
        "ECHOBASE_MCP_URL",
        "ECHOBASE_MCP_KEY_SECRET_NAME",
        "ECHOBASE_ENVIRONMENT",
        "ECHOBASE_TRACES_DIR",
    }
)


def read_config_files(paths: list[Path]) -> FileConfig:
    offset: int | None = None
    merged: dict[str, dict[str, int]] = {}
    settings: dict[str, str] = {}
    monitoring: dict[str, object] = {}
    watching = MonitoringSettings()
    analysis: dict[str, object] = {}
    judging = AnalysisSettings()
    for path in paths:
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise StackConfigError(f"{path}: {exc}") from None
        extra = set(data) - {"port_offset", "ports", "services", "monitoring", "analysis"}
        if extra:
            raise StackConfigError(f"{path}: unknown settings {sorted(extra)}")
        if "port_offset" in data:
            offset = _integer(data["port_offset"], f"{path}: port_offset")
        for owner, table in data.get("ports", {}).items():
            if not isinstance(table, dict):
                raise StackConfigError(f"{path}: [ports.{owner}] must be a table")
            for key, port in table.items():
                merged.setdefault(owner, {})[key] = _integer(port, f"{path}: ports.{owner}.{key}")
        for key, value in data.get("services", {}).items():
            # OTEL_*: OpenTelemetry's own settings (a collector's endpoint, the sampler).
            if not key.startswith(("ECHOBASE_", "OTEL_")) or key in RESERVED_SETTINGS:
                raise StackConfigError(
                    f"{path}: [services] takes ECHOBASE_* and OTEL_* service settings, not {key!r}"
                )
            if isinstance(value, bool | dict | list):
                raise StackConfigError(f"{path}: services.{key} must be a string or number")
            settings[key] = str(value)
        table = data.get("monitoring", {})
        if not isinstance(table, dict):
            raise StackConfigError(f"{path}: [monitoring] must be a table")
        monitoring.update(table)
        try:  # checked after each file, so the error names the file that broke them
            watching = MonitoringSettings.from_table(monitoring)
        except MonitoringSettingsError as exc:
            raise StackConfigError(f"{path}: {exc}") from None
        table = data.get("analysis", {})
        if not isinstance(table, dict):
            raise StackConfigError(f"{path}: [analysis] must be a table")
        analysis.update(table)
        try:
            judging = AnalysisSettings.from_table(analysis)
        except AnalysisSettingsError as exc:
            raise StackConfigError(f"{path}: {exc}") from None
    return FileConfig(offset, merged, settings, watching, judging)


def render_ports_toml(overrides: Mapping[str, Mapping[str, int]]) -> str:
    """An ``echobase.toml`` setting the given ports (read back by ``read_config_files``)."""
    lines = []
    for owner, ports in overrides.items():
        lines.append(f"[ports.{owner}]")
        lines += [f"{key} = {port}" for key, port in ports.items()]
    return "\n".join(lines) + "\n"


def render_config_toml(
    ports: Mapping[str, Mapping[str, int]],
    services: Mapping[str, str] | None = None,
    **tables: Mapping[str, object] | None,
) -> str:
    """An ``echobase.toml`` of ports, service settings and numeric tables (``monitoring``,
    ``analysis``), for a private system in a test or benchmark."""
    text = render_ports_toml(ports)
    if services:
        text += "[services]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in services.items())
    for name, table in tables.items():
        if table:
            text += f"[{name}]\n" + "".join(
                f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}\n"
                for k, v in table.items()
            )
    return text


def free_port_overrides(pick: Callable[[int], list[int]]) -> dict[str, dict[str, int]]:
    """Every port of a system from ``pick`` (n -> n distinct free ports): for a second system
    beside a running one, in tests and benchmarks."""
    tables = [
        (owner, list(ports))
        for defaults in (DEFAULT_DURABLE_PORTS, DEFAULT_COLOUR_PORTS)
        for owner, ports in defaults.items()
    ]
    chosen = iter(pick(sum(len(keys) for _, keys in tables)))
    return {owner: {key: next(chosen) for key in keys} for owner, keys in tables}


def _integer(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StackConfigError(f"{where} must be an integer")
    return value


# How each role shows it is healthy on its ``port``: an HTTP path answering 2xx (the AWS
# emulators' own page; Prometheus's readiness), or None for a TCP connect (MariaDB; nginx,
# whose TLS port is checked by its own routes). Every target's probes come from here.
HEALTH_CHECKS: Mapping[str, str | None] = {
    "secrets": "/moto-api/",
    "mariadb": None,
    "mcp": HEALTH_PATH,
    "nginx": None,
    "prometheus": "/-/ready",
    "sqs": "/moto-api/",
    "order-processor": HEALTH_PATH,
    "api-gateway": HEALTH_PATH,
}


@dataclass(frozen=True)
class Service:
    """One supervised process: which layer, whose (environment or colour), what it does."""

    layer: Layer
    owner: str  # "devlocal" | "ci" for durable, "blue" | "green" for ephemeral
    role: str  # "mariadb", "secrets", "nginx", "prometheus", "api-gateway", ...
    port: int  # the one its health check uses
    other_ports: tuple[int, ...] = ()

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, *self.other_ports)

    @property
    def health_path(self) -> str | None:
        """The HTTP path of its health check, or None: a TCP connect to ``port``."""
        return HEALTH_CHECKS[self.role]

    @property
    def name(self) -> str:
        if self.layer == "durable":
            return f"echobase-{self.owner}-durable-{self.role}"
        return f"echobase-{self.owner}-{self.role}"


@dataclass(frozen=True)
class Stack:
    """A whole system: a state directory and its ports."""

    home: Path
    ports: Ports
    host: str = HOST
    service_settings: Mapping[str, str] = field(default_factory=dict)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)

    @classmethod
    def load(
        cls, home: Path | None = None, offset: int | None = None, cwd: Path | None = None
    ) -> Stack:
        """The system of ``home``: ``./echobase.toml``, then the state directory's own file
        (one system's settings win over a project's), then the environment's offset."""
        home = (home or default_home()).expanduser().resolve()
        config = read_config_files([(cwd or Path.cwd()) / CONFIG_FILE, home / CONFIG_FILE])
        if offset is None:
            raw = os.environ.get("ECHOBASE_PORT_OFFSET", "").strip()
            try:
                offset = int(raw) if raw else config.port_offset or 0
            except ValueError:
                raise StackConfigError("ECHOBASE_PORT_OFFSET must be an integer") from None
        return cls(
            home,
            resolve_ports(offset, config.ports),
            HOST,
            config.service_settings,
            config.monitoring,
            config.analysis,
        )

    # --- state directory --------------------------------------------------------------

    def durable_dir(self, env: str) -> Path:
        return self.home / "durable" / check_env(env)

    def ephemeral_dir(self, colour: str) -> Path:
        return self.home / "ephemeral" / colour

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    # --- services -------------------------------------------------------------------

    def durable_services(self, env: str) -> list[Service]:
        """In start order; teardown stops them in reverse."""
        ports = self.ports.of(check_env(env))
        port_of = {
            "secrets": ports["secrets"],
            "mariadb": ports["mariadb"],
            "nginx": ports["lb_https"],
            "prometheus": ports["prometheus"],
            "mcp": ports["mcp"],
        }
        others = {"nginx": (ports["lb_http"], ports["lb_blue"], ports["lb_green"])}
        return [
            Service("durable", env, role, port_of[role], others.get(role, ()))
            for role in DURABLE_SERVICES
        ]

    def durable_service(self, env: str, role: str) -> Service:
        return next(s for s in self.durable_services(env) if s.role == role)

    def colour_services(self, colour: str) -> list[Service]:
        """In start order: the queue first, the gateway (which takes traffic) last."""
        ports = self.ports.of(check_colour(colour))
        return [
            Service("ephemeral", colour, "sqs", ports["sqs"]),
            Service("ephemeral", colour, "order-processor", ports["processor"]),
            Service("ephemeral", colour, "api-gateway", ports["gateway"]),
        ]

    def colour_service(self, colour: str, role: str) -> Service:
        return next(s for s in self.colour_services(colour) if s.role == role)

    def url(self, port: int, scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{port}"
