"""The durable layer's load balancer, rendered: nginx's whole configuration, routing
production traffic to the live colour.

Which colour is live is not in the config: nginx reads it per request from the routing
state (``render/routing.py``), so a switch reloads nothing. The config says how to route;
every route that depends on the colour reads ``$echobase_live``, and ``GET /.active-env``
answers it. Pure: ``durable/nginx.py`` validates a new file with ``nginx -t``, installs it
and switches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from echobase.app.core.names import MCP_PATH
from echobase.platform.render import routing
from echobase.platform.render.routing import NO_COLOUR
from echobase.platform.stack import COLOURS

# Debian's libnginx-mod-http-js: per-request routing from the routing state (see routing.py).
NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")

TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

# What belongs to a colour's API gateway; every other path is its browser app. (/metrics is
# for the direct ports: production answers it with a 404 from an exact location first.)
GATEWAY_ROUTES = r"^/(api/|health$|openapi\.json$|metrics$)"
# The app's policy: its own files only. No inline script or style, no framing, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Vite names every file under /assets/ by its content's hash, so it may be cached for good;
# index.html names those files, so it must be asked for again each time.
ASSETS_CACHE = "public, max-age=31536000, immutable"
INDEX_CACHE = "no-cache"
# The app's kinds of file. The config is standalone (nothing from /etc/nginx), and with
# X-Content-Type-Options: nosniff a browser refuses a module script sent as octet-stream.
MIME_TYPES = {
    "text/html": "html",
    "text/css": "css",
    "text/plain": "txt",
    "application/javascript": "js mjs",
    "application/json": "json map",
    "application/manifest+json": "webmanifest",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpg jpeg",
    "image/webp": "webp",
    "image/x-icon": "ico",
    "font/woff2": "woff2",
}
COMPRESSED_TYPES = ("text/css", "application/javascript", "image/svg+xml", "application/json")

# Requests to /prometheus/ let through at once before the 10 per second applies. Opening the
# echobase console dashboard is ~25 (the page, its scripts and styles, one query per graph);
# at 20 its last graphs were refused (429). 20 more guesses, once, cost a worker ~0.3 s.
PROMETHEUS_BURST = 40

# Basic auth is verified with crypt() inside an nginx worker, synchronously, on every request
# (browsers resend the credentials each time), so the cost stalls production traffic sharing
# that worker. Measured with libxcrypt on the dev box: cost 8 = ~13 ms, 10 = ~51 ms,
# 12 = ~200 ms. 8 keeps a Prometheus dashboard refresh from adding visible latency to the API
# while still being a slow hash; the password's own entropy is what protects a leaked file.
HTPASSWD_BCRYPT_ROUNDS = 8

# The platform's own metrics (the live colour, deploy counters) for Prometheus on this
# machine, on the HTTPS port beside /.active-env; the counters come from a file that
# bluegreen.event_metrics rewrites, included by an internal subrequest (SSI).
PLATFORM_METRICS_PATH = "/.platform-metrics"
_PLATFORM_EVENTS_PATH = "/.platform-events"
LIVE_COLOUR_METRIC = "echobase_live_colour"

# The weights of both colours: {"active": ..., "live": ..., "weights": {...}, "canary": ...}.
ROUTING_PATH = "/.routing"
TRAFFIC_WEIGHT_METRIC = "echobase_colour_traffic_percent"

_NO_COLOUR_LIVE_PATH = "/.no-colour-live"
# How earlier versions recorded the live colour in the config (read once, to carry it over).
_LIVE_LINE = re.compile(r"^[ \t]*set[ \t]+\$echobase_live[ \t]+(\S+?)[ \t]*;", re.MULTILINE)
# What is interpolated into the config must not be able to end a directive or open a block.
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9._:/@+\-\[\]]+$")


@dataclass(frozen=True)
class LoadBalancerSpec:
    env: str  # "devlocal" | "ci"
    home: Path  # nginx state dir: config, temp dirs, logs, pid
    host: str  # listen address, "127.0.0.1"
    http_port: int
    https_port: int
    direct_ports: Mapping[str, int]  # colour -> LB port that always goes to that colour
    upstreams: Mapping[str, int]  # colour -> that colour's API gateway port on host
    prometheus_port: int
    cert_file: Path
    key_file: Path
    htpasswd_file: Path
    worker_user: str | None = None  # "user" or "user group"; only when the master is root
    # colour -> the link to that colour's browser app (see platform.frontend); a colour
    # without one answers 503 for the app's pages.
    web_roots: Mapping[str, Path] = field(default_factory=dict)
    # The durable recommendations service, served at MCP_PATH; None: no such route.
    mcp_port: int | None = None
    njs_module: Path = NJS_MODULE
    # The nginx binary, as found on this machine by the runtime (a plain name: through PATH).
    binary: str = "nginx"
    # In containers (render/compose.py) every upstream is a name, not ``host``: a colour's
    # gateway (colour -> host), Prometheus and MCP; with ``resolver`` set they are
    # re-resolved, so nginx starts before the colours exist. ``web_upstreams`` (colour ->
    # "host:port" of the colour's own web server) proxies the browser app instead of
    # serving ``web_roots``. The defaults are this machine's LB, unchanged.
    upstream_hosts: Mapping[str, str] = field(default_factory=dict)
    prometheus_host: str = "127.0.0.1"
    mcp_host: str | None = None
    web_upstreams: Mapping[str, str] = field(default_factory=dict)
    resolver: str | None = None

    @property
    def routing(self) -> routing.RoutingFiles:
        return routing.RoutingFiles(self.home)

    @property
    def config_path(self) -> Path:
        return self.home / "nginx.conf"

    @property
    def new_config_path(self) -> Path:
        return self.home / "nginx.conf.new"

    @property
    def lock_path(self) -> Path:
        return self.home / "nginx.conf.lock"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def error_log(self) -> Path:
        return self.log_dir / "error.log"

    @property
    def access_log(self) -> Path:
        return self.log_dir / "access.log"

    @property
    def pid_file(self) -> Path:
        # nginx's own: a retiring master unlinks it on exit, even after its successor
        # rewrote it, so nothing of ours reads it (see master_pid_file).
        return self.home / "nginx.pid"

    @property
    def master_pid_file(self) -> Path:
        """The running master's pid, written by the launcher just before it becomes nginx;
        only a later launcher replaces it."""
        return self.home / "master.pid"

    @property
    def platform_events_file(self) -> Path:
        """The deploy, switch and rollback counters nginx serves at PLATFORM_METRICS_PATH."""
        return self.home / "platform-events.prom"

    @property
    def temp_root(self) -> Path:
        return self.home / "temp"

    def temp_dir(self, kind: str) -> Path:
        if kind not in TEMP_KINDS:
            raise ValueError(f"unknown nginx temp kind {kind!r}")
        return self.temp_root / kind

    @property
    def https_url(self) -> str:
        return f"https://{self.host}:{self.https_port}"


# --- pure: rendering and parsing ------------------------------------------------------------


def active_env_body(active: str | None) -> str:
    """The exact body of ``GET /.active-env``: the colour (or "none") and a newline."""
    return f"{active or NO_COLOUR}\n"


def parse_active_env(body: str) -> str | None:
    """Inverse of :func:`active_env_body`, for callers reading the endpoint."""
    value = body.strip()
    if value == NO_COLOUR:
        return None
    if value not in COLOURS:
        raise ValueError(f"unexpected /.active-env body {body!r}")
    return value


def legacy_active(config_text: str) -> str | None:
    """The live colour as a config rendered by an earlier version recorded it (one
    ``set $echobase_live`` line); None when no colour was live. ValueError when absent."""
    found = _LIVE_LINE.findall(config_text)
    if len(found) != 1:
        raise ValueError(f"expected exactly one live-colour line, found {len(found)}")
    value = found[0].strip('"')
    if value == NO_COLOUR:
        return None
    if value not in COLOURS:
        raise ValueError(f"unknown live colour {value!r}")
    return value


def render_config(spec: LoadBalancerSpec) -> str:
    _validate(spec)
    main_lines, http_lines = routing.config_lines(spec.routing, spec.njs_module)
    lines: list[str] = [
        f"# echobase load balancer ({spec.env}). Rendered by echobase.platform.durable.nginx:",
        f"# do not edit by hand. The live colour is in {routing.STATE_FILE}, read per request.",
        *main_lines,
        "daemon off;  # supervisor owns the process",
        "worker_processes 2;",
        f"pid {spec.pid_file};",
        f"error_log {spec.error_log} warn;",
        # Old workers finish in-flight requests after a reload, but not forever.
        "worker_shutdown_timeout 30s;",
    ]
    if spec.worker_user:
        lines.append(f"user {spec.worker_user};")
    lines += [
        "",
        "events {",
        "    worker_connections 1024;",
        "}",
        "",
        "http {",
        "    server_tokens off;",
        "    default_type application/octet-stream;",
        "    types {",
        *(f"        {kind} {suffixes};" for kind, suffixes in MIME_TYPES.items()),
        "    }",
        # Query strings are left out of the log on purpose: they may carry tokens.
        "    log_format echobase escape=json",
        f'        \'{{"time":"$time_iso8601","env":"{spec.env}",\'',
        '        \'"remote":"$remote_addr","method":"$request_method","path":"$uri",\'',
        '        \'"status":$status,"bytes":$body_bytes_sent,"request_time":$request_time,\'',
        '        \'"upstream":"$upstream_addr","upstream_status":"$upstream_status",\'',
        '        \'"upstream_time":"$upstream_response_time",\'',
        '        \'"served_by":"$sent_http_x_served_by","request_id":"$request_id"}\';',
        f"    access_log {spec.access_log} echobase;",
        "",
        # The live colour, per request: routing, X-Served-By, /.active-env and the gauge
        # all read this one variable.
        *http_lines,
        "",
    ]
    lines += [f"    {kind}_temp_path {spec.temp_dir(kind)};" for kind in TEMP_KINDS]
    lines += [
        "",
        "    client_max_body_size 2m;  # the gateway enforces 1 MiB itself, with its own JSON",
        "    client_header_timeout 10s;",
        "    client_body_timeout 15s;",
        "    send_timeout 30s;",
        "    keepalive_timeout 65s;",
        "",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;",
        "    ssl_prefer_server_ciphers off;",
        "    ssl_session_cache shared:echobase_tls:10m;",
        "    ssl_session_timeout 1d;",
        "    ssl_session_tickets off;",
        "",
        # The gateway sends its own versions of these; nginx's are the ones clients must see,
        # exactly once each.
        "    proxy_hide_header Strict-Transport-Security;",
        "    proxy_hide_header X-Content-Type-Options;",
        "    proxy_hide_header X-Frame-Options;",
        "    proxy_hide_header Referrer-Policy;",
        "    proxy_hide_header X-Served-By;",
        # Without this, nginx's own errors would still come back but so would the API's: only
        # connection failures and timeouts must turn into the JSON from @unavailable_*.
        "    proxy_intercept_errors off;",
        "    proxy_connect_timeout 3s;",
        "    proxy_send_timeout 30s;",
        "    proxy_read_timeout 30s;",
        "",
        # Basic auth costs a bcrypt per request in the worker: throttle it before it runs.
        "    limit_req_zone $binary_remote_addr zone=echobase_prometheus:1m rate=10r/s;",
        "    limit_req_status 429;",
        "",
        *_platform_metrics_maps(),
    ]
    resolve = spec.resolver is not None
    if resolve:
        lines += [f"    resolver {spec.resolver} valid=10s ipv6=off;", ""]
    for colour in sorted(spec.upstreams):
        host = spec.upstream_hosts.get(colour, spec.host)
        lines += _upstream(f"echobase_{colour}", host, spec.upstreams[colour], resolve)
    for colour in sorted(spec.web_upstreams):
        web_host, web_port = spec.web_upstreams[colour].rsplit(":", 1)
        lines += _upstream(f"echobase_web_{colour}", web_host, int(web_port), resolve)
    lines += _web_root_maps(spec)
    lines += _upstream("echobase_prometheus", spec.prometheus_host, spec.prometheus_port, resolve)
    if spec.mcp_port is not None:
        lines += _upstream("echobase_mcp", spec.mcp_host or spec.host, spec.mcp_port, resolve)
    lines += _redirect_server(spec)
    lines += _https_server(spec)
    for colour in sorted(spec.direct_ports):
        lines += _direct_server(spec, colour)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _upstream(name: str, host: str, port: int, resolve: bool = False) -> list[str]:
    # "resolve" (open-source nginx >= 1.27.3) needs the group in shared memory.
    zone = [f"        zone {name} 64k;"] if resolve else []
    return [
        f"    upstream {name} {{",
        *zone,
        f"        server {host}:{port} max_fails=0{' resolve' if resolve else ''};",
        "        keepalive 16;",
        # Under uvicorn's 5 s keep-alive, so nginx never reuses a connection the server is
        # closing (that race shows up as a spurious 502).
        "        keepalive_timeout 4s;",
        "    }",
        "",
    ]


def _security_headers(https: bool) -> list[str]:
    headers = [
        'add_header X-Content-Type-Options "nosniff" always;',
        'add_header X-Frame-Options "DENY" always;',
        'add_header Referrer-Policy "no-referrer" always;',
    ]
    if https:
        # Browsers ignore HSTS over plain http, so it is only sent where it means something.
        headers.insert(0, 'add_header Strict-Transport-Security "max-age=31536000" always;')
    return headers


def _headers(
    indent: str, https: bool, served_by: str | None = None, bucket_cookie: bool = False
) -> list[str]:
    # Any add_header in a location replaces every inherited one, so each location that adds a
    # header of its own repeats the security headers.
    lines = [indent + line for line in _security_headers(https)]
    if served_by is not None:
        lines.append(f'{indent}add_header X-Served-By "{served_by}" always;')
    if bucket_cookie:
        # Empty (so not sent) unless a canary runs and the user has no bucket yet.
        lines.append(f"{indent}add_header Set-Cookie ${routing.COOKIE_VARIABLE} always;")
    return lines


def _proxy(indent: str, upstream: str, clear_authorization: bool = False) -> list[str]:
    lines = [
        f"proxy_pass http://{upstream};",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";  # keep upstream connections alive',
        "proxy_set_header Host $host;",
        # nginx is the edge: whatever a client wrote into X-Forwarded-For is replaced, not
        # appended to. Appended, a loopback client's spoofed hop sat before 127.0.0.1 (a
        # trusted proxy), so the gateway took it as the client and the rate limit was
        # evaded (found by tests/security).
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Real-IP $remote_addr;",
        'proxy_set_header Forwarded "";',
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host $host;",
        "proxy_set_header X-Forwarded-Port $server_port;",
    ]
    if clear_authorization:
        # The Basic credentials are nginx's business; the backend never needs to see them.
        lines.append('proxy_set_header Authorization "";')
    return [indent + line for line in lines]


def _json_error(
    indent: str, name: str, https: bool, served_by: str | None, message: str
) -> list[str]:
    # Status 503 whatever nginx saw (refused, reset, timed out): the backend is not answering.
    body = (
        f'{{"error":"{message}","colour":"{served_by}"}}'
        if served_by
        else f'{{"error":"{message}"}}'
    )
    return [
        f"{indent}location @{name} {{",
        f"{indent}    default_type application/json;",
        *_headers(indent + "    ", https, served_by),
        f'{indent}    add_header Cache-Control "no-store" always;',
        f"{indent}    return 503 '{body}\\n';",
        f"{indent}}}",
    ]


def _redirect_server(spec: LoadBalancerSpec) -> list[str]:
    port = "" if spec.https_port == 443 else f":{spec.https_port}"
    return [
        "    # Plain http: everything moves to https, keeping host, path and query.",
        "    server {",
        f"        listen {spec.host}:{spec.http_port};",
        *_headers("        ", https=False),
        f"        return 301 https://$host{port}$request_uri;",
        "    }",
        "",
    ]


def _https_server(spec: LoadBalancerSpec) -> list[str]:
    i2, i3 = " " * 8, " " * 12
    lines = [
        "    server {",
        f"        listen {spec.host}:{spec.https_port} ssl http2;",
        f"        ssl_certificate {spec.cert_file};",
        f"        ssl_certificate_key {spec.key_file};",
        "",
        *_headers(i2, https=True),
        "",
        "        location = /.active-env {",
        "            default_type text/plain;",
        *_headers(i3, https=True),
        '            add_header Cache-Control "no-store" always;',
        f'            return 200 "${routing.ACTIVE_VARIABLE}\\n";',
        "        }",
        # The weights (and the canary, if any), as JSON read from the same state.
        f"        location = {ROUTING_PATH} {{",
        "            default_type application/json;",
        *_headers(i3, https=True),
        '            add_header Cache-Control "no-store" always;',
        f"            return 200 '${routing.WEIGHTS_VARIABLE}\\n';",
        "        }",
        "",
        # The services' metrics are for Prometheus, which scrapes them on their own ports;
        # production traffic never sees them.
        "        location = /metrics {",
        "            default_type application/json;",
        *_headers(i3, https=True),
        '            return 404 "{\\"error\\":\\"not found\\"}";',
        "        }",
        "",
        *_platform_metrics_routes(spec, i2),
        "        location /prometheus/ {",
        f"            limit_req zone=echobase_prometheus burst={PROMETHEUS_BURST} nodelay;",
        f'            auth_basic "echobase {spec.env} prometheus";',
        f"            auth_basic_user_file {spec.htpasswd_file};",
        # No URI part on proxy_pass: the /prometheus/ prefix reaches Prometheus intact,
        # matching its --web.route-prefix.
        *_proxy(i3, "echobase_prometheus", clear_authorization=True),
        "            error_page 502 503 504 = @unavailable_prometheus;",
        "        }",
        *_json_error(i2, "unavailable_prometheus", True, None, "prometheus is unavailable"),
        "",
        *_mcp_route(spec, i2),
    ]
    # Variables resolve against the upstream blocks and the maps above, so the live
    # colour is still named only once.
    lines += _colour_routes(
        i2,
        https=True,
        upstream="echobase_$echobase_live",
        served_by="$echobase_live",
        name="live",
        web_root="$echobase_web_live",
        other_web_root="$echobase_web_idle",
        closed_when_none=True,
        web_upstream="echobase_web_$echobase_live" if spec.web_upstreams else None,
    )
    lines += [
        # No colour is live: production routes answer 503 without touching either.
        f"        location = {_NO_COLOUR_LIVE_PATH} {{",
        "            internal;",
        "            default_type application/json;",
        *_headers(i3, https=True, served_by=NO_COLOUR),
        '            add_header Cache-Control "no-store" always;',
        '            return 503 \'{"error":"no colour is live"}\\n\';',
        "        }",
    ]
    lines += ["    }", ""]
    return lines


def _platform_metrics_maps() -> list[str]:
    """$echobase_loopback (1 for a loopback peer) and $echobase_live_<colour> (1 for the
    live colour, else 0), both resolved per request from what the server knows."""
    lines = [
        "    geo $echobase_loopback {",
        "        default 0;",
        "        127.0.0.0/8 1;",
        "        ::1 1;",
        "    }",
        "",
    ]
    for colour in COLOURS:
        lines += [
            f"    map ${routing.ACTIVE_VARIABLE} $echobase_live_{colour} {{",
            f"        {colour} 1;",
            "        default 0;",
            "    }",
        ]
    return [*lines, ""]


def platform_metrics_body() -> str:
    """What ``return`` answers at PLATFORM_METRICS_PATH, as nginx config text: the gauges read
    from the routing state (the record itself, so they never disagree with routing), then the
    counters file; a missing file includes nothing rather than an error page."""
    gauge = [
        f"# HELP {LIVE_COLOUR_METRIC} 1 for the colour most users go to, 0 for the other",
        f"# TYPE {LIVE_COLOUR_METRIC} gauge",
        *(f'{LIVE_COLOUR_METRIC}{{colour="{c}"}} $echobase_live_{c}' for c in COLOURS),
        f"# HELP {TRAFFIC_WEIGHT_METRIC} percent of users each colour serves (a canary: both)",
        f"# TYPE {TRAFFIC_WEIGHT_METRIC} gauge",
        *(
            f'{TRAFFIC_WEIGHT_METRIC}{{colour="{c}"}} ${routing.weight_variable(c)}'
            for c in COLOURS
        ),
    ]
    include = (
        '<!--# block name="no_events" --><!--# endblock -->'
        f'<!--# include virtual="{_PLATFORM_EVENTS_PATH}" stub="no_events" -->'
    )
    return "\\n".join(gauge) + "\\n" + include


def _platform_metrics_routes(spec: LoadBalancerSpec, indent: str) -> list[str]:
    inner = indent + "    "
    return [
        f"{indent}location = {PLATFORM_METRICS_PATH} {{",
        # "if" and "return" both run in the rewrite phase, before allow/deny would.
        f"{inner}if ($echobase_loopback = 0) {{",
        f'{inner}    return 403 "forbidden\\n";',
        f"{inner}}}",
        f"{inner}default_type text/plain;",
        f"{inner}ssi on;",
        f"{inner}ssi_types text/plain;",
        *_headers(inner, https=True),
        f'{inner}add_header Cache-Control "no-store" always;',
        f"{inner}return 200 '{platform_metrics_body()}';",
        f"{indent}}}",
        f"{indent}location = {_PLATFORM_EVENTS_PATH} {{",
        f"{inner}internal;",
        f"{inner}default_type text/plain;",
        f"{inner}alias {spec.platform_events_file};",
        f"{indent}}}",
        "",
    ]


def _mcp_route(spec: LoadBalancerSpec, indent: str) -> list[str]:
    """The recommendations service for MCP clients. Its own API key check refuses anyone
    without the key (one place decides), so nginx passes the header along untouched."""
    if spec.mcp_port is None:
        return []
    inner = indent + "    "
    return [
        f"{indent}location = {MCP_PATH} {{",
        *_proxy(inner, "echobase_mcp"),
        # Streamable HTTP may answer with an event stream: pass each event on as it comes.
        f"{inner}proxy_buffering off;",
        f"{inner}error_page 502 503 504 = @unavailable_mcp;",
        f"{indent}}}",
        *_json_error(indent, "unavailable_mcp", True, None, "recommendations are unavailable"),
        "",
    ]


def _web_root_maps(spec: LoadBalancerSpec) -> list[str]:
    """$echobase_web_live / $echobase_web_idle: the live and the other colour's app files."""
    lines = []
    for variable, pick in (("live", lambda c: c), ("idle", _other)):
        lines.append(f"    map $echobase_live $echobase_web_{variable} {{")
        lines += [f"        {colour} {_web_root(spec, pick(colour))};" for colour in COLOURS]
        lines += [f"        default {spec.home / 'no-web-root'};", "    }", ""]
    return lines


