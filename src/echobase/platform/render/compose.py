"""The stack rendered for Docker Compose: one durable project per environment and one project
per colour, as files (relative path -> a YAML document as plain data, or text).

Every name, port and health check comes from the stack description. Containers listen on
the same port numbers they are published on, so a URL means the same inside and outside,
and every published port is the local table's (``stack.ports``), on the same loopback
address. Secrets never appear here: each one is a Compose ``secrets:`` entry naming a file
the user generates (``generate-secrets.sh``), or a secret NAME the services look up in the
store. Pure: the CLI (``echobase render compose``) writes what this returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echobase.app.core.names import (
    DEFAULT_DB_SECRET,
    DEFAULT_JWT_SECRET,
    DEFAULT_MCP_DB_SECRET,
    DEFAULT_MCP_KEY_SECRET,
    MCP_PATH,
    METRICS_PATH,
)
from echobase.app.queues import DEAD_LETTER_QUEUE, ORDER_QUEUE
from echobase.platform.render import mariadb, nginx, routing
from echobase.platform.render.names import (
    DEFAULT_MIGRATIONS_DB_SECRET,
    colour_project,
    colour_role_name,
    durable_project,
    durable_role_name,
    network_name,
)
from echobase.platform.stack import COLOURS, Service, Stack, check_colour, check_env

Document = dict[str, Any]
Files = dict[str, "Document | str"]

# Third-party images, pinned to full versions. A team should add each one's digest
# (image:tag@sha256:...) from its registry; none could be fetched where this was written.
IMAGES: Mapping[str, str] = {
    "mariadb": "mariadb:11.4.4",
    # Debian's build: it carries the njs module the routing script needs, and 1.27.3 is the
    # first open-source nginx that re-resolves upstream names (a colour may start later).
    "nginx": "nginx:1.27.3",
    # 2.x: Prometheus 3 dropped the console templates the local layer still serves.
    "prometheus": "prom/prometheus:v2.55.1",
    "otel-collector": "otel/opentelemetry-collector-contrib:0.116.1",
    "jaeger": "jaegertracing/all-in-one:1.64.0",
    "loki": "grafana/loki:3.3.2",
    "grafana": "grafana/grafana:11.4.0",
}
# moto's default account: its queue URLs are predictable, so settings render before queues.
MOTO_ACCOUNT = "123456789012"
# Ports inside the project's network only (not in the local table, never published).
OTLP_HTTP_PORT = 4318
OTLP_GRPC_PORT = 4317
COLLECTOR_METRICS_PORT = 8888
COLLECTOR_EXPORTER_PORT = 8889
LOKI_PORT = 3100
# The two web UIs the local table lacks, published on loopback at the upstream defaults
# moved by as much as the environment's Prometheus port moved from its own default.
GRAFANA_BASE_PORT = 3000
JAEGER_UI_BASE_PORT = 16686
PROMETHEUS_BASE_PORT = 9090
PROMETHEUS_PREFIX = "/prometheus"  # the LB routes /prometheus/ here, prefix intact
# The gateway trusts X-Forwarded-For from one exact address: the LB's, fixed in a subnet of
# the environment's own. Change both here if they clash with a network of the host's.
SUBNETS: Mapping[str, str] = {"devlocal": "172.31.250.0/24", "ci": "172.31.251.0/24"}
LB_HOST_NUMBER = 10
# Services whose image has no shell and no HTTP client, so Docker cannot probe them from the
# inside (the collector is built FROM scratch). Prometheus scrapes its own metrics instead.
UNPROBED = ("otel-collector",)
# What a container may use: the local layer's 1 GiB for everything, spread by role.
LIMITS: Mapping[str, tuple[str, str]] = {
    "secrets": ("0.50", "256M"),
    "mariadb": ("1.00", "512M"),
    "mcp": ("0.50", "256M"),
    "nginx": ("0.50", "128M"),
    "prometheus": ("0.50", "512M"),
    "otel-collector": ("0.50", "256M"),
    "jaeger": ("0.50", "512M"),
    "loki": ("0.50", "512M"),
    "grafana": ("0.50", "256M"),
    "sqs": ("0.50", "256M"),
    "order-processor": ("1.00", "384M"),
    "api-gateway": ("1.00", "512M"),
    "frontend": ("0.25", "64M"),
}
# The Compose secrets of the durable project: key -> (file under secrets/, what it holds).
DURABLE_SECRET_FILES: Mapping[str, tuple[str, str]] = {
    "mariadb-encryption-key": ("mariadb-encryption.key", "1;<64 hex digits>, the data key"),
    "mariadb-root-password": ("mariadb-root-password", "MariaDB's root password"),
    "database-app-password": ("database-app-password", "the services' database user"),
    "database-migrations-password": ("database-migrations-password", "the schema owner"),
    "database-mcp-password": ("database-mcp-password", "the recommendations' reader"),
    "lb-tls-certificate": ("lb-tls.crt", "the LB's certificate (PEM)"),
    "lb-tls-key": ("lb-tls.key", "the LB's private key (PEM)"),
    "lb-htpasswd": ("lb-htpasswd", "bcrypt htpasswd line for /prometheus/"),
    "grafana-admin-password": ("grafana-admin-password", "Grafana's admin password"),
}
DATABASE = "orders_db"
DATABASE_USERS: Mapping[str, tuple[str, str]] = {
    # secret file key -> (user, the secret NAME the store keeps its credentials under)
    "database-app-password": ("echobase_app", DEFAULT_DB_SECRET),
    "database-migrations-password": ("echobase_migrations", DEFAULT_MIGRATIONS_DB_SECRET),
    "database-mcp-password": ("echobase_mcp", DEFAULT_MCP_DB_SECRET),
}
MARIADB_KEY_FILE = "/run/secrets/mariadb-encryption-key"
LB_HOME = Path("/var/lib/echobase/lb")
WEB_PORT = 8080  # the frontend image's unprivileged nginx


class ComposeError(ValueError):
    """Inputs the rendering cannot honour; the message says which."""


@dataclass(frozen=True)
class ComposeInputs:
    env: str
    app_image: str  # the Dockerfile's "app" target, e.g. "echobase:0.1.0"
    frontend_image: str  # its "frontend" target
    rules_yaml: str  # Prometheus recording and alert rules (monitoring.rules)
    dashboard_json: str  # the Grafana dashboard (monitoring.grafana)
    live: str | None = None  # the colour the LB starts routing to
    # Settings every service takes as they are (the stack's [services] table).
    aws_env: Mapping[str, str] = field(default_factory=dict)


# --- names, addresses, ports --------------------------------------------------------------


def lb_address(env: str) -> str:
    network = SUBNETS[check_env(env)]
    return network.rsplit(".", 1)[0] + f".{LB_HOST_NUMBER}"


def ui_ports(stack: Stack, env: str) -> dict[str, int]:
    """Grafana's and Jaeger's published ports; ComposeError if one clashes with the table."""
    shift = stack.ports.of(env)["prometheus"] - PROMETHEUS_BASE_PORT
    ports = {"grafana": GRAFANA_BASE_PORT + shift, "jaeger": JAEGER_UI_BASE_PORT + shift}
    taken = {port: f"{owner}.{key}" for owner, key, port in stack.ports.all()}
    for role, port in ports.items():
        if not 1 <= port <= 65535:
            raise ComposeError(f"{role}'s port {port} is outside 1-65535")
        if port in taken:
            raise ComposeError(
                f"{role}'s port {port} (Prometheus's port moved by {shift}) is the table's "
                f"{taken[port]}: move [ports.{env}] prometheus"
            )
    return ports


def _url(host: str, port: int, path: str = "") -> str:
    return f"http://{host}:{port}{path}"


def secrets_url(stack: Stack, env: str) -> str:
    service = stack.durable_service(env, "secrets")
    return _url(service.name, service.port)


def collector_url(env: str) -> str:
    return _url(durable_role_name(env, "otel-collector"), OTLP_HTTP_PORT)


def origins(stack: Stack, env: str, colour: str) -> list[str]:
    """As ColourPlan.origins: the LB under both loopback names, and the colour's direct port."""
    ports = stack.ports.of(env)
    suffix = "" if ports["lb_https"] == 443 else f":{ports['lb_https']}"
    return [
        f"https://{stack.host}{suffix}",
        f"https://localhost{suffix}",
        _url(stack.host, ports[f"lb_{colour}"]),
    ]


