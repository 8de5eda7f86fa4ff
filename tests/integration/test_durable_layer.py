"""The durable layer end to end, through the real CLI: supervisor, the persistent secrets
store, encrypted MariaDB, nginx and Prometheus, in a temporary state directory on free ports.

The tests in this module share one system and run in file order: setup, checks on the
running layer, then restarts and teardowns."""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pymysql
import pytest

from durable_support import SECRET_NAMES, DurableSystem, alive
from echobase.app.core.secrets import DatabaseCredentials
from echobase.platform.doctor import world_readable_files
from echobase.platform.durable import mariadb, nginx
from echobase.platform.durable.mariadb import app_connection
from echobase.platform.render.nginx import render_config
from echobase.platform.render.supervisor import Program

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def system() -> Iterator[DurableSystem]:
    system = DurableSystem.create()
    try:
        yield system
    finally:
        system.destroy()


def lb(system: DurableSystem, env: str = "devlocal") -> httpx.Client:
    cert = system.plan(env).load_balancer.cert_file
    context = ssl.create_default_context(cafile=str(cert))
    return httpx.Client(base_url=system.plan(env).lb_url, verify=context, timeout=10)


def pids(system: DurableSystem, env: str) -> dict[str, int]:
    return {role: s["pid"] for role, s in system.status(env).items()}


def watched_files(system: DurableSystem, env: str) -> dict[str, float]:
    plan = system.plan(env)
    files = [
        plan.database.config_file,
        plan.load_balancer.home / "nginx.conf",
        plan.prometheus.config_file,
        plan.load_balancer.cert_file,
        system.home / "supervisor" / "supervisord.conf",
    ]
    return {str(path): path.stat().st_mtime_ns for path in files}


def secret_versions(system: DurableSystem, env: str) -> dict[str, str]:
    client = system.secrets_client(env)
    return {name: client.get_secret_value(SecretId=name)["VersionId"] for name in SECRET_NAMES}


def credentials_of(system: DurableSystem, env: str) -> DatabaseCredentials:
    return DatabaseCredentials.from_secret(system.secret(env, "echobase/database/credentials"))


KEPT_ROWS = "SELECT COUNT(*) FROM users WHERE username = 'kept_row'"


def test_setup_from_nothing_then_twice_more_changes_nothing(system):
    started = time.monotonic()
    first = system.ok("durable", "setup", "devlocal")
    cold = time.monotonic() - started
    assert "ready" in first.stderr
    status = system.status("devlocal")
    assert {s["state"] for s in status.values()} == {"RUNNING"}, status
    assert all(s["healthy"] for s in status.values()), status
    before = (pids(system, "devlocal"), watched_files(system, "devlocal"))
    versions = secret_versions(system, "devlocal")
    for _ in range(2):
        again = system.ok("durable", "setup", "devlocal")
        assert "ready" in again.stderr
    assert (pids(system, "devlocal"), watched_files(system, "devlocal")) == before
    assert secret_versions(system, "devlocal") == versions
    print(f"cold durable setup: {cold:.1f}s")


def test_status_names_ports_and_health(system):
    result = system.ok("durable", "status", "devlocal")
    for role, port in (("mariadb", "mariadb"), ("secrets", "secrets"), ("nginx", "lb_https")):
        assert f"echobase-devlocal-durable-{role}" in result.stdout
        assert str(system.ports["devlocal"][port]) in result.stdout
    services = system.status("devlocal")
    assert services["nginx"]["detail"] == "live colour: none"
    for service in services.values():
        assert alive(service["pid"])
        assert service["uptime_seconds"] >= 0
        assert service["rss_bytes"] > 0


def test_active_env_is_none_and_live_routes_answer_503(system):
    with lb(system) as client:
        active = client.get("/.active-env")
        assert (active.status_code, active.text.strip()) == (200, "none")
        for path in ("/", "/api/v1/products", "/health"):
            r = client.get(path)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["error"]
            assert r.headers["x-served-by"] == "none"
            assert "strict-transport-security" in r.headers
    plain = httpx.get(
        f"http://127.0.0.1:{system.ports['devlocal']['lb_http']}/api/x?y=1", timeout=5
    )
    assert plain.status_code == 301
    assert plain.headers["location"].startswith(
        f"https://127.0.0.1:{system.ports['devlocal']['lb_https']}/api/x?y=1"
    )


