"""``echobase dashboards export DIR``: the Grafana dashboard and the rules YAML, for teams
that run their own Grafana and Prometheus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from echobase.cli.durable import HomeOpt, load_stack
from echobase.platform.monitoring import shipped

app = typer.Typer(help="Dashboards and alert rules for your own Grafana/Prometheus.")


@app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Where to write them (created if missing).")],
    home: HomeOpt = None,
) -> None:
    """Write echobase.json (Grafana 10+, data source ${DS_PROMETHEUS}) and
    echobase-rules.yml with this system's thresholds (monitoring in echobase.toml)."""
    settings = load_stack(home).monitoring
    for path in shipped.write(directory, settings):
        typer.echo(str(path))