def colour_env(
    stack: Stack, inputs: ComposeInputs, colour: str, role: str, release: str
) -> dict[str, str]:
    """ColourPlan.service_env with container names for hosts and OTLP to the collector."""
    service = stack.colour_service(colour, role)
    sqs = stack.colour_service(colour, "sqs")
    queues = _url(sqs.name, sqs.port, f"/{MOTO_ACCOUNT}")
    env = {
        **inputs.aws_env,
        **stack.service_settings,
        "ECHOBASE_COLOUR": colour,
        "ECHOBASE_RELEASE": release,
        "ECHOBASE_HOST": "0.0.0.0",  # noqa: S104 - inside the container's own network
        "ECHOBASE_PORT": str(service.port),
        "ECHOBASE_SECRETS_ENDPOINT_URL": secrets_url(stack, inputs.env),
        "ECHOBASE_SQS_ENDPOINT_URL": _url(sqs.name, sqs.port),
        "ECHOBASE_SQS_QUEUE_URL": f"{queues}/{ORDER_QUEUE}",
        "ECHOBASE_SQS_DLQ_URL": f"{queues}/{DEAD_LETTER_QUEUE}",
        "ECHOBASE_ENVIRONMENT": inputs.env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector_url(inputs.env),
    }
    if role == "api-gateway":
        mcp = stack.durable_service(inputs.env, "mcp")
        # One worker per container: scale with replicas, not processes sharing metrics.
        env.setdefault("ECHOBASE_WORKERS", "1")
        env.setdefault("ECHOBASE_ALLOWED_ORIGINS", ",".join(origins(stack, inputs.env, colour)))
        env.setdefault("ECHOBASE_TRUSTED_PROXIES", lb_address(inputs.env))
        env["ECHOBASE_MCP_URL"] = _url(mcp.name, mcp.port, MCP_PATH)
    return dict(sorted(env.items()))


def mcp_env(stack: Stack, inputs: ComposeInputs) -> dict[str, str]:
    service = stack.durable_service(inputs.env, "mcp")
    env = {
        **inputs.aws_env,
        **stack.service_settings,
        "ECHOBASE_HOST": "0.0.0.0",  # noqa: S104 - inside the container's own network
        "ECHOBASE_PORT": str(service.port),
        "ECHOBASE_SECRETS_ENDPOINT_URL": secrets_url(stack, inputs.env),
        "ECHOBASE_DB_SECRET_NAME": DEFAULT_MCP_DB_SECRET,
        "ECHOBASE_MCP_KEY_SECRET_NAME": DEFAULT_MCP_KEY_SECRET,
        "ECHOBASE_ENVIRONMENT": inputs.env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector_url(inputs.env),
    }
    return dict(sorted(env.items()))


