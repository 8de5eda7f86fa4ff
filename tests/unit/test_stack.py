"""The stack description: ports, offsets, echobase.toml, names; and the pure renderers fed by
it (Prometheus config and targets, supervisor programs of the durable layer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from echobase.platform.durable.credentials import SECRET_NAMES, DurableSecrets, generate
from echobase.platform.render import prometheus
from echobase.platform.render.durable import DurablePlan
from echobase.platform.render.ephemeral import ColourPlan
from echobase.platform.stack import (
    DEFAULT_DURABLE_PORTS,
    Stack,
    StackConfigError,
    resolve_ports,
)


def test_defaults_are_the_seed_table():
    ports = resolve_ports()
    assert dict(ports.of("devlocal")) == {
        "mariadb": 3306,
        "secrets": 4566,
        "lb_http": 80,
        "lb_https": 443,
        "lb_blue": 8080,
        "lb_green": 8081,
        "prometheus": 9090,
        "mcp": 3300,
    }
    assert ports.of("ci")["lb_https"] == 1443
    assert ports.of("ci")["mcp"] == 3310
    assert ports.of("ci")["mariadb"] == 3307
    assert dict(ports.of("blue")) == {"gateway": 3102, "sqs": 4667, "processor": 3202}
    assert dict(ports.of("green")) == {"gateway": 3101, "sqs": 4666, "processor": 3201}


def test_offset_moves_every_default_and_overrides_are_taken_as_written():
    ports = resolve_ports(10000, {"devlocal": {"lb_https": 8443}})
    assert ports.of("devlocal")["mariadb"] == 13306
    assert ports.of("blue")["gateway"] == 13102
    assert ports.of("devlocal")["lb_https"] == 8443
    every = [port for _, _, port in resolve_ports(5).all()]
    defaults = [port for _, _, port in resolve_ports().all()]
    assert every == [port + 5 for port in defaults]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"devlocal": {"nope": 1}}, "has no port 'nope'"),
        ({"staging": {"mariadb": 1}}, "environments or colours"),
        ({"devlocal": {"mariadb": 70000}}, "outside 1-65535"),
        ({"ci": {"mariadb": 3306}}, "given to both devlocal.mariadb and ci.mariadb"),
    ],
)
def test_bad_ports_are_refused_with_the_reason(overrides, message):
    with pytest.raises(StackConfigError, match=message):
        resolve_ports(0, overrides)


def test_state_directory_file_wins_over_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("ECHOBASE_PORT_OFFSET", raising=False)
    home, cwd = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    cwd.mkdir()
    (cwd / "echobase.toml").write_text("port_offset = 100\n[ports.devlocal]\nmariadb = 4000\n")
    (home / "echobase.toml").write_text("[ports.devlocal]\nmariadb = 5000\n")
    stack = Stack.load(home, cwd=cwd)
    assert stack.ports.of("devlocal")["mariadb"] == 5000
    assert stack.ports.of("ci")["mariadb"] == 3407  # the project's offset
    monkeypatch.setenv("ECHOBASE_PORT_OFFSET", "7")
    assert Stack.load(home, cwd=cwd).ports.of("ci")["mariadb"] == 3314  # environment wins
    monkeypatch.setenv("ECHOBASE_PORT_OFFSET", "seven")
    with pytest.raises(StackConfigError, match="ECHOBASE_PORT_OFFSET"):
        Stack.load(home, cwd=cwd)


def test_unknown_settings_and_bad_toml_name_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ECHOBASE_PORT_OFFSET", raising=False)
    (tmp_path / "echobase.toml").write_text("colour = 'blue'\n")
    with pytest.raises(StackConfigError, match="unknown settings"):
        Stack.load(tmp_path, cwd=tmp_path)
    (tmp_path / "echobase.toml").write_text("[ports\n")
    with pytest.raises(StackConfigError, match=r"echobase\.toml"):
        Stack.load(tmp_path, cwd=tmp_path)


def test_service_names_follow_the_seed_convention(tmp_path):
    stack = Stack(tmp_path, resolve_ports())
    names = [s.name for s in stack.durable_services("ci")]
    assert names == [
        "echobase-ci-durable-secrets",
        "echobase-ci-durable-mariadb",
        "echobase-ci-durable-mcp",
        "echobase-ci-durable-nginx",
        "echobase-ci-durable-prometheus",
    ]
    nginx = stack.durable_service("devlocal", "nginx")
    assert nginx.ports == (443, 80, 8080, 8081)
    with pytest.raises(StackConfigError):
        stack.durable_services("prod")


def test_one_description_feeds_every_renderer(tmp_path):
    plan = DurablePlan(Stack(tmp_path, resolve_ports(1000)), "devlocal")
    programs = {p.name: p for p in plan.programs()}
    assert set(programs) == {s.name for s in plan.services}
    lb = plan.load_balancer
    assert lb.https_port == 1443 and lb.http_port == 1080
    assert dict(lb.upstreams) == {"blue": 4102, "green": 4101}
    assert dict(lb.direct_ports) == {"blue": 9080, "green": 9081}
    assert plan.prometheus.port == 10090
    assert plan.prometheus.external_url == "https://127.0.0.1:1443/prometheus/"
    secrets_cmd = " ".join(programs["echobase-devlocal-durable-secrets"].command)
    assert "--port 5566" in secrets_cmd
    # Go's collector at half its default growth: Prometheus's share of the 1 GiB (issue 19).
    assert programs["echobase-devlocal-durable-prometheus"].environment == {"GOGC": "50"}
    mcp = programs.pop("echobase-devlocal-durable-mcp")  # keeps no files: nothing to point at
    assert all(str(tmp_path) in " ".join(p.command) for p in programs.values())
    assert mcp.environment["ECHOBASE_PORT"] == "4300"
    assert mcp.environment["ECHOBASE_SECRETS_ENDPOINT_URL"] == "http://127.0.0.1:5566"
    assert lb.mcp_port == 4300 and plan.mcp_url == "http://127.0.0.1:4300/mcp"
    colour = ColourPlan(plan.stack, "blue", "devlocal", Path("/r/bin/python"), "r1")
    assert colour.service_env("api-gateway")["ECHOBASE_MCP_URL"] == plan.mcp_url
    assert {t.address for t in plan.scrape_targets()} == {
        "127.0.0.1:10090",
        "127.0.0.1:4300",
        "127.0.0.1:1443",  # nginx: the live colour and deploy counters
    }


def test_no_program_carries_a_secret(tmp_path):
    plan = DurablePlan(Stack(tmp_path, resolve_ports()), "devlocal")
    values = generate("127.0.0.1", 3306).as_secret_strings().values()
    for program in plan.programs():
        text = " ".join(program.command) + json.dumps(dict(program.environment))
        for value in values:
            assert value not in text


def test_prometheus_config_and_targets_render_as_json_yaml(tmp_path):
    spec = prometheus.PrometheusSpec("ci", tmp_path, "127.0.0.1", 9190, "https://x/prometheus/")
    config = json.loads(prometheus.render_config(spec))
    assert config["global"]["external_labels"] == {"env": "ci"}
    files = config["scrape_configs"][0]["file_sd_configs"][0]["files"]
    assert files == [str(tmp_path / "targets" / "*.json")]
    target = prometheus.ScrapeTarget("127.0.0.1:1", "/metrics", {"colour": "blue"})
    groups = json.loads(prometheus.render_targets([target]))
    assert groups == [
        {"targets": ["127.0.0.1:1"], "labels": {"__metrics_path__": "/metrics", "colour": "blue"}}
    ]
    command = prometheus.server_command(spec)
    assert "--web.route-prefix=/prometheus" in command
    assert f"--storage.tsdb.path={tmp_path / 'data'}" in command


def test_generated_secrets_are_strong_and_round_trip(tmp_path: Path):
    first, second = generate("127.0.0.1", 3306), generate("127.0.0.1", 3306)
    assert len(bytes.fromhex(first.encryption_key_hex)) == 32
    assert first.database.password != second.database.password
    assert len(first.jwt_key) >= 48
    assert "BEGIN CERTIFICATE" in first.tls_cert_pem
    assert "PRIVATE KEY" in first.tls_key_pem
    again = DurableSecrets.from_secret_strings(first.as_secret_strings())
    assert again.as_secret_strings() == first.as_secret_strings()
    assert first.database.password not in repr(first)
    assert first.mcp_database.username != first.database.username  # a reader of its own
    assert len(first.mcp_api_key) >= 43 and first.mcp_api_key != second.mcp_api_key
    assert first.mcp_database.password not in repr(first)
    assert tuple(first.as_secret_strings()) == SECRET_NAMES  # the list tests iterate is whole
    assert DEFAULT_DURABLE_PORTS["ci"]["lb_http"] == 180