def _other(colour: str) -> str:
    return COLOURS[1 - COLOURS.index(colour)]


def _web_root(spec: LoadBalancerSpec, colour: str) -> Path:
    # A path that never exists stands in for a colour without an app: try_files then falls
    # through to the 503.
    return spec.web_roots.get(colour, spec.home / "no-web-root")


def _colour_routes(
    indent: str,
    https: bool,
    upstream: str,
    served_by: str,
    name: str,
    web_root: Path | str,
    other_web_root: Path | str,
    closed_when_none: bool = False,
    web_upstream: str | None = None,
) -> list[str]:
    """One colour as a browser sees it: its API gateway's routes, and its app's files with
    the SPA fallback (any other path is index.html, which routes on the client).
    ``closed_when_none``: production's routes. The colour is $echobase_live, which may be
    "none"; then every route answers the 503 of _NO_COLOUR_LIVE_PATH (a rewrite in an "if",
    one of its safe uses). During a canary they also give a user without one a bucket
    cookie."""
    inner = indent + "    "
    closed = (
        [
            f"{inner}if ($echobase_live = {NO_COLOUR}) {{",
            f"{inner}    rewrite ^ {_NO_COLOUR_LIVE_PATH} last;",
            f"{inner}}}",
        ]
        if closed_when_none
        else []
    )

    def static(cache: str | None) -> list[str]:
        # Compressed here only: the app's files hold no secret, whereas gzip on the API's
        # answers would open them to BREACH-style guessing.
        lines = [
            f"{inner}gzip on;",
            f"{inner}gzip_vary on;",
            # Measured with bench/frontend.py: a first visit moved 105,766 B at level 1 (the
            # default) and 91,068 B at 6; gzip -9 of the same files is 88,386 B.
            f"{inner}gzip_comp_level 6;",
            f"{inner}gzip_types {' '.join(COMPRESSED_TYPES)};",
            *_headers(inner, https, served_by, bucket_cookie=closed_when_none),
        ]
        lines.append(
            f'{inner}add_header Content-Security-Policy "{CONTENT_SECURITY_POLICY}" always;'
        )
        if cache:
            # Without "always": an error must not be cached for a year.
            lines.append(f'{inner}add_header Cache-Control "{cache}";')
        return lines

    gateway = [
        f"{indent}location ~ {GATEWAY_ROUTES} {{",
        *closed,
        *_proxy(inner, upstream),
        *_headers(inner, https, served_by, bucket_cookie=closed_when_none),
        f"{inner}error_page 502 503 504 = @unavailable_{name};",
        f"{indent}}}",
        *_json_error(
            indent, f"unavailable_{name}", https, served_by, f"{served_by} is unavailable"
        ),
    ]
    if web_upstream is not None:
        # The colour's own web server has the files and the SPA fallback; nginx adds the
        # same headers and caching as for files it serves itself.
        return [
            *gateway,
            f"{indent}location ^~ /assets/ {{",
            *closed,
            *_proxy(inner, web_upstream),
            f"{inner}error_page 502 503 504 = @no_app_{name};",
            *static(ASSETS_CACHE),
            f"{indent}}}",
            f"{indent}location / {{",
            *closed,
            *_proxy(inner, web_upstream),
            f"{inner}error_page 502 503 504 = @no_app_{name};",
            *static(INDEX_CACHE),
            f"{indent}}}",
            *_json_error(indent, f"no_app_{name}", https, served_by, f"{served_by} has no app"),
        ]
    return [
        *gateway,
        f"{indent}location / {{",
        *closed,
        f"{inner}root {web_root};",
        f"{inner}try_files $uri /index.html;",
        *static(INDEX_CACHE),
        f"{indent}}}",
        f"{indent}location = /index.html {{",
        *closed,
        f"{inner}root {web_root};",
        f"{inner}try_files $uri @no_app_{name};",
        *static(INDEX_CACHE),
        f"{indent}}}",
        *_json_error(indent, f"no_app_{name}", https, served_by, f"{served_by} has no app"),
        f"{indent}location ^~ /assets/ {{",
        *closed,
        f"{inner}root {web_root};",
        # A page loaded just before a switch may still ask for its own hashed files: the
        # other colour's copies are the same bytes under the same names.
        f"{inner}try_files $uri @assets_other_{name};",
        *static(ASSETS_CACHE),
        f"{indent}}}",
        f"{indent}location @assets_other_{name} {{",
        f"{inner}root {other_web_root};",
        *static(ASSETS_CACHE),
        f"{indent}}}",
    ]