# --- building blocks ----------------------------------------------------------------------


def _published(host: str, port: int) -> Document:
    return {"target": port, "published": str(port), "host_ip": host, "protocol": "tcp"}


def _http_probe(port: int, path: str) -> list[str]:
    code = (
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=2)"
    )
    return ["CMD", "python", "-I", "-c", code]


def _tcp_probe(port: int) -> list[str]:
    return ["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"]


def _wget_probe(port: int, path: str) -> list[str]:
    return ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}"]


def _healthcheck(test: list[str], start: str = "20s") -> Document:
    return {
        "test": test,
        "interval": "10s",
        "timeout": "3s",
        "retries": 3,
        "start_period": start,
    }


def _stack_probe(service: Service, prefix: str = "") -> list[str]:
    """The stack's own check of ``service``: its HTTP path, else a TCP connect."""
    if service.health_path is None:
        return _tcp_probe(service.port)
    return _http_probe(service.port, prefix + service.health_path)


def _base(role: str, name: str, image: str) -> Document:
    cpus, memory = LIMITS[role]
    return {
        "image": image,
        "container_name": name,
        "hostname": name,
        "restart": "unless-stopped",
        "deploy": {"resources": {"limits": {"cpus": cpus, "memory": memory}}},
        "networks": {"echobase": {}},
    }


def _unprobed() -> Document:
    return {"disable": True}


# --- the durable project ------------------------------------------------------------------


def load_balancer(stack: Stack, env: str) -> nginx.LoadBalancerSpec:
    """The Compose LB, rendered by the same code as this machine's: the same routes, the
    same njs routing and ``/.active-env``; only names and paths are the containers'."""
    ports = stack.ports.of(check_env(env))
    gateways = {colour: stack.colour_service(colour, "api-gateway") for colour in COLOURS}
    prometheus = stack.durable_service(env, "prometheus")
    mcp = stack.durable_service(env, "mcp")
    return nginx.LoadBalancerSpec(
        env=env,
        home=LB_HOME,
        host="0.0.0.0",  # noqa: S104 - the container's interfaces; published on loopback
        http_port=ports["lb_http"],
        https_port=ports["lb_https"],
        direct_ports={colour: ports[f"lb_{colour}"] for colour in COLOURS},
        upstreams={colour: gateways[colour].port for colour in COLOURS},
        upstream_hosts={colour: gateways[colour].name for colour in COLOURS},
        prometheus_port=prometheus.port,
        prometheus_host=prometheus.name,
        mcp_port=mcp.port,
        mcp_host=mcp.name,
        cert_file=Path("/run/secrets/lb-tls-certificate"),
        key_file=Path("/run/secrets/lb-tls-key"),
        htpasswd_file=Path("/run/secrets/lb-htpasswd"),
        worker_user="nginx",
        web_upstreams={
            colour: f"{colour_role_name(colour, 'frontend')}:{WEB_PORT}" for colour in COLOURS
        },
        # Docker's embedded DNS: names of containers that start after the LB resolve later.
        resolver="127.0.0.11",
    )


def mariadb_config(stack: Stack, env: str) -> str:
    """This machine's server settings (render/mariadb.py) over the image's own, less what
    the image decides itself (where data, socket, pid and log live, and which user runs
    it): the same buffers and the same encryption at rest, keyed by the Compose secret."""
    server = mariadb.MariaDBServer(
        Path("/var/lib/mysql"),
        stack.durable_service(env, "mariadb").port,
        "0.0.0.0",  # noqa: S104 - the container's interfaces; published on loopback
        os_user="mysql",
    )
    image_owned = ("datadir", "socket", "pid-file", "log-error", "user")
    lines = ["# Rendered by echobase render compose from the local server's settings."]
    for line in mariadb.render_config(server).splitlines():
        key = line.split("=", 1)[0].strip()
        if key in image_owned:
            continue
        if key == "file_key_management_filename":
            line = f"file_key_management_filename = {MARIADB_KEY_FILE}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def mariadb_init_script() -> str:
    """Run once by the image's entrypoint on an empty data directory: the three users, each
    with only what it needs, their passwords read from the Compose secrets."""
    app_user, _ = DATABASE_USERS["database-app-password"]
    migrations_user, _ = DATABASE_USERS["database-migrations-password"]
    mcp_user, _ = DATABASE_USERS["database-mcp-password"]
    return f"""#!/bin/bash
# Rendered by echobase render compose. The image's entrypoint sources this once, on an empty
# data directory; the passwords are read from /run/secrets then, never written here.
sql_string() {{ sed -e 's/\\\\/\\\\\\\\/g' -e "s/'/''/g" "$1" | tr -d '\\n'; }}
app=$(sql_string /run/secrets/database-app-password)
migrations=$(sql_string /run/secrets/database-migrations-password)
mcp=$(sql_string /run/secrets/database-mcp-password)
"${{mysql[@]}}" <<SQL
CREATE DATABASE IF NOT EXISTS \\`{DATABASE}\\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '{app_user}'@'%' IDENTIFIED BY '$app';
GRANT SELECT, INSERT, UPDATE, DELETE ON \\`{DATABASE}\\`.* TO '{app_user}'@'%';
CREATE USER IF NOT EXISTS '{migrations_user}'@'%' IDENTIFIED BY '$migrations';
GRANT ALL PRIVILEGES ON \\`{DATABASE}\\`.* TO '{migrations_user}'@'%';
CREATE USER IF NOT EXISTS '{mcp_user}'@'%' IDENTIFIED BY '$mcp' WITH MAX_USER_CONNECTIONS 20;
SQL
"""


