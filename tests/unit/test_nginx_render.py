from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import bcrypt
import pytest

from echobase.platform.durable.nginx import (
    LoadBalancerSpec,
    active_env_body,
    check_command,
    htpasswd_line,
    parse_active_env,
    read_active,
    render_config,
    server_command,
)

HOME = Path("/srv/eb/lb")


def make_spec(active: str | None = None, **changes: object) -> LoadBalancerSpec:
    spec = LoadBalancerSpec(
        env="devlocal",
        home=HOME,
        host="127.0.0.1",
        http_port=8080,
        https_port=8443,
        direct_ports={"blue": 8081, "green": 8082},
        upstreams={"blue": 9001, "green": 9002},
        prometheus_port=9090,
        cert_file=HOME / "tls.crt",
        key_file=HOME / "tls.key",
        htpasswd_file=HOME / "htpasswd",
        active=active,
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("active", ["blue", "green", None])
def test_render_and_read_active_round_trip(active: str | None) -> None:
    config = render_config(make_spec(active))
    assert read_active(config) == active
    assert parse_active_env(active_env_body(active)) == active
    assert active_env_body(active) == f"{active or 'none'}\n"


def test_the_live_colour_is_written_once_and_everything_reads_it() -> None:
    config = render_config(make_spec("green"))
    assert config.count('set $echobase_live "green";') == 1
    assert "proxy_pass http://echobase_$echobase_live;" in config
    assert 'return 200 "$echobase_live\\n";' in config


def test_no_live_colour_answers_503_json_without_proxying() -> None:
    config = render_config(make_spec(None))
    assert 'set $echobase_live "none";' in config
    assert "echobase_$echobase_live" not in config
    assert 'return 503 \'{"error":"no colour is live"}\\n\';' in config
    assert 'add_header X-Served-By "none" always;' in config


@pytest.mark.parametrize(
    "text",
    [
        "",
        "http { }",
        '# set $echobase_live "blue";\n',
        'set $echobase_live "blue";\nset $echobase_live "green";\n',
        'set $echobase_live "blue";\nset $echobase_live "blue";\n',
    ],
)
def test_read_active_rejects_missing_or_ambiguous(text: str) -> None:
    with pytest.raises(ValueError):
        read_active(text)


def test_read_active_rejects_an_unknown_colour_and_double_renders() -> None:
    with pytest.raises(ValueError):
        read_active('set $echobase_live "purple";\n')
    with pytest.raises(ValueError):
        read_active(render_config(make_spec("blue")) + render_config(make_spec("green")))


def test_direct_ports_upstreams_and_prometheus_are_present() -> None:
    config = render_config(make_spec("blue"))
    assert "listen 127.0.0.1:8081;" in config and "listen 127.0.0.1:8082;" in config
    assert "proxy_pass http://echobase_blue;" in config
    assert "proxy_pass http://echobase_green;" in config
    assert "server 127.0.0.1:9001 max_fails=0;" in config
    assert "server 127.0.0.1:9002 max_fails=0;" in config
    assert "server 127.0.0.1:9090 max_fails=0;" in config
    assert 'add_header X-Served-By "blue" always;' in config
    assert 'add_header X-Served-By "green" always;' in config
    assert "@unavailable_blue" in config and "@unavailable_green" in config
    assert "listen 127.0.0.1:8443 ssl http2;" in config
    assert "return 301 https://$host:8443$request_uri;" in config
    assert f"auth_basic_user_file {HOME}/htpasswd;" in config
    assert "client_max_body_size 2m;" in config
    # The API's own error bodies must reach clients untouched.
    assert "proxy_intercept_errors off;" in config
    assert "proxy_intercept_errors on" not in config


def test_everything_nginx_writes_stays_in_the_home() -> None:
    config = render_config(make_spec("blue"))
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{kind}_temp_path {HOME}/temp/{kind};" in config
    assert f"pid {HOME}/nginx.pid;" in config
    assert f"error_log {HOME}/logs/error.log" in config
    assert f"access_log {HOME}/logs/access.log echobase;" in config
    assert "daemon off;" in config and "worker_processes 2;" in config
    assert "include" not in config  # standalone: nothing from /etc/nginx
    assert "user " not in config
    assert "user www-data;" in render_config(make_spec("blue", worker_user="www-data"))


def test_every_location_with_its_own_headers_repeats_the_security_headers() -> None:
    config = render_config(make_spec("blue"))
    https_server = config.split("ssl http2;")[1].split("# Direct to")[0]
    blocks = re.findall(r"location [^{]+\{[^}]*\}", https_server)
    assert blocks
    for block in blocks:
        if "add_header" in block:
            assert 'Strict-Transport-Security "max-age=31536000" always' in block, block
            assert 'X-Content-Type-Options "nosniff" always' in block, block
            assert 'X-Frame-Options "DENY" always' in block, block
            assert 'Referrer-Policy "no-referrer" always' in block, block
    assert "server_tokens off;" in config


def test_no_secret_looking_content() -> None:
    config = render_config(make_spec("blue"))
    assert "$2b$" not in config and "{SSHA}" not in config
    assert "BEGIN" not in config  # no PEM material inline
    assert not re.search(r"[A-Za-z0-9+/=]{40,}", config)
    assert "password" not in config.lower()


def test_render_is_deterministic() -> None:
    reordered = make_spec(
        "green", direct_ports={"green": 8082, "blue": 8081}, upstreams={"green": 9002, "blue": 9001}
    )
    assert render_config(make_spec("green")) == render_config(make_spec("green"))
    assert render_config(reordered) == render_config(make_spec("green"))
    assert render_config(make_spec("green")) != render_config(make_spec("blue"))


@pytest.mark.parametrize(
    "changes",
    [
        {"active": "purple"},
        {"upstreams": {"green": 9002}, "direct_ports": {"green": 8082}, "active": "blue"},
        {"direct_ports": {"red": 8083}},
        {"http_port": 8443},
        {"https_port": 70000},
        {"host": "127.0.0.1; evil"},
        {"htpasswd_file": Path("/tmp/x;\n}")},
        {"cert_file": Path("relative.crt")},
        {"worker_user": "www-data;"},
    ],
)
def test_render_refuses_specs_it_cannot_render_safely(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        render_config(make_spec(**changes))


def test_commands_point_nginx_at_the_home() -> None:
    spec = make_spec("blue")
    command = server_command(spec)
    assert command[0].endswith("nginx")
    assert command[1:] == [
        "-p",
        f"{HOME}/",
        "-c",
        f"{HOME}/nginx.conf",
        "-e",
        f"{HOME}/logs/error.log",
    ]
    check = check_command(spec, HOME / "nginx.conf.new")
    assert "-t" in check and f"{HOME}/nginx.conf.new" in check
    assert spec.config_path == HOME / "nginx.conf"


def test_htpasswd_line_is_bcrypt_and_verifies() -> None:
    line = htpasswd_line("admin", "correct horse")
    user, hashed = line.rstrip("\n").split(":", 1)
    assert user == "admin" and line.endswith("\n")
    assert hashed.startswith("$2b$08$")
    assert bcrypt.checkpw(b"correct horse", hashed.encode())
    assert htpasswd_line("admin", "correct horse") != line  # salted
    for bad_user in ("", "a:b", "a\nb"):
        with pytest.raises(ValueError):
            htpasswd_line(bad_user, "pw")
    with pytest.raises(ValueError):
        htpasswd_line("admin", "x" * 73)
    with pytest.raises(ValueError):
        htpasswd_line("admin", "")
