"""``echobase durable setup|teardown|status``: one environment's durable layer."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from echobase.platform.durable.credentials import OBSERVABILITY
from echobase.platform.durable.layer import DurableError, DurableLayer
from echobase.platform.preflight import (
    PortsUnavailable,
    Unsupervised,
    check_ports_free,
    check_supervised,
)
from echobase.platform.render.prometheus import CONSOLE_LIBRARY_SOURCES
from echobase.platform.stack import ENVIRONMENTS, Stack, StackConfigError, check_env

console = Console(stderr=True)
app = typer.Typer(
    help="The durable layer of an environment: MariaDB, secrets store, nginx, Prometheus.",
    no_args_is_help=True,
)

EnvArg = Annotated[str, typer.Argument(help=f"Environment: one of {', '.join(ENVIRONMENTS)}.")]
HomeOpt = Annotated[
    Path | None,
    typer.Option(help="State directory (default $ECHOBASE_HOME or ~/.local/share/echobase)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def load_stack(home: Path | None) -> Stack:
    try:
        return Stack.load(home)
    except StackConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def checked_env(env: str) -> str:
    """An unknown environment is a usage error (exit 2), said before anything starts."""
    try:
        return check_env(env)
    except StackConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def preflight_ports(
    stack: Stack,
    env: str,
    as_json: bool,
    durable: bool = True,
    colours: bool = True,
    recovering: bool = False,
) -> None:
    """Refuse (exit 2) before anything starts when a port the command needs cannot be had:
    a half-started system is worse than none. Unless ``recovering`` (up), also refuse while
    programs a dead supervisord left behind still run."""
    if not recovering:
        try:
            check_supervised(stack)
        except Unsupervised as exc:
            if as_json:
                typer.echo(json.dumps({"ok": False, "error": "unsupervised", "message": str(exc)}))
            else:
                console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
    try:
        check_ports_free(stack, env, durable=durable, colours=colours)
    except PortsUnavailable as exc:
        if as_json:
            typer.echo(json.dumps(exc.as_dict()))
        else:
            # escape: "[ports.devlocal]" in the message is TOML, not rich markup
            console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _layer(env: str, home: Path | None) -> DurableLayer:
    env = checked_env(env)  # a usage error first: it needs no configuration
    return DurableLayer(load_stack(home), env)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@app.command("setup")
def setup(
    env: EnvArg = "devlocal",
    home: HomeOpt = None,
    repair_credentials: Annotated[
        bool,
        typer.Option(help="Set the database user's password from the secrets store."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start (or create) the environment's durable layer. Safe to run again: it changes
    nothing that is already in place."""
    layer = _layer(env, home)
    preflight_ports(layer.stack, env, as_json, colours=False)
    started = time.monotonic()
    marks: list[tuple[str, float]] = []
    with console.status("setting up") as status:

        def progress(step: str) -> None:
            now = time.monotonic()
            if marks:
                console.print(f"  [green]done[/green] {marks[-1][0]} ({now - marks[-1][1]:.1f}s)")
            marks.append((step, now))
            status.update(step)

        layer.progress = progress
        try:
            layer.setup(repair_credentials=repair_credentials)
        except DurableError as exc:
            raise _fail(exc) from None
        progress("ready")
    seconds = time.monotonic() - started
    result = {
        "env": env,
        "seconds": round(seconds, 2),
        "loadBalancer": layer.plan.lb_url,
        "active": layer.active(),
        "prometheus": f"{layer.plan.lb_url}/prometheus/",
        "dashboard": layer.dashboard_url(),
        "stateDir": str(layer.stack.home),
    }
    if as_json:
        typer.echo(json.dumps(result))
        return
    console.print(
        f"durable layer [bold]{env}[/bold] ready in {seconds:.1f}s\n"
        f"  load balancer  {result['loadBalancer']}  (live colour: {result['active']})\n"
        f"  prometheus     {result['prometheus']}  (basic auth: secret {OBSERVABILITY!r})\n"
        f"  dashboard      {result['dashboard'] or _NO_DASHBOARD}\n"
        f"  state          {result['stateDir']}"
    )


_NO_DASHBOARD = "not installed: Debian's console library prom.lib was not found in " + ", ".join(
    map(str, CONSOLE_LIBRARY_SOURCES)
)


@app.command("teardown")
def teardown(
    env: EnvArg = "devlocal",
    home: HomeOpt = None,
    volumes: Annotated[bool, typer.Option(help="Also delete data, secrets and configs.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --volumes.")] = False,
    force: Annotated[bool, typer.Option(help="Even while a colour still uses it.")] = False,
) -> None:
    """Stop the environment's durable services, keeping all data unless --volumes."""
    layer = _layer(env, home)
    if volumes and not yes:
        typer.confirm(
            f"Delete every database row, secret and config of {env} under {layer.plan.home}?",
            abort=True,
        )
    layer.progress = lambda step: console.print(f"  {step}")
    try:
        layer.teardown(volumes=volumes, force=force)
    except DurableError as exc:
        raise _fail(exc) from None
    kept = "data deleted" if volumes else f"data kept in {layer.plan.home}"
    console.print(f"durable layer [bold]{env}[/bold] stopped; {kept}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@app.command("status")
def status(env: EnvArg = "devlocal", home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Each durable service: state, pid, port, uptime, health and memory."""
    layer = _layer(env, home)
    services = layer.status()
    if as_json:
        typer.echo(json.dumps({"env": env, "services": [s.as_dict() for s in services]}))
        return
    table = Table(title=f"durable layer {env}")
    for column in ("service", "state", "pid", "port", "uptime", "health", "RSS"):
        table.add_column(column, justify="right" if column in ("pid", "port", "RSS") else "left")
    for s in services:
        health = "[green]healthy[/green]" if s.healthy else "[red]unhealthy[/red]"
        if s.state not in ("RUNNING", "STARTING"):
            health = "-"
        table.add_row(
            s.name,
            s.state,
            str(s.pid or "-"),
            str(s.port),
            _duration(s.uptime_seconds),
            f"{health} {s.detail}".strip(),
            f"{s.rss_bytes / 2**20:.0f} MiB" if s.rss_bytes else "-",
        )
    Console().print(table)
    total = sum(s.rss_bytes or 0 for s in services)
    Console().print(f"total RSS {total / 2**20:.0f} MiB")
    if any(s.state in ("RUNNING", "STARTING") and not s.healthy for s in services):
        raise typer.Exit(1)