def mcp_grants_sql() -> str:
    """After the first migrations (a table grant needs its table): the reader's two tables."""
    mcp_user, _ = DATABASE_USERS["database-mcp-password"]
    return "".join(
        f"GRANT SELECT ON `{DATABASE}`.`{table}` TO '{mcp_user}'@'%';\n"
        for table in ("orders", "products")
    )


def prometheus_config(stack: Stack, env: str) -> Document:
    """Scrape targets from the stack: the durable services and both colours (a colour that
    is not running is simply down), plus the collector's own and exported metrics."""
    prometheus = stack.durable_service(env, "prometheus")
    mcp = stack.durable_service(env, "mcp")
    groups: list[Document] = [
        {
            "targets": [f"{prometheus.name}:{prometheus.port}"],
            "labels": {
                "__metrics_path__": f"{PROMETHEUS_PREFIX}{METRICS_PATH}",
                "env": env,
                "layer": "durable",
                "service": "prometheus",
            },
        },
        {
            "targets": [f"{mcp.name}:{mcp.port}"],
            "labels": {"env": env, "layer": "durable", "service": mcp.role},
        },
    ]
    for colour in COLOURS:
        for role in ("sqs", "api-gateway", "order-processor"):
            service = stack.colour_service(colour, role)
            groups.append(
                {
                    "targets": [f"{service.name}:{service.port}"],
                    "labels": {
                        "env": env,
                        "layer": "ephemeral",
                        "colour": colour,
                        "service": role,
                    },
                }
            )
    collector = durable_role_name(env, "otel-collector")
    return {
        "global": {
            "scrape_interval": f"{stack.monitoring.scrape_interval_seconds:g}s",
            "evaluation_interval": f"{stack.monitoring.evaluation_interval_seconds:g}s",
            "external_labels": {"env": env},
        },
        "rule_files": ["/etc/prometheus/rules/echobase-rules.yml"],
        "scrape_configs": [
            {"job_name": "echobase", "metrics_path": METRICS_PATH, "static_configs": groups},
            {
                "job_name": "otel-collector",
                "static_configs": [
                    {
                        "targets": [
                            f"{collector}:{COLLECTOR_METRICS_PORT}",
                            f"{collector}:{COLLECTOR_EXPORTER_PORT}",
                        ],
                        "labels": {"env": env, "layer": "durable", "service": "otel-collector"},
                    }
                ],
            },
        ],
    }


def collector_config(env: str) -> Document:
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"},
                    "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"},
                }
            }
        },
        "processors": {"batch": {}},
        "exporters": {
            "otlp/jaeger": {
                "endpoint": f"{durable_role_name(env, 'jaeger')}:{OTLP_GRPC_PORT}",
                "tls": {"insecure": True},
            },
            # Loki 3 takes OTLP itself: no Loki-specific exporter.
            "otlphttp/loki": {"endpoint": _url(durable_role_name(env, "loki"), LOKI_PORT, "/otlp")},
            "prometheus": {"endpoint": f"0.0.0.0:{COLLECTOR_EXPORTER_PORT}"},
        },
        "service": {
            "telemetry": {"metrics": {"address": f"0.0.0.0:{COLLECTOR_METRICS_PORT}"}},
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["otlp/jaeger"],
                },
                "metrics": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["prometheus"],
                },
                "logs": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["otlphttp/loki"],
                },
            },
        },
    }


def loki_config() -> Document:
    """One process, filesystem storage: a laptop's Loki, not a cluster's."""
    return {
        "auth_enabled": False,
        "server": {"http_listen_port": LOKI_PORT},
        "common": {
            "path_prefix": "/loki",
            "replication_factor": 1,
            "ring": {"kvstore": {"store": "inmemory"}},
            "storage": {
                "filesystem": {"chunks_directory": "/loki/chunks", "rules_directory": "/loki/rules"}
            },
        },
        "schema_config": {
            "configs": [
                {
                    "from": "2024-01-01",
                    "store": "tsdb",
                    "object_store": "filesystem",
                    "schema": "v13",
                    "index": {"prefix": "index_", "period": "24h"},
                }
            ]
        },
        "limits_config": {"allow_structured_metadata": True},
    }


def grafana_datasources(stack: Stack, env: str) -> Document:
    prometheus = stack.durable_service(env, "prometheus")
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": _url(prometheus.name, prometheus.port, PROMETHEUS_PREFIX),
                "isDefault": True,
                "jsonData": {
                    "exemplarTraceIdDestinations": [{"name": "trace_id", "datasourceUid": "jaeger"}]
                },
            },
            {
                "name": "Jaeger",
                "uid": "jaeger",
                "type": "jaeger",
                "access": "proxy",
                "url": _url(durable_role_name(env, "jaeger"), JAEGER_UI_BASE_PORT),
            },
            {
                "name": "Loki",
                "uid": "loki",
                "type": "loki",
                "access": "proxy",
                "url": _url(durable_role_name(env, "loki"), LOKI_PORT),
            },
        ],
    }


def grafana_dashboards() -> Document:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "echobase",
                "type": "file",
                "disableDeletion": True,
                "options": {"path": "/var/lib/grafana/dashboards"},
            }
        ],
    }


