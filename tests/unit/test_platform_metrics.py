"""Pure parts of the platform's metrics: queue depths from moto's messages, the deploy
counters from the history, how nginx serves them, and where Prometheus finds them."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from echobase.platform.bluegreen import event_metrics, history
from echobase.platform.queue_metrics import (
    QueueCollector,
    QueueDepth,
    QueueMetrics,
    combine,
    message_state,
    queue_depth,
)
from echobase.platform.render import nginx
from echobase.platform.render.durable import DurablePlan
from echobase.platform.stack import Stack, resolve_ports


@dataclass
class Msg:
    sent_timestamp: int | None
    visible_at: float = 0.0
    delayed_until: float = 0.0


NOW = 1_000_000.0  # ms


def test_a_message_is_delayed_then_visible_then_in_flight_until_its_timeout():
    assert message_state(Msg(1, delayed_until=NOW + 1), NOW) == "delayed"
    assert message_state(Msg(1), NOW) == "visible"
    assert message_state(Msg(1, visible_at=NOW + 30_000), NOW) == "in_flight"
    assert message_state(Msg(1, visible_at=NOW - 1), NOW) == "visible"  # timed out: back


def test_a_queue_counts_each_state_and_ages_its_oldest_message_of_any_state():
    messages = [
        Msg(int(NOW - 2_500)),
        Msg(int(NOW - 9_000), visible_at=NOW + 1),  # oldest, in flight
        Msg(int(NOW - 100), delayed_until=NOW + 5_000),
    ]
    assert queue_depth("q", messages, NOW) == QueueDepth("q", 1, 1, 1, 9.0)
    assert queue_depth("q", [], NOW) == QueueDepth("q", 0, 0, 0, 0.0)


def test_a_name_in_several_accounts_or_regions_adds_up_to_one_series():
    merged = combine(
        [QueueDepth("b", 1, 0, 0, 1.0), QueueDepth("a", 2), QueueDepth("b", 3, 1, 0, 4)]
    )
    assert merged == [QueueDepth("a", 2), QueueDepth("b", 4, 1, 0, 4.0)]


def exposition(depths: list[QueueDepth], method: str = "GET", path: str = "/metrics"):
    passed: list[str] = []

    def moto(environ, start_response):
        passed.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b"moto"]

    app = QueueMetrics(moto, QueueCollector(lambda: depths))
    answer: list = []
    body = b"".join(
        app(
            {"PATH_INFO": path, "REQUEST_METHOD": method, "HTTP_ACCEPT": "text/plain"},
            lambda status, headers: answer.extend([status, dict(headers)]),
        )
    )
    return answer, body.decode(), passed


def test_the_queue_server_answers_get_metrics_and_leaves_everything_else_to_moto():
    answer, text, passed = exposition([QueueDepth("orders", 3, 2, 1, 12.5)])
    assert passed == [] and answer[0] == "200 OK"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples == {
        ("echobase_queue_messages", (("queue", "orders"), ("state", "visible"))): 3,
        ("echobase_queue_messages", (("queue", "orders"), ("state", "in_flight"))): 2,
        ("echobase_queue_messages", (("queue", "orders"), ("state", "delayed"))): 1,
        ("echobase_queue_oldest_message_age_seconds", (("queue", "orders"),)): 12.5,
    }
    assert exposition([], method="POST")[2] == ["/metrics"]  # an AWS call, moto's
    assert exposition([], path="/123456789012/metrics")[2] == ["/123456789012/metrics"]


def ev(action: str, source: str, target: str, release: str | None, result: str = "ok"):
    return history.Event("t", "me", action, source, target, release, result, 1.0)


HISTORY = [
    ev("deploy", "none", "green", "r1"),
    ev("deploy", "green", "blue", "r2"),
    ev("rollback", "blue", "green", "r1"),
    ev("switch", "green", "blue", "r2"),
    ev("switch", "blue", "blue", "r2"),  # already live: nothing moved
    ev("deploy", "blue", "green", "r3", "failed"),
    ev("deploy", "blue", "green", "r4", "rolled back"),  # smoke failed, back to blue (r2)
    ev("down", "blue", "green", "r4"),
]
# Canaries, after the above (blue live with r2, green ran r4).
CANARIES = [
    ev("deploy", "blue", "green", "r5", "aborted"),  # its analysis aborted it
    ev("canary", "blue", "green", "r5"),
    ev("abort", "green", "blue", "r5"),  # by hand
    ev("canary", "blue", "green", "r5", "aborted"),
    ev("canary", "blue", "green", "r5"),
    ev("promote", "blue", "green", "r5"),
    ev("switch", "green", "blue", "r2", "rolled back"),  # its analysis switched back
]


def test_counters_follow_what_the_history_says_moved():
    assert dict(event_metrics.event_counts(HISTORY)) == {
        ("deploy", "green", "r1"): 1,
        ("deploy", "blue", "r2"): 1,
        ("rollback", "green", "r1"): 1,
        ("switch", "blue", "r2"): 1,
        ("rollback", "blue", "r2"): 1,
    }


def test_canaries_count_their_aborts_and_promotions_count_as_switches():
    counts = event_metrics.event_counts(HISTORY + CANARIES)
    assert counts["abort", "green", "r5"] == 3
    assert counts["switch", "green", "r5"] == 1  # the promotion
    assert counts["rollback", "green", "r5"] == 1  # the analysis went back to green (r5)
    assert counts["switch", "blue", "r2"] == 1  # the rolled-back switch moved nothing lasting


def test_counters_render_in_the_text_format_and_never_go_backwards(tmp_path):
    families = {f.name: f for f in text_string_to_metric_families(event_metrics.render(HISTORY))}
    assert set(families) == {
        "echobase_deploys",
        "echobase_switches",
        "echobase_rollbacks",
        "echobase_canary_aborts",
    }
    assert all(f.type == "counter" for f in families.values())
    rollbacks = {
        (s.labels["colour"], s.labels["release"]): s.value
        for s in families["echobase_rollbacks"].samples
    }
    assert rollbacks == {("green", "r1"): 1, ("blue", "r2"): 1}
    empty = event_metrics.render([])
    assert "# TYPE echobase_deploys_total counter" in empty and "{" not in empty

    target = tmp_path / "nginx" / "platform-events.prom"
    target.parent.mkdir()
    for event in HISTORY[:3]:
        history.record(tmp_path, event.action, event.source, event.target, event.release, "ok", 1)
    event_metrics.publish(tmp_path, target)
    first = {
        (s.name, tuple(s.labels.values())): s.value
        for f in text_string_to_metric_families(target.read_text())
        for s in f.samples
    }
    history.record(tmp_path, "deploy", "green", "blue", "r2", "ok", 1)
    event_metrics.publish(tmp_path, target)
    second = {
        (s.name, tuple(s.labels.values())): s.value
        for f in text_string_to_metric_families(target.read_text())
        for s in f.samples
    }
    assert all(second[key] >= value for key, value in first.items())
    assert second[("echobase_deploys_total", ("blue", "r2"))] == 2
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["platform-events.prom"]


def lb_spec() -> nginx.LoadBalancerSpec:
    home = Path("/srv/eb/lb")
    return nginx.LoadBalancerSpec(
        env="devlocal",
        home=home,
        host="127.0.0.1",
        http_port=8080,
        https_port=8443,
        direct_ports={"blue": 8081, "green": 8082},
        upstreams={"blue": 9001, "green": 9002},
        prometheus_port=9090,
        cert_file=home / "tls.crt",
        key_file=home / "tls.key",
        htpasswd_file=home / "htpasswd",
    )


def block(config: str, opening: str) -> str:
    start = config.index(opening)
    return config[start : config.index("\n        }\n", start)]


def test_nginx_serves_the_gauge_from_its_live_record_and_the_counters_from_the_file():
    spec = lb_spec()
    config = nginx.render_config(spec)
    assert "js_set $echobase_live " in config  # still the one record, read per request
    location = block(config, f"location = {nginx.PLATFORM_METRICS_PATH} {{")
    # Loopback only, checked in the same (rewrite) phase as the return, and before it.
    assert location.index("if ($echobase_loopback = 0)") < location.index("return 403")
    assert location.index("return 403") < location.index("return 200")
    assert 'echobase_live_colour{colour="blue"} $echobase_live_blue' in location
    assert 'echobase_live_colour{colour="green"} $echobase_live_green' in location
    for colour in ("blue", "green"):
        weight = f'echobase_colour_traffic_percent{{colour="{colour}"}} $echobase_weight_{colour}'
        assert weight in location
    assert "ssi on;" in location and 'stub="no_events"' in location
    events = block(config, "location = /.platform-events {")
    assert "internal;" in events and f"alias {spec.platform_events_file};" in events
    for colour in ("blue", "green"):
        # "live" in the gauge is the colour most users go to (/.active-env's).
        live_map = f"map $echobase_active $echobase_live_{colour} {{\n        {colour} 1;\n"
        assert live_map + "        default 0;\n    }" in config
    # Only the production server has it; the plain-http and direct ports do not.
    assert config.count(f"location = {nginx.PLATFORM_METRICS_PATH} ") == 1


def test_prometheus_finds_the_platform_metrics_on_the_lbs_https_port(tmp_path):
    plan = DurablePlan(Stack(tmp_path, resolve_ports(1000)), "devlocal")
    (target,) = [t for t in plan.scrape_targets() if t.labels["service"] == "nginx"]
    assert target.address == "127.0.0.1:1443"
    assert target.metrics_path == nginx.PLATFORM_METRICS_PATH
    assert target.labels == {
        "env": "devlocal",
        "layer": "durable",
        "service": "nginx",
        "__scheme__": "https",
    }
