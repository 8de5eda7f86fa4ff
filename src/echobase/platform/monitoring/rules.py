"""The Prometheus rules file (recording rules, then alerts) rendered from the catalogue."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from echobase.platform.monitoring.catalogue import ALERTS, RECORDING_RULES, WINDOW
from echobase.platform.monitoring.settings import MonitoringSettings, duration

RECORDING_GROUP = "echobase-recording"
ALERTS_GROUP = "echobase-alerts"


def rule_groups(settings: MonitoringSettings) -> dict[str, object]:
    interval = duration(settings.evaluation_interval_seconds)
    recording = [
        {"record": rule.record, "expr": rule.expr.replace(WINDOW, settings.rate_window)}
        for rule in RECORDING_RULES
    ]
    alerting = [
        {
            "alert": alert.name,
            "expr": alert.expression(settings),
            "for": alert.for_duration(settings),
            "labels": {"severity": alert.severity},
            "annotations": {"summary": alert.summary, "description": alert.description},
        }
        for alert in ALERTS
    ]
    return {
        "groups": [
            {"name": RECORDING_GROUP, "interval": interval, "rules": recording},
            {"name": ALERTS_GROUP, "interval": interval, "rules": alerting},
        ]
    }


def render_rules(settings: MonitoringSettings) -> str:
    return (
        "# Rendered by echobase (echobase.platform.monitoring): edit the catalogue, not this.\n"
        + to_yaml(rule_groups(settings))
    )


def to_yaml(value: object, indent: int = 0) -> str:
    """Block-style YAML for mappings, lists, strings and numbers. Strings are written as JSON
    strings: every JSON string is a valid double-quoted YAML scalar, so nothing an expression
    or a template holds ({{ }}, quotes, colons) can change the document's structure."""
    return "".join(line + "\n" for line in _lines(value, indent))


def _scalar(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"no YAML for {type(value).__name__}")


def _lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        lines = []
        for key, item in value.items():
            if isinstance(item, Mapping | list | tuple) and item:
                lines.append(f"{pad}{key}:")
                lines += _lines(item, indent + 2)
            else:
                lines.append(f"{pad}{key}: {_inline(item)}")
        return lines
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            nested = _lines(item, indent + 2)
            lines.append(f"{pad}- {nested[0].lstrip()}")
            lines += nested[1:]
        return lines
    return [pad + _scalar(value)]


def _inline(value: object) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    return _scalar(value)
