"""`echobase render compose`: rendered through the CLI into a temporary directory, each
Compose file validated offline against the Compose specification's schema (the one
check-jsonschema vendors), and the layout checked against the stack description. Starts no
container: there is no engine here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from echobase.cli.main import app
from echobase.platform.render import mariadb as mariadb_render
from echobase.platform.render import routing
from echobase.platform.render.compose import LB_HOME, UNPROBED
from echobase.platform.stack import COLOURS, Stack

runner = CliRunner()
PROJECTS = ("durable", *COLOURS)
# One-shot jobs and images with nothing inside to probe with: the only unprobed services.
ALLOWED_UNPROBED = {*UNPROBED, "migrate"}


def render(
    tmp_path: Path, env: str = "devlocal", offset: str = "", *extra: str
) -> tuple[Path, Path]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    out = tmp_path / f"out-{env}-{offset or 0}-{len(list(tmp_path.iterdir()))}"
    result = runner.invoke(
        app,
        ["render", "compose", "--env", env, "-o", str(out), "--home", str(home), "--json", *extra],
        env={"ECHOBASE_PORT_OFFSET": offset, "ECHOBASE_HOME": str(home)},
    )
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)["written"]
    assert sorted(written) == sorted(str(p) for p in out.rglob("*") if p.is_file())
    return home, out


@pytest.fixture(autouse=True)
def _no_project_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stack.load reads ./echobase.toml too: a directory of our own has none.
    monkeypatch.chdir(tmp_path)


def load(out: Path, project: str) -> dict[str, Any]:
    return yaml.safe_load((out / project / "compose.yaml").read_text())


def check_jsonschema() -> str:
    for scripts in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        if (scripts / "check-jsonschema").is_file():
            return str(scripts / "check-jsonschema")
    pytest.fail("check-jsonschema is not installed: pip install -e '.[test]'")


def test_every_compose_file_is_valid_against_the_compose_specification(tmp_path: Path) -> None:
    _, out = render(tmp_path)
    files = [str(out / project / "compose.yaml") for project in PROJECTS]
    result = subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.compose-spec", *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    _, out = render(tmp_path)
    broken = load(out, "blue")
    first = next(iter(broken["services"].values()))
    first["healthcheck"]["retries"] = "three"
    first["deploy"]["resources"]["limits"]["shoe_size"] = 44
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0


def test_projects_and_services_are_named_like_the_stack(tmp_path: Path) -> None:
    home, out = render(tmp_path, "ci")
    stack = Stack.load(home, offset=0)
    durable = load(out, "durable")
    assert durable["name"] == "echobase-ci-durable"
    for name, service in durable["services"].items():
        assert re.fullmatch(r"echobase-ci-durable-[a-z-]+", name), name
        assert service["container_name"] == name
    for service in stack.durable_services("ci"):
        assert service.name in durable["services"]
    for role in ("otel-collector", "jaeger", "loki", "grafana"):
        assert f"echobase-ci-durable-{role}" in durable["services"]
    for colour in COLOURS:
        project = load(out, colour)
        assert project["name"] == f"echobase-{colour}"
        for name, service in project["services"].items():
            assert re.fullmatch(rf"echobase-{colour}-[a-z-]+", name), name
            assert service["container_name"] == name
        expected = {s.name for s in stack.colour_services(colour)}
        expected |= {f"echobase-{colour}-frontend", f"echobase-{colour}-migrate"}
        assert set(project["services"]) == expected
        # The colours join the network the durable project creates.
        assert project["networks"]["echobase"] == {"name": "echobase-ci", "external": True}
    assert durable["networks"]["echobase"]["name"] == "echobase-ci"
    assert "external" not in durable["networks"]["echobase"]


def published(service: dict[str, Any]) -> list[int]:
    return sorted(int(port["published"]) for port in service.get("ports", []))


def assert_ports_follow_the_table(out: Path, stack: Stack, env: str) -> None:
    durable = load(out, "durable")["services"]
    for service in stack.durable_services(env):
        ports = durable[service.name]["ports"]
        assert published(durable[service.name]) == sorted(service.ports)
        # The same number inside: a URL means the same in every container and on the host.
        assert all(p["target"] == int(p["published"]) for p in ports)
        assert all(p["host_ip"] == stack.host for p in ports)
    for colour in COLOURS:
        services = load(out, colour)["services"]
        for service in stack.colour_services(colour):
            assert published(services[service.name]) == [service.port]
            env_vars = services[service.name].get("environment", {})
            if "ECHOBASE_PORT" in env_vars:
                assert env_vars["ECHOBASE_PORT"] == str(service.port)
    everything = [
        port
        for project in PROJECTS
        for service in load(out, project)["services"].values()
        for port in published(service)
    ]
    assert len(everything) == len(set(everything)), "a host port is published twice"


def test_host_ports_are_the_local_table(tmp_path: Path) -> None:
    home, out = render(tmp_path)
    stack = Stack.load(home, offset=0)
    assert_ports_follow_the_table(out, stack, "devlocal")
    lb = load(out, "durable")["services"]["echobase-devlocal-durable-nginx"]
    assert published(lb) == [80, 443, 8080, 8081]


def test_host_ports_follow_an_offset(tmp_path: Path) -> None:
    home, out = render(tmp_path, "devlocal", "20000")
    stack = Stack.load(home, offset=20000)
    assert stack.ports.of("devlocal")["lb_https"] == 20443
    assert_ports_follow_the_table(out, stack, "devlocal")
    text = (out / "durable" / "lb" / "nginx.conf").read_text()
    assert "listen 0.0.0.0:20443 ssl" in text
    assert "server echobase-blue-api-gateway:23102" in text


def test_host_ports_follow_an_echobase_toml(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "echobase.toml").write_text(
        "[ports.ci]\nlb_https = 9443\n[ports.green]\ngateway = 3999\n"
    )
    _, out = render(tmp_path, "ci")
    stack = Stack.load(home, offset=0)
    assert stack.ports.of("ci")["lb_https"] == 9443
    assert_ports_follow_the_table(out, stack, "ci")
    gateway = load(out, "green")["services"]["echobase-green-api-gateway"]
    assert published(gateway) == [3999]
    assert "https://127.0.0.1:9443" in gateway["environment"]["ECHOBASE_ALLOWED_ORIGINS"]


def test_every_service_has_a_healthcheck_limits_and_a_restart_policy(tmp_path: Path) -> None:
    home, out = render(tmp_path)
    stack = Stack.load(home, offset=0)
    roles = {s.name: s for s in stack.durable_services("devlocal")}
    roles |= {s.name: s for c in COLOURS for s in stack.colour_services(c)}
    for project in PROJECTS:
        for name, service in load(out, project)["services"].items():
            check = service["healthcheck"]
            role = name.removeprefix("echobase-devlocal-durable-")
            role = re.sub(r"^echobase-(blue|green)-", "", role)
            if check.get("disable"):
                assert role in ALLOWED_UNPROBED, name
                continue
            assert check["test"][0] == "CMD" and check["interval"] and check["retries"] >= 1
            if name in roles and roles[name].health_path is not None:
                probe = " ".join(check["test"])
                assert f":{roles[name].port}" in probe and roles[name].health_path in probe
            if name in roles and roles[name].health_path is None:
                assert f"/dev/tcp/127.0.0.1/{roles[name].port}" in check["test"][-1]
            limits = service["deploy"]["resources"]["limits"]
            assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+M", limits["memory"])
            assert service["restart"] in ("unless-stopped", "no")


def test_colour_settings_name_containers_and_no_credentials(tmp_path: Path) -> None:
    _, out = render(tmp_path)
    blue = load(out, "blue")["services"]
    gateway = blue["echobase-blue-api-gateway"]["environment"]
    assert gateway["ECHOBASE_HOST"] == "0.0.0.0"  # noqa: S104 - what the container must bind
    assert gateway["ECHOBASE_COLOUR"] == "blue"
    assert (
        gateway["ECHOBASE_SECRETS_ENDPOINT_URL"] == "http://echobase-devlocal-durable-secrets:4566"
    )
    assert gateway["ECHOBASE_SQS_QUEUE_URL"].startswith("http://echobase-blue-sqs:4667/")
    assert gateway["ECHOBASE_MCP_URL"] == "http://echobase-devlocal-durable-mcp:3300/mcp"
    assert (
        gateway["ECHOBASE_TRUSTED_PROXIES"]
        == (
            load(out, "durable")["services"]["echobase-devlocal-durable-nginx"]["networks"][
                "echobase"
            ]["ipv4_address"]
        )
    )
    assert blue["echobase-blue-api-gateway"]["command"] == ["echobase.app.gateway"]
    assert blue["echobase-blue-order-processor"]["command"] == ["echobase.app.processor"]
    assert blue["echobase-blue-sqs"]["command"][0] == "echobase.platform.aws_emulator"
    assert blue["echobase-blue-migrate"]["command"][:3] == [
        "echobase.app.db.migrate",
        "upgrade",
        "--secret",
    ]
    secrets = load(out, "durable")["services"]["echobase-devlocal-durable-secrets"]
    assert secrets["command"][0] == "echobase.platform.durable.secrets_store"


SECRET_LOOKING = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\b[0-9a-f]{64}\b|\$2[aby]\$\d\d\$|\$6\$[./\w]+\$"
)


def test_no_secret_value_in_any_rendered_file(tmp_path: Path) -> None:
    _, out = render(tmp_path)
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not SECRET_LOOKING.search(text), path
            assert path.stat().st_mode & 0o777 == 0o644
    for project in PROJECTS:
        document = load(out, project)
        for service in document["services"].values():
            for key, value in service.get("environment", {}).items():
                if key.startswith("AWS_"):
                    # moto's placeholders: it accepts any key pair.
                    assert value in ("echobase-local", "us-east-1"), key
                elif re.search(r"PASSWORD|SECRET|TOKEN|KEY", key) and not key.endswith("_URL"):
                    # A secret's name or a file Compose mounts: never its value.
                    assert value.startswith(("/run/secrets/", "echobase/")), (key, value)
        for secret in document.get("secrets", {}).values():
            assert set(secret) == {"file"} and secret["file"].startswith("./secrets/")
    durable = load(out, "durable")
    assert "mariadb-encryption-key" in durable["secrets"]
    assert (
        "mariadb-encryption-key"
        in durable["services"]["echobase-devlocal-durable-mariadb"]["secrets"]
    )


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    _, first = render(tmp_path)
    _, second = render(tmp_path)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative


def test_the_lb_routes_like_this_machines_with_active_env_and_njs(tmp_path: Path) -> None:
    _, out = render(tmp_path, "devlocal", "", "--live", "green")
    lb = out / "durable" / "lb"
    text = (lb / "nginx.conf").read_text()
    assert "location = /.active-env" in text
    assert f"js_import {routing.MODULE} from {routing.SCRIPT_FILE};" in text
    assert f"js_set ${routing.VARIABLE} {routing.MODULE}.live;" in text
    assert "resolver 127.0.0.11" in text
    assert "proxy_pass http://echobase_web_$echobase_live;" in text
    # The one njs script, rendered by the same function for the container's paths.
    assert (lb / routing.SCRIPT_FILE).read_text() == routing.render_script(
        routing.RoutingFiles(LB_HOME)
    )
    assert routing.parse_state((lb / routing.STATE_FILE).read_text()).live == "green"
    assert (lb / routing.LAST_GOOD_FILE).read_text() == (lb / routing.STATE_FILE).read_text()
    nginx = load(out, "durable")["services"]["echobase-devlocal-durable-nginx"]
    # The directory is mounted, so a renamed-in routing.json is what nginx reads next.
    assert {"type": "bind", "source": "./lb", "target": str(LB_HOME), "read_only": True} in nginx[
        "volumes"
    ]
    readme = (out / "README.md").read_text()
    assert "docker compose -p echobase-devlocal-durable -f durable/compose.yaml up -d" in readme
    assert "docker compose -p echobase-blue -f blue/compose.yaml up -d" in readme
    assert "routing.json" in readme and "/.active-env" in readme


def test_observability_is_provisioned(tmp_path: Path) -> None:
    _, out = render(tmp_path)
    datasources = yaml.safe_load(
        (out / "durable/grafana/provisioning/datasources/echobase.yaml").read_text()
    )
    assert {d["type"] for d in datasources["datasources"]} == {"prometheus", "jaeger", "loki"}
    dashboard = json.loads((out / "durable/grafana/dashboards/echobase.json").read_text())
    assert "${DS_PROMETHEUS}" not in json.dumps(dashboard)
    prometheus = yaml.safe_load((out / "durable/prometheus/prometheus.yml").read_text())
    targets = {
        target
        for job in prometheus["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert "echobase-blue-api-gateway:3102" in targets
    assert "echobase-green-order-processor:3201" in targets
    rules = yaml.safe_load((out / "durable/prometheus/rules/echobase-rules.yml").read_text())
    assert rules["groups"]
    collector = yaml.safe_load((out / "durable/otel-collector/config.yaml").read_text())
    assert set(collector["service"]["pipelines"]) == {"traces", "metrics", "logs"}


def test_mariadb_is_encrypted_at_rest_like_the_local_server(tmp_path: Path) -> None:
    _, out = render(tmp_path)
    cnf = (out / "durable/mariadb/echobase.cnf").read_text().splitlines()
    local = mariadb_render.render_config(
        mariadb_render.MariaDBServer(Path("/x"), 3306, os_user="someone")
    ).splitlines()
    encryption = local[local.index("plugin_load_add = file_key_management") :]
    for line in encryption:
        if line.startswith("file_key_management_filename"):
            assert "file_key_management_filename = /run/secrets/mariadb-encryption-key" in cnf
        else:
            assert line in cnf
    assert "port = 3306" in cnf


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "production"], "unknown environment 'production'"),
        (["--env", "ci", "--live", "purple"], "unknown colour 'purple'"),
        (["--env", "ci", "--image", "echobase:latest"], "give a fixed reference"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(
        app,
        ["render", "compose", "-o", str(tmp_path / "out"), *args],
        env={"ECHOBASE_HOME": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out").exists()