def dashboard_for_provisioning(dashboard_json: str) -> str:
    """The shipped dashboard names its data source through an import input (for teams that
    import it by hand); provisioning has no inputs, so it is pointed at the provisioned one."""
    text = dashboard_json.replace("${DS_PROMETHEUS}", "prometheus")
    return json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def durable_document(stack: Stack, inputs: ComposeInputs) -> Document:
    env = inputs.env
    host = stack.host
    services: Document = {}

    def add(role: str, service: Document) -> None:
        services[durable_role_name(env, role)] = service

    secrets = stack.durable_service(env, "secrets")
    add(
        "secrets",
        {
            **_base("secrets", secrets.name, inputs.app_image),
            "command": [
                "echobase.platform.durable.secrets_store",
                "--host",
                "0.0.0.0",  # noqa: S104 - inside the project's network
                "--port",
                str(secrets.port),
                "--state-dir",
                "/var/lib/echobase/secrets",
            ],
            "environment": dict(inputs.aws_env),
            "ports": [_published(host, secrets.port)],
            "volumes": [_volume("secrets-store", "/var/lib/echobase/secrets")],
            "healthcheck": _healthcheck(_stack_probe(secrets)),
        },
    )
    mariadb = stack.durable_service(env, "mariadb")
    add(
        "mariadb",
        {
            **_base("mariadb", mariadb.name, IMAGES["mariadb"]),
            "environment": {
                "MARIADB_ROOT_PASSWORD_FILE": "/run/secrets/mariadb-root-password",
                "MARIADB_DATABASE": DATABASE,
            },
            "secrets": [
                "mariadb-encryption-key",
                "mariadb-root-password",
                "database-app-password",
                "database-migrations-password",
                "database-mcp-password",
            ],
            "ports": [_published(host, mariadb.port)],
            "volumes": [
                _volume("mariadb-data", "/var/lib/mysql"),
                _bind("./mariadb/echobase.cnf", "/etc/mysql/conf.d/echobase.cnf"),
                _bind("./mariadb/initdb", "/docker-entrypoint-initdb.d"),
            ],
            "healthcheck": _healthcheck(_stack_probe(mariadb), start="60s"),
            # InnoDB must finish its shutdown: a long wait beats a crash recovery.
            "stop_grace_period": "300s",
        },
    )
    mcp = stack.durable_service(env, "mcp")
    add(
        "mcp",
        {
            **_base("mcp", mcp.name, inputs.app_image),
            "command": ["echobase.app.mcp"],
            "environment": mcp_env(stack, inputs),
            "ports": [_published(host, mcp.port)],
            "healthcheck": _healthcheck(_stack_probe(mcp)),
            "depends_on": _healthy(env, "secrets", "mariadb"),
        },
    )
    nginx = stack.durable_service(env, "nginx")
    add(
        "nginx",
        {
            **_base("nginx", nginx.name, IMAGES["nginx"]),
            "command": [
                "nginx",
                "-p",
                f"{LB_HOME}/",
                "-c",
                f"{LB_HOME}/nginx.conf",
                "-e",
                f"{LB_HOME}/logs/error.log",
            ],
            "networks": {"echobase": {"ipv4_address": lb_address(env)}},
            "secrets": ["lb-tls-certificate", "lb-tls-key", "lb-htpasswd"],
            "ports": [_published(host, port) for port in nginx.ports],
            # A directory, not single files: a switch renames a new routing.json into place,
            # which a file bind mount would never show.
            "volumes": [_bind("./lb", str(LB_HOME))],
            "healthcheck": _healthcheck(_stack_probe(nginx)),
            "stop_signal": "SIGQUIT",
        },
    )
    prometheus = stack.durable_service(env, "prometheus")
    lb_https = stack.ports.of(env)["lb_https"]
    add(
        "prometheus",
        {
            **_base("prometheus", prometheus.name, IMAGES["prometheus"]),
            "command": [
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                "--storage.tsdb.retention.time=7d",
                f"--web.listen-address=0.0.0.0:{prometheus.port}",
                f"--web.external-url=https://{host}:{lb_https}{PROMETHEUS_PREFIX}/",
                f"--web.route-prefix={PROMETHEUS_PREFIX}",
                "--enable-feature=exemplar-storage",
            ],
            "environment": {"GOGC": "50"},
            "ports": [_published(host, prometheus.port)],
            "volumes": [
                _volume("prometheus-data", "/prometheus"),
                _bind("./prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml"),
                _bind("./prometheus/rules", "/etc/prometheus/rules"),
            ],
            "healthcheck": _healthcheck(
                _wget_probe(prometheus.port, PROMETHEUS_PREFIX + str(prometheus.health_path))
            ),
        },
    )
    add(
        "otel-collector",
        {
            **_base(
                "otel-collector",
                durable_role_name(env, "otel-collector"),
                IMAGES["otel-collector"],
            ),
            "command": ["--config=/etc/otelcol-contrib/config.yaml"],
            "volumes": [_bind("./otel-collector/config.yaml", "/etc/otelcol-contrib/config.yaml")],
            "healthcheck": _unprobed(),
            "depends_on": _started(env, "jaeger", "loki"),
        },
    )
    ui = ui_ports(stack, env)
    add(
        "jaeger",
        {
            **_base("jaeger", durable_role_name(env, "jaeger"), IMAGES["jaeger"]),
            "environment": {"COLLECTOR_OTLP_ENABLED": "true"},
            "ports": [
                {
                    "target": JAEGER_UI_BASE_PORT,
                    "published": str(ui["jaeger"]),
                    "host_ip": host,
                    "protocol": "tcp",
                }
            ],
            "healthcheck": _healthcheck(_wget_probe(JAEGER_UI_BASE_PORT, "/")),
        },
    )
    add(
        "loki",
        {
            **_base("loki", durable_role_name(env, "loki"), IMAGES["loki"]),
            "command": ["-config.file=/etc/loki/echobase.yaml"],
            "volumes": [
                _volume("loki-data", "/loki"),
                _bind("./loki/loki.yaml", "/etc/loki/echobase.yaml"),
            ],
            "healthcheck": _healthcheck(_wget_probe(LOKI_PORT, "/ready"), start="30s"),
        },
    )
    add(
        "grafana",
        {
            **_base("grafana", durable_role_name(env, "grafana"), IMAGES["grafana"]),
            "environment": {
                "GF_SECURITY_ADMIN_PASSWORD__FILE": "/run/secrets/grafana-admin-password",
                "GF_USERS_ALLOW_SIGN_UP": "false",
                "GF_ANALYTICS_REPORTING_ENABLED": "false",
            },
            "secrets": ["grafana-admin-password"],
            "ports": [
                {
                    "target": GRAFANA_BASE_PORT,
                    "published": str(ui["grafana"]),
                    "host_ip": host,
                    "protocol": "tcp",
                }
            ],
            "volumes": [
                _volume("grafana-data", "/var/lib/grafana"),
                _bind("./grafana/provisioning", "/etc/grafana/provisioning"),
                _bind("./grafana/dashboards", "/var/lib/grafana/dashboards"),
            ],
            "healthcheck": _healthcheck(_wget_probe(GRAFANA_BASE_PORT, "/api/health")),
            "depends_on": _started(env, "prometheus", "jaeger", "loki"),
        },
    )
    return {
        "name": durable_project(env),
        "services": services,
        "networks": {
            "echobase": {
                # Created here, with a fixed name: each colour's project joins it as external.
                "name": network_name(env),
                "driver": "bridge",
                "ipam": {"config": [{"subnet": SUBNETS[env]}]},
            }
        },
        "volumes": {
            key: {"name": f"{durable_project(env)}-{key}"}
            for key in (
                "secrets-store",
                "mariadb-data",
                "prometheus-data",
                "loki-data",
                "grafana-data",
            )
        },
        "secrets": {
            key: {"file": f"./secrets/{file_name}"}
            for key, (file_name, _) in DURABLE_SECRET_FILES.items()
        },
    }


