"""Dashboards and alerts rendered from one description: settings, the rules file, the
console template, the Grafana dashboard, the shipped files and the parsing of firing alerts."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import yaml

from echobase.app.queues import DEAD_LETTER_QUEUE, ORDER_QUEUE
from echobase.platform.bluegreen.analysis_settings import AnalysisSettings
from echobase.platform.monitoring import console, grafana, rules, shipped
from echobase.platform.monitoring.alerts import age, firing_alerts, since_text
from echobase.platform.monitoring.catalogue import ALERTS, PANELS, RECORDING_RULES
from echobase.platform.monitoring.settings import (
    MonitoringSettings,
    MonitoringSettingsError,
    duration,
)
from echobase.platform.render import prometheus
from echobase.platform.render.durable import DurablePlan
from echobase.platform.stack import Stack, StackConfigError, read_config_files

SHORT = MonitoringSettings(
    scrape_interval_seconds=1,
    evaluation_interval_seconds=0.5,
    rate_window_seconds=10,
    live_error_ratio=0.2,
    live_errors_for_seconds=3,
    queue_age_seconds=4,
    queue_age_for_seconds=2,
    dead_letters_for_seconds=0,
    target_down_for_seconds=1.5,
)
PLACEHOLDER = re.compile(r"<(sel|window|threshold)>")


# --- settings ---------------------------------------------------------------------------------


def test_durations_are_written_in_the_largest_exact_unit():
    assert [duration(s) for s in (0, 0.25, 1, 90, 120, 300, 3600, 5400)] == [
        "0s",
        "250ms",
        "1s",
        "90s",
        "2m",
        "5m",
        "1h",
        "90m",
    ]


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"scrape_interval": 1}, "no setting ['scrape_interval']"),
        ({"live_error_ratio": 2}, "a share"),
        ({"live_error_ratio": 0}, "above 0"),
        ({"queue_age_for_seconds": -1}, "at least 0"),
        ({"evaluation_interval_seconds": 0}, "above 0"),
        ({"target_down_for_seconds": "2m"}, "must be a number"),
        ({"target_down_for_seconds": True}, "must be a number"),
        ({"scrape_interval_seconds": 10, "rate_window_seconds": 15}, "twice"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(table, complaint):
    with pytest.raises(MonitoringSettingsError, match=re.escape(complaint)):
        MonitoringSettings.from_table(table)


def test_echobase_toml_sets_them_and_a_bad_value_names_its_file(tmp_path):
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text("[monitoring]\nscrape_interval_seconds = 2\nrate_window_seconds = 30\n")
    second.write_text("[monitoring]\nqueue_age_seconds = 7.5\n")
    settings = read_config_files([first, second]).monitoring
    assert (settings.scrape_interval_seconds, settings.queue_age_seconds) == (2, 7.5)
    assert settings.rate_window_seconds == 30
    assert settings.target_down_for_seconds == MonitoringSettings().target_down_for_seconds

    second.write_text("[monitoring]\nrate_window_seconds = 3\n")
    with pytest.raises(StackConfigError, match=re.escape(str(second))):
        read_config_files([first, second])
    second.write_text("monitoring = 3\n")
    with pytest.raises(StackConfigError, match="must be a table"):
        read_config_files([first, second])


def test_echobase_toml_sets_the_analysis_and_a_bad_value_names_its_file(tmp_path):
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text("[analysis]\nstep_seconds = 5\nsteps = [25, 100]\n")
    second.write_text("[analysis]\nmin_requests = 3\n")
    settings = read_config_files([first, second]).analysis
    assert (settings.step_seconds, settings.steps, settings.min_requests) == (5, (25, 100), 3)
    assert settings.after_switch_seconds == AnalysisSettings().after_switch_seconds
    assert read_config_files([tmp_path / "missing.toml"]).analysis == AnalysisSettings()

    second.write_text("[analysis]\nsteps = [50, 90]\n")
    with pytest.raises(StackConfigError, match=re.escape(f"{second}: analysis.steps")):
        read_config_files([first, second])
    second.write_text("[analysis]\nstep = 1\n")
    with pytest.raises(StackConfigError, match=r"\[analysis\] has no setting \['step'\]"):
        read_config_files([first, second])
    second.write_text("analysis = 3\n")
    with pytest.raises(StackConfigError, match=r"\[analysis\] must be a table"):
        read_config_files([first, second])

    (tmp_path / "echobase.toml").write_text("[analysis]\nafter_switch_seconds = 0\n")
    stack = Stack.load(tmp_path / "home", offset=0, cwd=tmp_path)
    assert stack.analysis == AnalysisSettings(after_switch_seconds=0)


def test_the_stack_hands_its_settings_to_prometheus(tmp_path):
    (tmp_path / "echobase.toml").write_text("[monitoring]\nscrape_interval_seconds = 1\n")
    stack = Stack.load(tmp_path, offset=0, cwd=tmp_path)
    spec = DurablePlan(stack, "ci").prometheus
    config = json.loads(prometheus.render_config(spec))
    assert config["global"]["scrape_interval"] == "1s"
    assert config["rule_files"] == [str(spec.rules_file)]
    # The LB serves the platform's own metrics on its HTTPS port, under its own certificate.
    ca_file = DurablePlan(stack, "ci").load_balancer.cert_file
    assert config["scrape_configs"][0]["tls_config"] == {"ca_file": str(ca_file)}
    command = prometheus.server_command(spec)
    assert "--enable-feature=exemplar-storage" in command
    assert f"--web.console.templates={spec.consoles_dir}" in command
    assert f"--web.console.libraries={spec.console_libraries_dir}" in command
    assert spec.alerts_url == f"http://127.0.0.1:{spec.port}/prometheus/api/v1/alerts"


# --- the rules file ---------------------------------------------------------------------------


def test_rules_render_every_alert_with_its_thresholds_and_for():
    rendered = rules.render_rules(SHORT)
    assert not PLACEHOLDER.search(rendered)
    groups = yaml.safe_load(rendered)
    assert groups == rules.rule_groups(SHORT)  # the emitter writes what it was given
    recording, alerting = groups["groups"]
    assert recording["interval"] == alerting["interval"] == "500ms"
    assert [r["record"] for r in recording["rules"]] == [r.record for r in RECORDING_RULES]
    assert all("[10s]" in r["expr"] for r in recording["rules"] if "rate(" in r["expr"])
    by_name = {rule["alert"]: rule for rule in alerting["rules"]}
    assert set(by_name) == {alert.name for alert in ALERTS}
    assert by_name["EchobaseLiveColourErrors"]["for"] == "3s"
    assert "> 0.2)" in by_name["EchobaseLiveColourErrors"]["expr"]
    assert "echobase_live_colour == 1" in by_name["EchobaseLiveColourErrors"]["expr"]
    assert by_name["EchobaseQueueBacklog"]["expr"].endswith("> 4")
    assert f'queue="{ORDER_QUEUE}"' in by_name["EchobaseQueueBacklog"]["expr"]
    assert f'queue="{DEAD_LETTER_QUEUE}"' in by_name["EchobaseDeadLetters"]["expr"]
    assert by_name["EchobaseTargetDown"] | {"annotations": None} == {
        "alert": "EchobaseTargetDown",
        "expr": "up == 0",
        "for": "1500ms",
        "labels": {"severity": "critical"},
        "annotations": None,
    }
    for rule in alerting["rules"]:
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_yaml_strings_cannot_break_the_document():
    value = {"a": ['x: "y" # z', "{{ $labels.x }}", "- b\n c"], "n": 1.5, "empty": []}
    assert yaml.safe_load(rules.to_yaml(value)) == value


# --- the console template and the Grafana dashboard --------------------------------------------


def test_the_console_shows_every_panel_for_each_colour():
    page = console.render_console("ci", ("blue", "green"), SHORT)
    assert not PLACEHOLDER.search(page)
    assert page.startswith("<!doctype html>")  # else Prometheus serves it as text/plain
    for panel in PANELS:
        assert panel.title in page
    graphs = [panel for panel in PANELS if panel.kind != "table"]
    assert page.count("new PromConsole.Graph(") == len(graphs)
    assert page.count('template "prom_query_drilldown"') == 2 * len(graphs)
    assert page.count('colour="blue"') == page.count('colour="green"') >= len(graphs)
    assert 'env="ci"' in page and "[10s]" in page
    assert 'template "echobase_head"' in page and 'template "prom_content_head"' in page


def test_the_console_refuses_what_would_break_its_template():
    with pytest.raises(ValueError, match="cannot embed"):
        console._raw("label_replace(up, `x`)")


def test_the_library_head_names_only_files_below_classic_static():
    library = console.render_library()
    assert 'define "echobase_head"' in library and 'define "echobase_live"' in library
    for asset in (*console.STYLESHEETS, *console.SCRIPTS, console.GRAPH_SCRIPT):
        assert f"{{{{ pathPrefix }}}}/classic/static/{asset}" in library
    assert "//" not in library.replace("{{ pathPrefix }}/", "")  # nothing from a CDN


def test_grafana_has_every_panel_on_the_ds_prometheus_input():
    board = grafana.dashboard()
    assert board["schemaVersion"] >= 38
    assert board["__inputs"][0]["name"] == "DS_PROMETHEUS"
    titles = [panel["title"] for panel in board["panels"]]
    assert titles == [panel.title for panel in PANELS]
    text = grafana.render_dashboard()
    assert not PLACEHOLDER.search(text)
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        for target in panel["targets"]:
            assert 'env="$env"' in target["expr"]
            if "rate(" in target["expr"]:
                assert "[$__rate_interval]" in target["expr"]
    kinds = {panel["title"]: panel["type"] for panel in board["panels"]}
    assert kinds["Live colour"] == "stat" and kinds["Firing alerts"] == "table"
    assert kinds["Latency p99"] == "timeseries"
    positions = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in board["panels"]}
    assert len(positions) == len(board["panels"])  # no two panels on top of each other


def test_the_shipped_files_are_what_the_renderers_produce():
    for name, content in shipped.rendered(MonitoringSettings()).items():
        path = shipped.SHIPPED_DIR / name
        assert path.read_text() == content, (
            f"{path} is stale: run `python -m echobase.platform.monitoring.shipped`"
        )


def test_export_writes_them_with_other_thresholds(tmp_path: Path):
    written = shipped.write(tmp_path / "out", SHORT)
    assert sorted(p.name for p in written) == sorted(shipped.rendered(SHORT))
    assert yaml.safe_load((tmp_path / "out" / shipped.RULES_FILE).read_text()) == (
        rules.rule_groups(SHORT)
    )


# --- firing alerts ------------------------------------------------------------------------------


def answer(*alerts: dict) -> dict:
    return {"status": "success", "data": {"alerts": list(alerts)}}


def alert(name: str, state: str, since: str, **labels: str) -> dict:
    return {
        "labels": {"alertname": name, "severity": "critical", **labels},
        "annotations": {"summary": f"{name} summary"},
        "state": state,
        "activeAt": since,
        "value": "1e+00",
    }


def test_only_firing_alerts_are_listed_oldest_first():
    found = firing_alerts(
        answer(
            alert("B", "firing", "2026-01-31T10:00:05.5Z", colour="green", service="sqs"),
            alert("A", "pending", "2026-01-31T09:00:00Z"),
            alert("C", "firing", "2026-01-31T10:00:01.123456789Z", service="prometheus"),
        )
    )
    assert [(a.name, a.about) for a in found] == [("C", "prometheus"), ("B", "green / sqs")]
    assert found[1].as_dict() == {
        "name": "B",
        "severity": "critical",
        "colour": "green",
        "service": "sqs",
        "since": "2026-01-31T10:00:05.5Z",
        "summary": "B summary",
    }
    with pytest.raises(ValueError, match="error"):
        firing_alerts({"status": "error", "error": "bad"})


def test_since_reads_prometheus_times():
    now = dt.datetime(2026, 1, 31, 11, 2, 3, tzinfo=dt.UTC)
    assert age("2026-01-31T11:00:00.999999999Z", now) == "2m02s"
    assert age("2026-01-31T08:00:00Z", now) == "3h02m"
    assert age("yesterday", now) == "?"
    assert since_text("2026-01-31T12:00:00+01:00", now) == "2026-01-31 11:00:00 UTC (2m03s ago)"


def test_the_export_command_uses_this_systems_thresholds(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from echobase.cli.main import app

    home = tmp_path / "home"
    home.mkdir()
    (home / "echobase.toml").write_text("[monitoring]\nqueue_age_seconds = 42\n")
    monkeypatch.chdir(tmp_path)  # no echobase.toml of the working directory
    result = CliRunner().invoke(
        app, ["dashboards", "export", str(tmp_path / "out"), "--home", str(home)]
    )
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load((tmp_path / "out" / shipped.RULES_FILE).read_text())
    (backlog,) = [
        rule for rule in exported["groups"][1]["rules"] if rule["alert"] == "EchobaseQueueBacklog"
    ]
    assert backlog["expr"].endswith("> 42")
    assert json.loads((tmp_path / "out" / shipped.DASHBOARD_FILE).read_text())["uid"] == "echobase"
