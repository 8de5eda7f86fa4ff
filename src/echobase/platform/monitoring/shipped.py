"""The Grafana dashboard and the rules YAML kept in the package (``shipped/``), for teams
that run their own Grafana and Prometheus: rendered with the default settings. A test
checks they equal what the renderers produce; regenerate them with
``python -m echobase.platform.monitoring.shipped``."""

from __future__ import annotations

import sys
from pathlib import Path

from echobase.platform.monitoring.grafana import render_dashboard
from echobase.platform.monitoring.rules import render_rules
from echobase.platform.monitoring.settings import MonitoringSettings

SHIPPED_DIR = Path(__file__).with_name("shipped")
DASHBOARD_FILE = "echobase.json"
RULES_FILE = "echobase-rules.yml"


def rendered(settings: MonitoringSettings) -> dict[str, str]:
    """File name -> content: the dashboard, and the rules with these thresholds."""
    return {DASHBOARD_FILE: render_dashboard(), RULES_FILE: render_rules(settings)}


def write(directory: Path, settings: MonitoringSettings) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in rendered(settings).items():
        path = directory / name
        path.write_text(content)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(
        Path(sys.argv[1]) if len(sys.argv) > 1 else SHIPPED_DIR, MonitoringSettings()
    ):
        print(path)