def _volume(key: str, target: str, read_only: bool = False) -> Document:
    volume: Document = {"type": "volume", "source": key, "target": target}
    if read_only:
        volume["read_only"] = True
    return volume


def _bind(source: str, target: str) -> Document:
    return {"type": "bind", "source": source, "target": target, "read_only": True}


def _healthy(env: str, *roles: str) -> Document:
    return {durable_role_name(env, role): {"condition": "service_healthy"} for role in roles}


def _started(env: str, *roles: str) -> Document:
    return {durable_role_name(env, role): {"condition": "service_started"} for role in roles}


# --- a colour's project -------------------------------------------------------------------


def colour_project_document(
    stack: Stack, inputs: ComposeInputs, colour: str, release: str
) -> Document:
    check_colour(colour)
    host = stack.host
    services: Document = {}
    sqs = stack.colour_service(colour, "sqs")
    services[sqs.name] = {
        **_base("sqs", sqs.name, inputs.app_image),
        "command": [
            "echobase.platform.aws_emulator",
            "-H",
            "0.0.0.0",  # noqa: S104 - inside the project's network
            "-p",
            str(sqs.port),
            "--state-dir",
            f"/var/lib/echobase/sqs/{inputs.env}",
        ],
        "environment": dict(inputs.aws_env),
        "ports": [_published(host, sqs.port)],
        "volumes": [_volume("sqs-journal", "/var/lib/echobase/sqs")],
        "healthcheck": _healthcheck(_stack_probe(sqs)),
    }
    migrate = colour_role_name(colour, "migrate")
    services[migrate] = {
        **_base("order-processor", migrate, inputs.app_image),
        "command": [
            "echobase.app.db.migrate",
            "upgrade",
            "--secret",
            DEFAULT_MIGRATIONS_DB_SECRET,
        ],
        "environment": {
            **inputs.aws_env,
            "ECHOBASE_SECRETS_ENDPOINT_URL": secrets_url(stack, inputs.env),
        },
        # A one-shot job: done when it exits 0; the services wait for that.
        "restart": "no",
        "healthcheck": _unprobed(),
    }
    for role in ("order-processor", "api-gateway"):
        service = stack.colour_service(colour, role)
        module = {
            "order-processor": "echobase.app.processor",
            "api-gateway": "echobase.app.gateway",
        }
        services[service.name] = {
            **_base(role, service.name, inputs.app_image),
            "command": [module[role]],
            "environment": colour_env(stack, inputs, colour, role, release),
            "ports": [_published(host, service.port)],
            "healthcheck": _healthcheck(_stack_probe(service)),
            "depends_on": {
                sqs.name: {"condition": "service_healthy"},
                migrate: {"condition": "service_completed_successfully"},
            },
            # uvicorn drains in-flight requests; the processor finishes its batch.
            "stop_grace_period": "40s",
        }
    frontend = colour_role_name(colour, "frontend")
    services[frontend] = {
        **_base("frontend", frontend, inputs.frontend_image),
        "healthcheck": _healthcheck(_wget_probe(WEB_PORT, "/"), start="5s"),
        "read_only": True,
        "tmpfs": ["/tmp"],  # noqa: S108 - nginx-unprivileged's pid and temp files
    }
    return {
        "name": colour_project(colour),
        "services": services,
        "networks": {"echobase": {"name": network_name(inputs.env), "external": True}},
        "volumes": {"sqs-journal": {"name": f"{colour_project(colour)}-sqs-journal"}},
    }


