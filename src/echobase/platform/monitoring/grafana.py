"""The dashboard for Grafana 10+ (import it and pick a Prometheus data source for
``DS_PROMETHEUS``), rendered from the same panels as the console template."""

from __future__ import annotations

import json

from echobase.platform.monitoring.catalogue import PANELS, SWITCHES, Panel, fill

UID = "echobase"
TITLE = "echobase"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# Grafana's own: the window adapts to the scrape interval and the zoom.
WINDOW = "$__rate_interval"
SELECTOR = 'env="$env"'

_UNITS = {
    "per_second": "reqps",
    "ratio": "percentunit",
    "seconds": "s",
    "count": "short",
    "live": "none",
}


def _target(panel: Panel, instant: bool = False) -> dict[str, object]:
    target: dict[str, object] = {
        "datasource": DATASOURCE,
        "expr": fill(panel.expr, SELECTOR, WINDOW),
        "legendFormat": " ".join(f"{{{{{label}}}}}" for label in panel.legend),
        "refId": "A",
    }
    if instant:
        target |= {"instant": True, "range": False, "format": "table"}
    return target


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, object]:
    common: dict[str, object] = {
        "id": panel_id,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
    }
    defaults: dict[str, object] = {"unit": _UNITS[panel.unit]}
    if panel.kind == "stat":
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {
                    "0": {"text": "idle", "color": "text", "index": 0},
                    "1": {"text": "live", "color": "green", "index": 1},
                },
            }
        ]
        return common | {
            "type": "stat",
            "targets": [_target(panel)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "textMode": "value_and_name",
                "colorMode": "value",
                "graphMode": "none",
            },
        }
    if panel.kind == "table":
        return common | {
            "type": "table",
            "targets": [_target(panel, instant=True)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "transformations": [
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value": True, "__name__": True},
                        "indexByName": {label: i for i, label in enumerate(panel.legend)},
                    },
                }
            ],
            "options": {"showHeader": True},
        }
    defaults["min"] = 0
    return common | {
        "type": "timeseries",
        "targets": [_target(panel)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    }


def dashboard() -> dict[str, object]:
    panels = [
        _panel(panel, index + 1, 12 * (index % 2), 8 * (index // 2))
        for index, panel in enumerate(PANELS)
    ]
    switches = fill(SWITCHES.expr, SELECTOR, WINDOW)
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that scrapes echobase",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
        "uid": UID,
        "title": TITLE,
        "tags": ["echobase"],
        "timezone": "browser",
        "schemaVersion": 38,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "env",
                    "label": "environment",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": "label_values(up, env)", "refId": "env"},
                    "definition": "label_values(up, env)",
                    "refresh": 2,
                    "sort": 1,
                    "includeAll": False,
                    "multi": False,
                }
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "Switches",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "iconColor": "orange",
                    "expr": f"{switches} > 0",
                    "step": "1m",
                    "titleFormat": "switch to {{colour}}",
                    "textFormat": "traffic moved to {{colour}}",
                    "useValueForTime": False,
                }
            ]
        },
        "panels": panels,
    }


def render_dashboard() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