def _direct_server(spec: LoadBalancerSpec, colour: str) -> list[str]:
    return [
        f"    # Direct to {colour}, live or not: smoke tests before and after a switch.",
        "    server {",
        f"        listen {spec.host}:{spec.direct_ports[colour]};",
        *_headers("        ", https=False),
        *_colour_routes(
            " " * 8,
            https=False,
            upstream=f"echobase_{colour}",
            served_by=colour,
            name=colour,
            web_root=_web_root(spec, colour),
            other_web_root=_web_root(spec, _other(colour)),
            web_upstream=f"echobase_web_{colour}" if colour in spec.web_upstreams else None,
        ),
        "    }",
        "",
    ]


def _validate(spec: LoadBalancerSpec) -> None:
    for mapping, what in ((spec.upstreams, "upstreams"), (spec.direct_ports, "direct_ports")):
        unknown = set(mapping) - set(COLOURS)
        if unknown:
            raise ValueError(f"{what} has unknown colours {sorted(unknown)}")
    missing = set(spec.direct_ports) - set(spec.upstreams)
    if missing:
        raise ValueError(f"direct ports without an upstream: {sorted(missing)}")
    ports = [
        spec.http_port,
        spec.https_port,
        spec.prometheus_port,
        *([] if spec.mcp_port is None else [spec.mcp_port]),
        *spec.direct_ports.values(),
        *spec.upstreams.values(),
    ]
    for port in ports:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"bad port {port!r}")
    listening = [spec.http_port, spec.https_port, *spec.direct_ports.values()]
    if len(set(listening)) != len(listening):
        raise ValueError("the load balancer's listen ports must be distinct")
    tokens = [spec.env, spec.host, *(spec.worker_user or "").split()]
    tokens += [str(spec.home), str(spec.cert_file), str(spec.key_file), str(spec.htpasswd_file)]
    tokens += [str(path) for path in spec.web_roots.values()]
    tokens += [*spec.upstream_hosts.values(), *spec.web_upstreams.values(), spec.prometheus_host]
    tokens += [spec.mcp_host or spec.host, *([spec.resolver] if spec.resolver else [])]
    for mapping, what in ((spec.upstream_hosts, "upstream_hosts"), (spec.web_upstreams, "web")):
        if set(mapping) - set(COLOURS):
            raise ValueError(f"{what} has unknown colours {sorted(set(mapping) - set(COLOURS))}")
    for address in spec.web_upstreams.values():
        if not re.fullmatch(r"[A-Za-z0-9.\-]+:\d{1,5}", address):
            raise ValueError(f"a web upstream is host:port, not {address!r}")
    unknown_roots = set(spec.web_roots) - set(COLOURS)
    if unknown_roots:
        raise ValueError(f"web_roots has unknown colours {sorted(unknown_roots)}")
    for token in tokens:
        if not _SAFE_TOKEN.match(token):
            raise ValueError(f"unsafe value for an nginx config: {token!r}")
    if spec.worker_user is not None and len(spec.worker_user.split()) not in (1, 2):
        raise ValueError("worker_user is 'user' or 'user group'")
    for path in (
        spec.home,
        spec.cert_file,
        spec.key_file,
        spec.htpasswd_file,
        *spec.web_roots.values(),
    ):
        if not path.is_absolute():
            raise ValueError(f"{path} must be absolute")