def release_of(image: str) -> str:
    """The release a container runs, as the services report it: the image's tag."""
    name = image.rsplit("/", 1)[-1]
    return name.split("@", 1)[0].split(":", 1)[1] if ":" in name.split("@", 1)[0] else "latest"


# --- everything ---------------------------------------------------------------------------


def render(stack: Stack, inputs: ComposeInputs) -> Files:
    """Every file of the layout, by path relative to the output directory; sorted, so the
    same inputs always give the same files in the same order."""
    env = check_env(inputs.env)
    if inputs.live is not None:
        check_colour(inputs.live)
    for image in (inputs.app_image, inputs.frontend_image):
        if not image or image.endswith(":latest") or any(c.isspace() for c in image):
            raise ComposeError(f"image {image!r}: give a fixed reference (name:version)")
    release = release_of(inputs.app_image)
    scripts = secret_scripts(stack, env)
    files: Files = {
        "durable/compose.yaml": durable_document(stack, inputs),
        "durable/mariadb/echobase.cnf": mariadb_config(stack, env),
        "durable/mariadb/initdb/10-echobase-users.sh": mariadb_init_script(),
        "durable/mariadb/grant-mcp-reader.sql": mcp_grants_sql(),
        "durable/lb/nginx.conf": nginx.render_config(load_balancer(stack, env)),
        "durable/lb/routing.js": routing.render_script(routing.RoutingFiles(LB_HOME)),
        "durable/lb/routing.json": routing.state_text(inputs.live),
        "durable/lb/routing.last-good.json": routing.state_text(inputs.live),
        "durable/lb/logs/README": "nginx's logs, written by its container.\n",
        "durable/prometheus/prometheus.yml": prometheus_config(stack, env),
        "durable/prometheus/rules/echobase-rules.yml": inputs.rules_yaml,
        "durable/otel-collector/config.yaml": collector_config(env),
        "durable/loki/loki.yaml": loki_config(),
        "durable/grafana/provisioning/datasources/echobase.yaml": grafana_datasources(stack, env),
        "durable/grafana/provisioning/dashboards/echobase.yaml": grafana_dashboards(),
        "durable/grafana/dashboards/echobase.json": dashboard_for_provisioning(
            inputs.dashboard_json
        ),
        "durable/generate-secrets.sh": scripts["generate"],
        "durable/seed-secrets.sh": scripts["seed"],
        "README.md": readme(stack, inputs),
    }
    for colour in COLOURS:
        files[f"{colour}/compose.yaml"] = colour_project_document(stack, inputs, colour, release)
    return dict(sorted(files.items()))


def secret_scripts(stack: Stack, env: str) -> dict[str, str]:
    """Shell the user runs: one makes the secret files (never rendered), one stores what the
    services read in the project's Secrets Manager emulator, by name."""
    mariadb = stack.durable_service(env, "mariadb")
    secrets = stack.durable_service(env, "secrets")
    generate = [
        "#!/bin/sh",
        "# Makes ./secrets/* once (kept if present). Rendered by echobase render compose;",
        "# the files it writes are secrets: keep them out of version control.",
        "set -eu",
        'cd "$(dirname "$0")"',
        "umask 077",
        "mkdir -p secrets",
        'new() { [ -s "secrets/$1" ] || { shift; "$@"; }; }',
        "password() { openssl rand -base64 32 | tr -d '\\n/+=' > \"secrets/$1\"; }",
        "new mariadb-encryption.key sh -c "
        '\'printf "1;%s\\n" "$(openssl rand -hex 32)" > secrets/mariadb-encryption.key\'',
    ]
    for key in (
        "mariadb-root-password",
        "database-app-password",
        "database-migrations-password",
        "database-mcp-password",
        "grafana-admin-password",
    ):
        generate.append(
            f"new {DURABLE_SECRET_FILES[key][0]} password {DURABLE_SECRET_FILES[key][0]}"
        )
    generate += [
        "new lb-tls.key openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\",
        "    -days 397 -subj '/CN=echobase load balancer' \\",
        "    -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' \\",
        "    -keyout secrets/lb-tls.key -out secrets/lb-tls.crt",
        "# A bcrypt hash, not the password (which goes to secrets/observability-password):",
        "# nginx's workers read this file, so it may be world-readable.",
        "new observability-password password observability-password",
        'new lb-htpasswd sh -c \'printf "echobase-observer:%s\\n" "$(openssl passwd -6 \\',
        "    -stdin < secrets/observability-password)\" > secrets/lb-htpasswd'",
        "chmod 0644 secrets/lb-htpasswd secrets/lb-tls.crt",
        "openssl rand -base64 48 | tr -d '\\n' > secrets/.jwt.tmp && "
        "new jwt-key mv secrets/.jwt.tmp secrets/jwt-key; rm -f secrets/.jwt.tmp",
        "openssl rand -base64 32 | tr -d '\\n/+=' > secrets/.mcp.tmp && "
        "new mcp-api-key mv secrets/.mcp.tmp secrets/mcp-api-key; rm -f secrets/.mcp.tmp",
        "ls -l secrets",
    ]
    aws = (
        f"aws --endpoint-url http://{stack.host}:{secrets.port} --region us-east-1 "
        "secretsmanager create-secret"
    )
    seed = [
        "#!/bin/sh",
        "# Stores the services' secrets in the durable project's Secrets Manager emulator,",
        "# from ./secrets (generate-secrets.sh). Run once, after `up`; needs the aws CLI.",
        "# Values travel in files (file://), never on a command line. Rendered by echobase.",
        "set -eu",
        'cd "$(dirname "$0")"',
        "umask 077",
        "export AWS_ACCESS_KEY_ID=echobase-local AWS_SECRET_ACCESS_KEY=echobase-local",
        "tmp=$(mktemp -d); trap 'rm -rf \"$tmp\"' EXIT",
        "credentials() {  # user, password file, secret name",
        '    printf \'{"username": "%s", "password": "%s", "host": "%s", '
        f'"port": {mariadb.port}, "dbname": "{DATABASE}"}}\' \\',
        f'        "$1" "$(cat "secrets/$2")" "{mariadb.name}" > "$tmp/value"',
        f'    {aws} --name "$3" --secret-string "file://$tmp/value" >/dev/null',
        "}",
    ]
    for key, (user, name) in DATABASE_USERS.items():
        seed.append(f"credentials {user} {DURABLE_SECRET_FILES[key][0]} {name}")
    seed += [
        f"{aws} --name {DEFAULT_JWT_SECRET} --secret-string file://secrets/jwt-key >/dev/null",
        f"{aws} --name {DEFAULT_MCP_KEY_SECRET} --secret-string file://secrets/mcp-api-key "
        ">/dev/null",
        "echo stored: "
        + " ".join(
            [*(n for _, n in DATABASE_USERS.values()), DEFAULT_JWT_SECRET, DEFAULT_MCP_KEY_SECRET]
        ),
    ]
    return {"generate": "\n".join(generate) + "\n", "seed": "\n".join(seed) + "\n"}


