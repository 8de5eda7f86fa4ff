"""Prometheus of an environment: its config, rules, dashboard and scrape targets, rendered
by pure functions; ``durable/prometheus.py`` writes the targets.

Targets come from file-based service discovery: the platform rewrites one JSON file per
owner (the durable layer, each colour) as services come and go, and Prometheus picks the
change up by itself; no reload, no restart. The rules and the console dashboard come from
``echobase.platform.monitoring``; rules are reread on SIGHUP, consoles on every request."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from echobase.platform.monitoring.console import TEMPLATE_NAME
from echobase.platform.monitoring.settings import MonitoringSettings, duration

ROUTE_PREFIX = "/prometheus"
# Exemplars (the trace_id the gateway and processor attach to their histograms) are kept
# only with this feature; /api/v1/query_exemplars answers from them.
FEATURES = ("exemplar-storage",)
# Where Debian puts the console library (prom.lib): its examples, unless an admin copied it
# to the package's configured directory or the upstream tarball's layout is used.
CONSOLE_LIBRARY_SOURCES = (
    Path("/etc/prometheus/console_libraries"),
    Path("/usr/share/prometheus/console_libraries"),
    Path("/usr/share/doc/prometheus/examples/console_libraries"),
)


@dataclass(frozen=True)
class PrometheusSpec:
    env: str
    home: Path
    host: str
    port: int
    external_url: str  # as users reach it: through the LB
    settings: MonitoringSettings = field(default_factory=MonitoringSettings)
    retention: str = "7d"
    # Trusted for https targets (the LB serves the platform's own metrics on its HTTPS port,
    # under its self-signed certificate); plain http targets ignore it.
    tls_ca_file: Path | None = None
    # As found on this machine by the runtime (a plain name: through PATH).
    binary: str = "prometheus"

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def targets_dir(self) -> Path:
        return self.home / "targets"

    @property
    def rules_file(self) -> Path:
        return self.home / "rules" / "echobase.rules.yml"

    @property
    def consoles_dir(self) -> Path:
        return self.home / "consoles"

    @property
    def console_libraries_dir(self) -> Path:
        return self.home / "console_libraries"

    @property
    def local_url(self) -> str:
        """Prometheus on its own loopback port (the platform's way in, no LB, no auth)."""
        return f"http://{self.host}:{self.port}{ROUTE_PREFIX}"

    @property
    def ready_url(self) -> str:
        return f"{self.local_url}/-/ready"

    @property
    def alerts_url(self) -> str:
        return f"{self.local_url}/api/v1/alerts"

    @property
    def dashboard_path(self) -> str:
        """Below the LB's origin, where the basic auth of /prometheus/ applies."""
        return f"{ROUTE_PREFIX}/consoles/{TEMPLATE_NAME}"


@dataclass(frozen=True)
class ScrapeTarget:
    address: str  # host:port
    metrics_path: str
    labels: Mapping[str, str]


def render_config(spec: PrometheusSpec) -> str:
    """JSON is YAML, and json.dumps quotes every path correctly."""
    job: dict[str, object] = {
        "job_name": "echobase",
        "file_sd_configs": [
            {"files": [str(spec.targets_dir / "*.json")], "refresh_interval": "5s"}
        ],
    }
    if spec.tls_ca_file is not None:
        job["tls_config"] = {"ca_file": str(spec.tls_ca_file)}
    config = {
        "global": {
            "scrape_interval": duration(spec.settings.scrape_interval_seconds),
            "evaluation_interval": duration(spec.settings.evaluation_interval_seconds),
            "external_labels": {"env": spec.env},
        },
        "rule_files": [str(spec.rules_file)],
        "scrape_configs": [job],
    }
    return json.dumps(config, indent=2) + "\n"


def render_targets(targets: Sequence[ScrapeTarget]) -> str:
    """A file_sd file; ``__metrics_path__`` lets each target keep its own path."""
    groups = [
        {
            "targets": [target.address],
            "labels": {"__metrics_path__": target.metrics_path, **target.labels},
        }
        for target in targets
    ]
    return json.dumps(groups, indent=2) + "\n"


def self_target(spec: PrometheusSpec) -> ScrapeTarget:
    return ScrapeTarget(
        f"{spec.host}:{spec.port}",
        f"{ROUTE_PREFIX}/metrics",
        {"env": spec.env, "layer": "durable", "service": "prometheus"},
    )


# Go collects garbage when the heap has grown by GOGC % since the last collection: 100 by
# default, so the process holds up to twice what it uses. At 50: 54 MiB after
# bench/memory.py's load, against 57-59 at 100 (issue 19's 1 GiB for every service).
RUNTIME_ENV: Mapping[str, str] = MappingProxyType({"GOGC": "50"})


def server_command(spec: PrometheusSpec) -> list[str]:
    return [
        spec.binary,
        f"--config.file={spec.config_file}",
        f"--storage.tsdb.path={spec.data_dir}",
        f"--storage.tsdb.retention.time={spec.retention}",
        f"--web.listen-address={spec.host}:{spec.port}",
        f"--web.external-url={spec.external_url}",
        f"--web.route-prefix={ROUTE_PREFIX}",
        f"--web.console.templates={spec.consoles_dir}",
        f"--web.console.libraries={spec.console_libraries_dir}",
        f"--enable-feature={','.join(FEATURES)}",
    ]