def server_command(spec: LoadBalancerSpec) -> list[str]:
    return [
        spec.binary,
        "-p",
        f"{spec.home}/",
        "-c",
        str(spec.config_path),
        "-e",
        str(spec.error_log),
    ]


def check_command(spec: LoadBalancerSpec, config_path: Path) -> list[str]:
    return [
        spec.binary,
        "-t",
        "-q",
        "-p",
        f"{spec.home}/",
        "-c",
        str(config_path),
        "-e",
        str(spec.error_log),
    ]


# --- the supervised launcher (it runs durable/nginx.py's main) ---------------------------
# A SIGKILLed master leaves its workers running: reparented to init, still holding the
# listening sockets and serving with the config they had (measured: supervisor's restarts
# then failed "address already in use" in a loop, each lasting past startsecs, so the
# program looked RUNNING while switches reached nobody). The program supervisor runs is this
# launcher: it retires the previous master's group, by the pid it recorded for that master
# (the master rewrites its environment with its process title, so SUPERVISOR_* cannot be
# read back), records its own pid, then becomes nginx (same pid, so supervisor signals nginx
# itself). The record is not nginx's pid file: the retiring master, still finishing requests
# after the new one started, unlinks that file when it exits (measured in the chaos suite: a
# second SIGKILL of supervisord then found no nginx to replace).


def launch_command(spec: LoadBalancerSpec, python: str) -> list[str]:
    ports = [spec.http_port, spec.https_port, *spec.direct_ports.values()]
    return [
        python,
        "-m",
        "echobase.platform.durable.nginx",
        "--pid-file",
        str(spec.master_pid_file),
        "--ports",
        ",".join(str(port) for port in ports),
        "--",
        *server_command(spec),
    ]
