"""The ``echobase`` command. It only orchestrates: what to run is built elsewhere."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from echobase import __version__
from echobase.cli import bluegreen, dashboards, data, dev, durable, observe, release, render
from echobase.platform.doctor import run_checks
from echobase.platform.preflight import ours

app = typer.Typer(
    name="echobase",
    help="Blue-green order processing on one machine: durable and ephemeral layers.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold credentials
)
app.add_typer(durable.app, name="durable")
app.add_typer(release.app, name="release")
bluegreen.register(app)
observe.register(app)
app.add_typer(dev.app, name="dev")
app.add_typer(data.queues, name="queues")
app.add_typer(data.db, name="db")
app.add_typer(dashboards.app, name="dashboards")
app.add_typer(render.app, name="render")


@app.command()
def version() -> None:
    """Print the echobase version."""
    typer.echo(__version__)


@app.command()
def doctor(
    home: durable.HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check binaries, ports and the state directory; say how to fix what is wrong."""
    stack = durable.load_stack(home)
    checks = run_checks(stack, ours(stack))  # the preflight's: colours' ports too
    failed = any(check.outcome == "fail" for check in checks)
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}))
    else:
        table = Table(title=f"echobase doctor ({stack.home})")
        for column in ("check", "result", "detail", "fix"):
            table.add_column(column)
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}
        for check in checks:
            outcome = f"[{colour[check.outcome]}]{check.outcome}[/]"
            table.add_row(check.name, outcome, check.detail, check.fix)
        Console().print(table)
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
