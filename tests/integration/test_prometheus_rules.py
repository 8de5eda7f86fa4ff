"""The rendered rules, config and console dashboard against Debian's real promtool and
Prometheus: the files pass promtool's checks, every alert fires (and only) where its
description says, with the annotations people will read; a Prometheus started with the
platform's own command keeps exemplars, evaluates the rules and serves the dashboard with
every asset it names."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest

from echobase.app.queues import DEAD_LETTER_QUEUE, ORDER_QUEUE
from echobase.platform.durable import prometheus
from echobase.platform.durable.layer import write_prometheus_files
from echobase.platform.monitoring import console
from echobase.platform.monitoring.catalogue import ALERTS, PANELS
from echobase.platform.monitoring.rules import render_rules, to_yaml
from echobase.platform.monitoring.settings import MonitoringSettings
from echobase.platform.render.prometheus import (
    ROUTE_PREFIX,
    PrometheusSpec,
    ScrapeTarget,
    server_command,
)
from echobase.platform.runtime.processes import free_ports, spawn, terminate, wait_http

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="Debian's promtool not installed")

SETTINGS = MonitoringSettings(
    scrape_interval_seconds=1,
    evaluation_interval_seconds=1,
    rate_window_seconds=10,
    live_errors_for_seconds=3,
    queue_age_seconds=4,
    queue_age_for_seconds=2,
    dead_letters_for_seconds=0,
    target_down_for_seconds=2,
)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_accepts_the_rendered_rules_and_config(tmp_path: Path) -> None:
    spec = PrometheusSpec(
        "ci", tmp_path, "127.0.0.1", 9190, "https://lb/prometheus/", settings=SETTINGS
    )
    write_prometheus_files(spec)
    checked = promtool("check", "config", str(spec.config_file), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS) + 5} rules found" in checked.stdout + checked.stderr
    default = tmp_path / "default-rules.yml"
    default.write_text(render_rules(MonitoringSettings()))
    checked = promtool("check", "rules", str(default), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    matchers = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{matchers}}}", "values": values}


GREEN = {"env": "ci", "colour": "green", "layer": "ephemeral"}
BLUE = {"env": "ci", "colour": "blue", "layer": "ephemeral"}
PLATFORM = {"env": "ci", "layer": "durable", "service": "lb"}
ORDERS = {"route": "/api/v1/orders", "method": "POST", "service": "api-gateway"}

# One sample a second for a minute: green live with 10 % 5xx, blue idle with 50 %; green's
# processor stops answering at 10 s, its queue ages by a second a second from 0 s, and two
# orders land in its dead-letter queue at 10 s.
INPUT = [
    series("echobase_http_requests_total", "0+90x60", status="201", **GREEN, **ORDERS),
    series("echobase_http_requests_total", "0+10x60", status="503", **GREEN, **ORDERS),
    series("echobase_http_requests_total", "0+5x60", status="201", **BLUE, **ORDERS),
    series("echobase_http_requests_total", "0+5x60", status="500", **BLUE, **ORDERS),
    series("echobase_live_colour", "1x60", colour="green", **PLATFORM),
    series("echobase_live_colour", "0x60", colour="blue", **PLATFORM),
    series(
        "up",
        "1x9 0x50",
        instance="127.0.0.1:3201",
        job="echobase",
        service="order-processor",
        **GREEN,
    ),
    series("up", "1x60", instance="127.0.0.1:9190", job="echobase", service="prometheus", env="ci"),
    series(
        "echobase_queue_oldest_message_age_seconds",
        "0+1x60",
        queue=ORDER_QUEUE,
        service="sqs",
        **GREEN,
    ),
    series(
        "echobase_queue_oldest_message_age_seconds",
        "0x60",
        queue=ORDER_QUEUE,
        service="sqs",
        **BLUE,
    ),
    series(
        "echobase_queue_messages",
        "0x9 2x50",
        queue=DEAD_LETTER_QUEUE,
        state="visible",
        service="sqs",
        **GREEN,
    ),
    series(
        "echobase_queue_messages",
        "0x60",
        queue=DEAD_LETTER_QUEUE,
        state="in_flight",
        service="sqs",
        **GREEN,
    ),
]


def expected(name: str, labels: dict[str, str], summary: str, description: str) -> dict:
    severity = next(alert.severity for alert in ALERTS if alert.name == name)
    return {
        "exp_labels": {"severity": severity, **labels},
        "exp_annotations": {"summary": summary, "description": description},
    }


@needs_promtool
def test_each_alert_fires_where_and_when_it_should(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(render_rules(SETTINGS))
    green = {"env": "ci", "colour": "green"}
    target = {
        **GREEN,
        "instance": "127.0.0.1:3201",
        "job": "echobase",
        "service": "order-processor",
    }
    cases = [
        # Before each alert has lasted its `for:`, nothing.
        {"eval_time": "2s", "alertname": "EchobaseQueueBacklog", "exp_alerts": []},
        {"eval_time": "9s", "alertname": "EchobaseTargetDown", "exp_alerts": []},
        {"eval_time": "9s", "alertname": "EchobaseDeadLetters", "exp_alerts": []},
        {
            "eval_time": "30s",
            "alertname": "EchobaseLiveColourErrors",  # green only: blue's 50 % is idle
            "exp_alerts": [
                expected(
                    "EchobaseLiveColourErrors",
                    green,
                    "live colour green answers 10% 5xx",
                    "10% of the answers of green, the live colour of ci, are server errors: "
                    "users see them. Compare with the idle colour and roll back (`echobase "
                    "rollback`) if it is the release.",
                )
            ],
        },
        {
            "eval_time": "20s",
            "alertname": "EchobaseTargetDown",
            "exp_alerts": [
                expected(
                    "EchobaseTargetDown",
                    target,
                    "order-processor (green) does not answer Prometheus",
                    "Prometheus of ci cannot scrape order-processor (green) at "
                    "127.0.0.1:3201: the program is stopped or hung (see `echobase status`).",
                )
            ],
        },
        {
            "eval_time": "10s",
            "alertname": "EchobaseQueueBacklog",
            "exp_alerts": [
                expected(
                    "EchobaseQueueBacklog",
                    {**green, "queue": ORDER_QUEUE},
                    "orders wait in green's queue: the oldest is 10s old",
                    f"The oldest order in {ORDER_QUEUE} of colour green (ci) has waited 10s: "
                    "its order processor is stopped, failing or too slow.",
                )
            ],
        },
        {
            "eval_time": "12s",
            "alertname": "EchobaseDeadLetters",
            "exp_alerts": [
                expected(
                    "EchobaseDeadLetters",
                    {**green, "queue": DEAD_LETTER_QUEUE},
                    "2 order(s) in green's dead-letter queue",
                    f"2 order(s) failed every attempt in colour green (ci) and wait in "
                    f"{DEAD_LETTER_QUEUE}; the colour's order-processor log says why.",
                )
            ],
        },
    ]
    test_file = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1s",
        "tests": [{"interval": "1s", "input_series": INPUT, "alert_rule_test": cases}],
    }
    (tmp_path / "rules_test.yml").write_text(to_yaml(test_file))
    result = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- a running Prometheus, started with the platform's command ---------------------------------


class ExemplarTarget(BaseHTTPRequestHandler):
    """A scrape target serving OpenMetrics, the one format that carries exemplars."""

    registry = CollectorRegistry()
    histogram = Histogram(
        "echobase_http_request_duration_seconds",
        "Request duration",
        ["route", "method"],
        registry=registry,
    )

    def do_GET(self) -> None:
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return None


@dataclass
class Running:
    spec: PrometheusSpec
    http: httpx.Client


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    home = Path(tempfile.mkdtemp(prefix="eb-prom-", dir="/tmp"))
    port, target_port, closed_port = free_ports(3)
    spec = PrometheusSpec(
        "ci",
        home,
        "127.0.0.1",
        port,
        f"http://127.0.0.1:{port}{ROUTE_PREFIX}/",
        settings=SETTINGS,
    )
    # Observed now, not at import: an exemplar carries its observation's time, and one from
    # when pytest collected the module (40 min earlier in a whole CI run) falls outside the
    # window the test asks about.
    ExemplarTarget.histogram.labels("/api/v1/orders", "POST").observe(0.042, {"trace_id": TRACE_ID})
    server = ThreadingHTTPServer(("127.0.0.1", target_port), ExemplarTarget)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    process = None
    try:
        write_prometheus_files(spec)
        labels = {"env": "ci", "layer": "ephemeral", "colour": "green"}
        prometheus.write_targets(
            spec,
            "green",
            [
                ScrapeTarget(
                    f"127.0.0.1:{target_port}", "/metrics", {**labels, "service": "api-gateway"}
                ),
                # Nothing listens here: a target that is down.
                ScrapeTarget(f"127.0.0.1:{closed_port}", "/metrics", {**labels, "service": "sqs"}),
            ],
        )
        process = spawn(server_command(spec), home / "prometheus.log")
        wait_http(spec.ready_url, 60, process)
        with httpx.Client(base_url=spec.local_url, timeout=10) as http:
            yield Running(spec, http)
    finally:
        if process is not None:
            terminate(process)
        server.shutdown()
        server.server_close()
        shutil.rmtree(home, ignore_errors=True)


def poll(fetch, done, limit: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what} not within {limit}s: {value}"
        time.sleep(0.5)


def test_exemplars_are_kept(running: Running) -> None:
    def exemplars() -> list[dict]:
        now = time.time()
        answer = running.http.get(
            "/api/v1/query_exemplars",
            params={
                "query": "echobase_http_request_duration_seconds_bucket",
                "start": now - 600,
                "end": now + 60,
            },
        ).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    found = poll(exemplars, bool, 30, "an exemplar")
    labels = [exemplar["labels"] for group in found for exemplar in group["exemplars"]]
    assert {"trace_id": TRACE_ID} in labels


def test_rules_are_loaded_and_the_down_target_fires(running: Running) -> None:
    groups = running.http.get("/api/v1/rules").json()["data"]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {alert.name for alert in ALERTS} <= names

    def firing() -> list[dict]:
        alerts = running.http.get("/api/v1/alerts").json()["data"]["alerts"]
        return [a for a in alerts if a["state"] == "firing"]

    alerts = poll(firing, bool, 30, "the target-down alert")
    assert [(a["labels"]["alertname"], a["labels"]["service"]) for a in alerts] == [
        ("EchobaseTargetDown", "sqs")
    ]
    assert alerts[0]["annotations"]["summary"] == "sqs (green) does not answer Prometheus"
    health = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
    assert set(health.values()) <= {"ok", "unknown"}, health  # unknown: not evaluated yet


def test_the_dashboard_renders_with_every_asset_it_names(running: Running) -> None:
    page = running.http.get(f"/consoles/{console.TEMPLATE_NAME}")
    assert page.status_code == 200, page.text[-2000:]
    assert page.headers["content-type"].startswith("text/html")
    assert "error executing template" not in page.text
    for panel in PANELS:
        assert panel.title in page.text
    # The firing alert is listed server-side, by the template.
    assert "EchobaseTargetDown" in poll(
        lambda: running.http.get(f"/consoles/{console.TEMPLATE_NAME}").text,
        lambda text: "EchobaseTargetDown" in text,
        30,
        "the firing alert on the dashboard",
    )
    for asset in (*console.STYLESHEETS, *console.SCRIPTS, console.GRAPH_SCRIPT):
        served = running.http.get(f"/classic/static/{asset}")
        assert served.status_code == 200, asset
        kind = served.headers["content-type"]
        assert kind.startswith("text/css" if asset.endswith(".css") else "text/javascript"), (
            asset,
            kind,
        )
