from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from echobase.platform.durable.nginx import htpasswd_line
from echobase.platform.render import routing
from echobase.platform.render.nginx import (
    CONTENT_SECURITY_POLICY,
    GATEWAY_ROUTES,
    LoadBalancerSpec,
    active_env_body,
    check_command,
    legacy_active,
    parse_active_env,
    render_config,
    server_command,
)

HOME = Path("/srv/eb/lb")


def make_spec(**changes: object) -> LoadBalancerSpec:
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
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("active", ["blue", "green", None])
def test_routing_state_and_active_env_round_trip(active: str | None) -> None:
    assert routing.parse_state(routing.state_text(active)) == routing.RoutingState(active)
    assert parse_active_env(active_env_body(active)) == active
    assert active_env_body(active) == f"{active or 'none'}\n"


def test_the_config_names_no_colour_and_everything_reads_the_per_request_variable() -> None:
    blue = render_config(make_spec())
    # The spec has no live colour to render: a switch changes no config, so never reloads.
    assert "active" not in {field.name for field in dataclasses.fields(LoadBalancerSpec)}
    assert not re.search(r"^\s*set \$echobase_live", blue, re.MULTILINE)
    assert blue.count("js_set $echobase_live echobase_routing.live;") == 1
    assert blue.startswith("# echobase") and "\nload_module " in blue.split("events {")[0]
    assert "proxy_pass http://echobase_$echobase_live;" in blue
    # /.active-env answers the majority colour, from the same state.
    assert 'return 200 "$echobase_active\\n";' in blue
    assert blue.count("js_set $echobase_active echobase_routing.active;") == 1


def test_no_live_colour_answers_503_json_without_proxying() -> None:
    config = render_config(make_spec())
    production = config[config.index("ssl_certificate ") :]
    guards = production.count("if ($echobase_live = none) {\n")
    # Every production route of the colour (API, app, index, assets), none of the others.
    assert guards == 4
    assert production.count("rewrite ^ /.no-colour-live last;") == 4
    assert 'return 503 \'{"error":"no colour is live"}\\n\';' in config
    assert 'add_header X-Served-By "none" always;' in config


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{}",
        '{"live": "purple"}',
        '{"live": null}',
        '["blue"]',
        '{"live": "blue"',
    ],
)
def test_a_routing_state_that_names_no_colour_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        routing.parse_state(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "http { }",
        '# set $echobase_live "blue";\n',
        'set $echobase_live "blue";\nset $echobase_live "green";\n',
        'set $echobase_live "purple";\n',
    ],
)
def test_an_earlier_versions_config_gives_its_colour_or_nothing(text: str) -> None:
    with pytest.raises(ValueError):
        legacy_active(text)
    assert legacy_active('    set $echobase_live "green";\n') == "green"
    assert legacy_active('    set $echobase_live "none";\n') is None


def test_the_routing_script_reads_the_state_then_the_last_good_copy() -> None:
    script = routing.render_script(make_spec().routing)
    assert f'const STATE = "{HOME}/routing.json";' in script
    assert f'const LAST_GOOD = "{HOME}/routing.last-good.json";' in script
    assert (
        "export default { live, active, routing, bucket_cookie, weight_blue, weight_green };"
        in script
    )


def test_every_production_route_may_give_a_bucket_cookie_and_no_direct_route_does() -> None:
    config = render_config(make_spec())
    production = config[config.index("ssl_certificate ") : config.index("# Direct to blue")]
    cookie = "add_header Set-Cookie $echobase_bucket_cookie always;"
    assert production.count(cookie) == 5  # API, app, index, assets and their fallback
    assert config.count(cookie) == 5


@pytest.mark.parametrize(
    ("state", "active", "weights"),
    [
        (routing.RoutingState(None), None, {"blue": 0, "green": 0}),
        (routing.RoutingState("blue"), "blue", {"blue": 100, "green": 0}),
        (
            routing.RoutingState("blue", routing.Canary("green", 10, 3)),
            "blue",
            {"blue": 90, "green": 10},
        ),
        (
            routing.RoutingState("blue", routing.Canary("green", 50, 3)),
            "blue",
            {"blue": 50, "green": 50},
        ),
        (
            routing.RoutingState("green", routing.Canary("blue", 51, 0)),
            "blue",
            {"blue": 51, "green": 49},
        ),
    ],
)
def test_a_routing_state_gives_its_majority_and_weights(
    state: routing.RoutingState, active: str | None, weights: dict[str, int]
) -> None:
    assert state.active == active
    assert state.weights() == weights
    assert routing.parse_state(routing.state_text(state)) == state
    if state.canary is not None:
        on_canary = [b for b in range(100) if state.route(b) == state.canary.colour]
        assert len(on_canary) == state.canary.percent