def readme(stack: Stack, inputs: ComposeInputs) -> str:
    env = inputs.env
    ports = stack.ports.of(env)
    ui = ui_ports(stack, env)
    https = ports["lb_https"]
    lines = [
        f"# echobase on Docker Compose: environment `{env}`",
        "",
        "Rendered by `echobase render compose`; render again rather than edit. Build the two",
        "images first (repository root): `docker build --target app -t "
        f"{inputs.app_image} .` and `docker build --target frontend -t {inputs.frontend_image} .`",
        "",
        "## First start",
        "",
        "```bash",
        "sh durable/generate-secrets.sh        # ./durable/secrets/*: never commit them",
        f"docker compose -p {durable_project(env)} -f durable/compose.yaml up -d",
        "sh durable/seed-secrets.sh            # the services' secrets into the store",
        f"docker compose -p {colour_project('blue')} -f blue/compose.yaml up -d",
        f"docker compose -p {colour_project('green')} -f green/compose.yaml up -d",
        "# after blue's migrations ran once: the recommendations' reader gets its two tables",
        f"docker compose -p {durable_project(env)} -f durable/compose.yaml exec -T "
        f"{durable_role_name(env, 'mariadb')} \\",
        '    sh -c \'mariadb -uroot -p"$(cat /run/secrets/mariadb-root-password)" '
        f"-P{ports['mariadb']}' < durable/mariadb/grant-mcp-reader.sql",
        "```",
        "",
        f"The durable project creates the network `{network_name(env)}`; each colour joins it",
        "as external, so start the durable project first. Its services reach each other and",
        "the colours by container name.",
        "",
        "## Switching",
        "",
        "nginx reads `durable/lb/routing.json` on every request (its directory is mounted,",
        "so a file renamed into place is seen at once; nothing reloads). `/.active-env`",
        "answers the colour in it:",
        "",
        "```bash",
        "cd durable/lb",
        'echo \'{"live": "green"}\' > routing.json.new && cp routing.json.new '
        "routing.last-good.json.new \\",
        "  && mv routing.json.new routing.json && mv routing.last-good.json.new "
        "routing.last-good.json",
        f"curl -sk https://{stack.host}:{https}/.active-env   # green",
        "```",
        "",
        "## Where things are",
        "",
        "| what | address |",
        "| --- | --- |",
        f"| the app (LB) | https://{stack.host}:{https} (http {ports['lb_http']} redirects) |",
        *(
            f"| {colour}, live or not | http://{stack.host}:{ports[f'lb_{colour}']} |"
            for colour in COLOURS
        ),
        f"| Prometheus | https://{stack.host}:{https}{PROMETHEUS_PREFIX}/ (basic auth) |",
        f"| Grafana | http://{stack.host}:{ui['grafana']} (user admin) |",
        f"| Jaeger | http://{stack.host}:{ui['jaeger']} |",
        "",
        "Every published port is bound to loopback and is the one `echobase up` uses here,",
        "so stop the local layer first (`echobase down --all`). The OpenTelemetry collector's",
        "image has no shell, so Docker cannot probe it; Prometheus scrapes its metrics.",
        "",
        "## Stopping",
        "",
        "```bash",
        f"docker compose -p {colour_project('blue')} -f blue/compose.yaml down",
        f"docker compose -p {colour_project('green')} -f green/compose.yaml down",
        f"docker compose -p {durable_project(env)} -f durable/compose.yaml down   # data kept",
        "```",
    ]
    return "\n".join(lines) + "\n"