def test_direct_colour_ports_answer_cleanly_without_colours(system):
    for colour in ("blue", "green"):
        r = httpx.get(f"http://127.0.0.1:{system.ports['devlocal'][f'lb_{colour}']}/health")
        assert r.status_code in (502, 503)
        assert colour in r.json()["error"]
        assert r.headers["x-served-by"] == colour


def test_prometheus_behind_basic_auth_scrapes_file_discovered_targets(system):
    auth = json.loads(system.secret("devlocal", "echobase/observability/basic-auth"))
    with lb(system) as client:
        assert client.get("/prometheus/-/ready").status_code == 401
        wrong = client.get("/prometheus/-/ready", auth=(auth["username"], "wrong"))
        assert wrong.status_code == 401
        good = (auth["username"], auth["password"])
        assert client.get("/prometheus/-/ready", auth=good).status_code == 200
        # Every durable program that serves metrics, nginx's over HTTPS (the job trusts the
        # LB's certificate); the colours run none here.
        expected = {
            ("devlocal", "prometheus", "durable"),
            ("devlocal", "mcp", "durable"),
            ("devlocal", "nginx", "durable"),
        }
        deadline = time.monotonic() + 30
        while True:
            active = client.get("/prometheus/api/v1/targets", auth=good).json()["data"][
                "activeTargets"
            ]
            up = {
                (t["labels"]["env"], t["labels"]["service"], t["labels"]["layer"])
                for t in active
                if t["health"] == "up"
            }
            if up == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert up == expected, active