@pytest.mark.parametrize(
    "make",
    [
        lambda: routing.RoutingState(None, routing.Canary("green", 10, 0)),
        lambda: routing.RoutingState("green", routing.Canary("green", 10, 0)),
        lambda: routing.Canary("green", 0, 0),
        lambda: routing.Canary("green", 100, 0),
        lambda: routing.Canary("green", 10, 100),
        lambda: routing.Canary("purple", 10, 0),
        lambda: routing.Canary("green", True, 0),
    ],
)
def test_a_canary_that_could_not_be_routed_is_refused(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


def test_direct_ports_upstreams_and_prometheus_are_present() -> None:
    config = render_config(make_spec())
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
    config = render_config(make_spec())
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{kind}_temp_path {HOME}/temp/{kind};" in config
    assert f"pid {HOME}/nginx.pid;" in config
    assert f"error_log {HOME}/logs/error.log" in config
    assert f"access_log {HOME}/logs/access.log echobase;" in config
    assert "daemon off;" in config and "worker_processes 2;" in config
    # Standalone: nothing from /etc/nginx (an SSI include inside a body is no directive).
    assert not re.search(r"^\s*include\s", config, re.MULTILINE)
    assert "user " not in config
    assert "user root root;" in render_config(make_spec(worker_user="root root"))


def test_every_location_with_its_own_headers_repeats_the_security_headers() -> None:
    config = render_config(make_spec())
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
    config = render_config(make_spec())
    assert "$2b$" not in config and "{SSHA}" not in config
    assert "BEGIN" not in config  # no PEM material inline
    assert not re.search(r"[A-Za-z0-9+/=]{40,}", config)
    assert "password" not in config.lower()


def test_render_is_deterministic() -> None:
    reordered = make_spec(
        direct_ports={"green": 8082, "blue": 8081}, upstreams={"green": 9002, "blue": 9001}
    )
    assert render_config(make_spec()) == render_config(make_spec())
    assert render_config(reordered) == render_config(make_spec())


@pytest.mark.parametrize(
    "changes",
    [
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
    spec = make_spec()
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


WEB = {"blue": Path("/srv/eb/web/blue"), "green": Path("/srv/eb/web/green")}


def _block(config: str, opening: str) -> str:
    """The text of the first block that starts with ``opening`` (up to its closing brace)."""
    start = config.index(opening)
    depth, end = 0, start
    for end in range(start, len(config)):
        if config[end] == "{":
            depth += 1
        elif config[end] == "}":
            depth -= 1
            if depth == 0:
                break
    return config[start : end + 1]


def test_app_files_come_from_the_live_colours_link_and_the_api_from_its_gateway() -> None:
    config = render_config(make_spec(web_roots=WEB))
    live = _block(config, "    map $echobase_live $echobase_web_live")
    assert "blue /srv/eb/web/blue;" in live and "green /srv/eb/web/green;" in live
    idle = _block(config, "    map $echobase_live $echobase_web_idle")
    assert "blue /srv/eb/web/green;" in idle and "green /srv/eb/web/blue;" in idle
    https = _block(config, "    server {\n        listen 127.0.0.1:8443")
    api = _block(https, f"        location ~ {GATEWAY_ROUTES}")
    assert "proxy_pass http://echobase_$echobase_live;" in api
    app = _block(https, "        location / {")
    assert "root $echobase_web_live;" in app
    assert "try_files $uri /index.html;" in app  # the SPA fallback
    assert "proxy_pass" not in app
    assets = _block(https, "        location ^~ /assets/")
    assert "try_files $uri @assets_other_live;" in assets
    other = _block(https, "        location @assets_other_live")
    assert "root $echobase_web_idle;" in other


def test_app_headers_policy_and_caching() -> None:
    config = render_config(make_spec(web_roots=WEB))
    https = _block(config, "    server {\n        listen 127.0.0.1:8443")
    for opening, cache in (
        ("        location / {", "no-cache"),
        ("        location = /index.html", "no-cache"),
        ("        location ^~ /assets/", "public, max-age=31536000, immutable"),
        ("        location @assets_other_live", "public, max-age=31536000, immutable"),
    ):
        block = _block(https, opening)
        assert f'add_header Cache-Control "{cache}";' in block, opening  # not on errors
        assert f'add_header Content-Security-Policy "{CONTENT_SECURITY_POLICY}" always;' in block
        assert 'add_header X-Frame-Options "DENY" always;' in block
        assert 'add_header X-Served-By "$echobase_live" always;' in block
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "'unsafe-eval'" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_direct_ports_serve_their_own_colours_app() -> None:
    config = render_config(make_spec(web_roots=WEB))
    for colour, port, other in (("blue", 8081, "green"), ("green", 8082, "blue")):
        server = _block(config, f"    server {{\n        listen 127.0.0.1:{port};")
        assert f"root /srv/eb/web/{colour};" in _block(server, "        location / {")
        assert f"root /srv/eb/web/{other};" in _block(
            server, f"        location @assets_other_{colour}"
        )
        assert f"proxy_pass http://echobase_{colour};" in server
        assert f'{{"error":"{colour} has no app","colour":"{colour}"}}' in server


def test_a_colour_without_an_app_link_points_nowhere() -> None:
    config = render_config(make_spec())
    assert f"default {HOME}/no-web-root;" in config
    assert f"root {HOME}/no-web-root;" in config


@pytest.mark.parametrize(
    "web_roots",
    [{"purple": Path("/srv/x")}, {"blue": Path("relative/x")}, {"blue": Path("/srv/a b")}],
)
def test_bad_web_roots_are_refused(web_roots) -> None:
    with pytest.raises(ValueError):
        render_config(make_spec(web_roots=web_roots))


def test_the_apps_files_get_their_mime_types() -> None:
    types = _block(render_config(make_spec(web_roots=WEB)), "    types {")
    assert "application/javascript js mjs;" in types
    assert "text/css css;" in types
    assert "text/html html;" in types
    assert "image/svg+xml svg;" in types


def test_metrics_reach_the_gateway_on_direct_ports_but_not_in_production() -> None:
    assert re.match(GATEWAY_ROUTES, "/metrics") and not re.match(GATEWAY_ROUTES, "/metricsx")
    https = _block(
        render_config(make_spec(web_roots=WEB)),
        "    server {\n        listen 127.0.0.1:8443",
    )
    # nginx tries exact locations before regular expressions
    assert "location = /metrics {" in https and "return 404" in _block(
        https, "        location = /metrics"
    )