def encryption_state(server) -> tuple[list[tuple[str, int, int]], dict[str, str]]:
    conn = mariadb.admin_connection(server)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT NAME, ENCRYPTION_SCHEME, CURRENT_KEY_ID"
                " FROM information_schema.INNODB_TABLESPACES_ENCRYPTION"
            )
            rows = list(cur.fetchall())
            cur.execute(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('innodb_encrypt_tables',"
                " 'innodb_encrypt_log', 'innodb_encrypt_temporary_tables', 'encrypt_tmp_files')"
            )
            return rows, dict(cur.fetchall())
    finally:
        conn.close()


def test_database_is_encrypted_at_rest_and_the_key_file_is_gone(system):
    server = system.plan("devlocal").database
    deadline = time.monotonic() + 60
    while True:  # the system tablespace is encrypted by background threads after bootstrap
        rows, variables = encryption_state(server)
        plain = [name for name, scheme, _ in rows if scheme != 1]
        if not plain or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert plain == []
    names = {name for name, _, _ in rows}
    for table in ("users", "products", "orders", "rate_limit_windows", "login_failures"):
        assert f"orders_db/{table}" in names
    assert "innodb_system" in names
    assert variables == {
        "innodb_encrypt_tables": "FORCE",
        "innodb_encrypt_log": "ON",
        "innodb_encrypt_temporary_tables": "ON",
        "encrypt_tmp_files": "ON",
    }
    assert not server.keyfile.exists()


def test_root_is_not_reachable_over_tcp_and_the_app_user_is_limited(system):
    root_password = system.secret("devlocal", "echobase/database/root")
    with pytest.raises(pymysql.err.OperationalError) as denied:
        pymysql.connect(
            host="127.0.0.1",
            port=system.ports["devlocal"]["mariadb"],
            user="root",
            password=root_password,
            connect_timeout=5,
        )
    assert denied.value.args[0] == 1045
    assert system.query("devlocal", "SELECT COUNT(*) FROM products") == [(11,)]
    with pytest.raises(pymysql.err.OperationalError):
        system.query("devlocal", "DROP TABLE orders")


def test_no_secret_in_logs_process_arguments_or_readable_files(system):
    values = [v for v in system.secret_values("devlocal").values()]
    values += [json.loads(values[0])["password"]]  # the app password inside the JSON
    for blob in (json.loads(system.secret("devlocal", "echobase/observability/basic-auth")),):
        values.append(blob["password"])
    needles = [v.encode() for v in values if len(v) >= 16]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        for needle in needles:
            assert needle not in cmdline, f"a secret in the arguments of pid {proc.name}"
            assert needle not in environ, f"a secret in the environment of pid {proc.name}"
    assert world_readable_files(system.home) == []
    logs = list(system.home.rglob("*.log")) + list(system.home.rglob("*.err"))
    logs += list((system.home / "logs").iterdir())
    assert logs
    for log in logs:
        data = log.read_bytes()
        for needle in needles:
            assert needle not in data, f"a secret in {log}"
    assert system.home.stat().st_mode & 0o077 == 0  # nginx workers run as the owner


def test_secrets_survive_a_restart_of_the_store_and_mariadb_restarts_from_it(system):
    before = system.secret_values("devlocal")
    plan = system.plan("devlocal")
    from echobase.platform.render.supervisor import SupervisorPaths
    from echobase.platform.runtime.supervisor import Supervisor

    supervisor = Supervisor(SupervisorPaths(system.home))
    store = plan.service("secrets").name
    old_pid = supervisor.info(store).pid
    supervisor.stop(store)
    supervisor.start(store)
    assert supervisor.info(store).pid != old_pid
    assert system.secret_values("devlocal") == before
    # MariaDB's launcher fetches the at-rest key from the restarted store.
    database = plan.service("mariadb").name
    supervisor.stop(database)
    supervisor.start(database)
    deadline = time.monotonic() + 60
    while True:
        try:
            app_connection(credentials_of(system, "devlocal")).close()
            break
        except pymysql.err.OperationalError:
            assert time.monotonic() < deadline, supervisor.tail(database, 3000)
            time.sleep(0.2)
    assert not plan.database.keyfile.exists()
    log = plan.database.log_file.read_text(errors="replace")
    assert "Shutdown complete" in log


def test_doctor_sees_the_running_layer_and_a_foreign_port(system):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", system.ports["ci"]["prometheus"]))
        squatter.listen()
        result = system.cli("doctor", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1 and not report["ok"]
    checks = {c["name"]: c for c in report["checks"]}
    https = system.ports["devlocal"]["lb_https"]
    assert checks[f"port {https} (devlocal lb_https)"]["detail"].startswith(
        "in use by echobase-devlocal-durable-nginx"
    )
    foreign = checks[f"port {system.ports['ci']['prometheus']} (ci prometheus)"]
    assert foreign["outcome"] == "fail" and "ECHOBASE_PORT_OFFSET" in foreign["fix"]
    assert all(c["outcome"] == "ok" for n, c in checks.items() if n.startswith("binary"))
    assert checks["state directory"]["outcome"] == "ok"
    assert checks["nginx workers (devlocal)"]["outcome"] == "ok"
    assert system.cli("doctor").returncode == 0


def test_a_broken_nginx_config_is_never_applied(system):
    plan = system.plan("devlocal")
    spec = plan.load_balancer
    config = spec.home / "nginx.conf"
    before = config.read_bytes()
    reloads: list[int] = []
    with pytest.raises(nginx.LoadBalancerError) as failed:
        nginx.apply_text(spec, render_config(spec) + "\nno_such_directive on;\n", reloads.append)
    assert "no_such_directive" in str(failed.value)
    assert reloads == []
    assert config.read_bytes() == before
    with lb(system) as client:
        assert client.get("/.active-env").text.strip() == "none"


def test_a_credential_mismatch_is_reported_with_the_repair(system):
    app = credentials_of(system, "devlocal")
    server = system.plan("devlocal").database
    mariadb.run_admin(
        server,
        [
            (f"ALTER USER %s@'{h}' IDENTIFIED BY 'drifted-away'", (app.username,))
            for h in mariadb.APP_HOSTS
        ],
    )
    failed = system.cli("durable", "setup", "devlocal")
    assert failed.returncode == 1
    assert "--repair-credentials" in failed.stderr
    assert app.password not in failed.stderr + failed.stdout
    system.ok("durable", "setup", "devlocal", "--repair-credentials")
    app_connection(app).close()


def test_teardown_refuses_while_a_colour_is_attached(system):
    from echobase.platform.durable.layer import attached_env_file
    from echobase.platform.render.supervisor import SupervisorPaths
    from echobase.platform.runtime.supervisor import Supervisor

    supervisor = Supervisor(SupervisorPaths(system.home))
    marker = attached_env_file(system.stack, "blue")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("devlocal\n")
    stand_in = Program(
        "echobase-blue-api-gateway",
        ["sleep", "600"],
        log_file=system.home / "logs" / "echobase-blue-api-gateway.log",
    )
    supervisor.apply([stand_in])
    supervisor.start(stand_in.name)
    try:
        refused = system.cli("durable", "teardown", "devlocal")
        assert refused.returncode == 1
        assert "blue" in refused.stderr
        assert system.status("devlocal")["mariadb"]["state"] == "RUNNING"
    finally:
        supervisor.remove(stand_in.name)
        marker.unlink()


def test_devlocal_and_ci_run_at_once_with_separate_data(system):
    system.ok("durable", "setup", "ci")
    for env in ("devlocal", "ci"):
        assert all(s["healthy"] for s in system.status(env).values()), env
    devlocal, ci = credentials_of(system, "devlocal"), credentials_of(system, "ci")
    assert devlocal.port != ci.port
    assert devlocal.password != ci.password
    system.query(
        "devlocal",
        "INSERT INTO users (username, email, full_name, password_hash)"
        " VALUES ('kept_row', 'kept@example.com', 'Kept', 'x')",
    )
    assert system.query("devlocal", KEPT_ROWS) == [(1,)]
    assert system.query("ci", KEPT_ROWS) == [(0,)]


def test_teardown_keeps_data_and_setup_brings_it_back(system):
    secrets_before = system.secret_values("devlocal")
    old = pids(system, "devlocal")
    result = system.ok("durable", "teardown", "devlocal")
    assert "data kept" in result.stderr
    assert not any(alive(pid) for pid in old.values())
    assert all(s["state"] != "RUNNING" for s in system.status("devlocal").values())
    assert system.status("ci")["mariadb"]["state"] == "RUNNING"  # the other env is untouched
    system.ok("durable", "setup", "devlocal")
    assert system.secret_values("devlocal") == secrets_before
    kept = "SELECT full_name FROM users WHERE username = 'kept_row'"
    assert system.query("devlocal", kept) == [("Kept",)]


def test_the_whole_supervisor_stops_when_the_last_layer_goes(system):
    supervisord = system.supervisord_pid()
    assert supervisord and alive(supervisord)
    system.ok("durable", "teardown", "ci")
    assert alive(supervisord)  # devlocal still runs
    everything = pids(system, "devlocal")
    system.ok("durable", "teardown", "devlocal")
    deadline = time.monotonic() + 30
    while alive(supervisord) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(supervisord)
    assert not any(alive(pid) for pid in everything.values())
    # "after a reboot": nothing runs, the state directory holds everything
    system.ok("durable", "setup", "devlocal")
    assert system.query("devlocal", KEPT_ROWS) == [(1,)]


def test_teardown_with_volumes_wipes_the_environment(system):
    old_root = system.secret("devlocal", "echobase/database/root")
    asked = system.cli("durable", "teardown", "devlocal", "--volumes")  # no tty: no consent
    assert asked.returncode != 0
    assert (system.home / "durable" / "devlocal" / "mariadb" / "data").is_dir()
    system.ok("durable", "teardown", "devlocal", "--volumes", "--yes")
    assert not (system.home / "durable" / "devlocal").exists()
    system.ok("durable", "setup", "devlocal")
    assert system.secret("devlocal", "echobase/database/root") != old_root
    assert system.query("devlocal", KEPT_ROWS) == [(0,)]


def test_a_store_refusing_writes_means_no_database_is_created():
    system = DurableSystem.create()
    try:
        from echobase.platform.durable.layer import DurableLayer

        layer = DurableLayer(system.stack, "devlocal")
        layer.start_secrets_store()
        journal = layer.plan.secrets_dir / "journal"
        journal.unlink(missing_ok=True)
        journal.mkdir()  # every write to the store now fails (root ignores permissions)
        failed = system.cli("durable", "setup", "devlocal")
        assert failed.returncode == 1, failed.stderr
        assert "refused" in failed.stderr, failed.stderr[-5000:]
        assert not (layer.plan.database.datadir).exists()
        assert layer.supervisor.info(layer.plan.service("mariadb").name) is None
        client = system.secrets_client("devlocal")
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_secret_value(SecretId="echobase/database/credentials")
    finally:
        system.destroy()


def test_bad_configuration_is_refused_with_the_reason(tmp_path):
    system = DurableSystem(tmp_path, {})
    (tmp_path / "echobase.toml").write_text("[ports.devlocal]\nmariadb = 'x'\n")
    result = system.cli("durable", "status", "devlocal")
    assert result.returncode == 2
    assert "ports.devlocal.mariadb must be an integer" in result.stderr
    (tmp_path / "echobase.toml").write_text("[ports.devlocal]\nlb_https = 4566\nsecrets = 4566\n")
    assert "4566" in system.cli("durable", "status", "devlocal").stderr
    unknown = system.cli("durable", "setup", "staging")
    assert unknown.returncode == 2 and "unknown environment" in unknown.stderr
    assert not os.path.exists(tmp_path / "durable")
