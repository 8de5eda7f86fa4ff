"""``echobase dev up``: the whole order system in the foreground, for local work.

Until the durable layer and blue-green land, this runs one colour (blue) beside its own
MariaDB and AWS emulator; Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from echobase.platform.stack import Stack, resolve_ports
from echobase.platform.stack import default_home as stack_home

console = Console()
app = typer.Typer(help="Run the order system locally in the foreground.", no_args_is_help=True)


def default_home() -> Path:
    return stack_home() / "dev"


def offset_stack(home: Path, offset: int) -> Stack:
    """The devlocal environment's and the blue colour's ports from the one port table."""
    return Stack(home, resolve_ports(offset))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@app.command("up")
def up(
    home: Annotated[Path | None, typer.Option(help="State directory.")] = None,
    port_offset: Annotated[
        int, typer.Option(envvar="ECHOBASE_PORT_OFFSET", help="Added to every default port.")
    ] = 0,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Gateway workers.")] = 2,
) -> None:
    """Start MariaDB, the AWS emulator, the gateway and the processor; Ctrl-C stops them."""
    # SIGTERM (systemd, `timeout`, a CI runner) must stop the children as Ctrl-C does:
    # they run in sessions of their own and would otherwise outlive this command.
    signal.signal(signal.SIGTERM, _interrupt)
    # Here, not at the top: every echobase command would pay for loading the SDKs.
    from echobase.platform.devstack import DevStack, service_env

    stack = DevStack(offset_stack((home or default_home()).resolve(), port_offset))
    stack.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    gateway_url = stack.stack.url(stack.port("api-gateway"))
    processor_url = stack.stack.url(stack.port("order-processor"))
    try:
        with console.status("starting the AWS emulator") as status:
            stack.start_aws()
            credentials, _ = stack.ensure_secrets()
            status.update("starting MariaDB")
            stack.start_database()
            status.update("migrating the schema")
            stack.provision_database(credentials)
            queues = stack.create_queues()
            common = {"base": os.environ, "aws_url": stack.aws_url, "queue": queues}
            status.update("starting the API gateway")
            stack.start_service(
                "api-gateway",
                "echobase.app.gateway",
                service_env(
                    port=stack.port("api-gateway"),
                    colour="blue",
                    extra={
                        "ECHOBASE_WORKERS": str(workers),
                        "ECHOBASE_ALLOWED_ORIGINS": f"https://localhost,{gateway_url}",
                    },
                    **common,  # type: ignore[arg-type]
                ),
                f"{gateway_url}/health",
            )
            status.update("starting the order processor")
            stack.start_service(
                "order-processor",
                "echobase.app.processor",
                service_env(port=stack.port("order-processor"), colour="blue", **common),  # type: ignore[arg-type]
                f"{processor_url}/health",
            )
        table = Table(title="echobase (dev, blue)")
        for column in ("service", "pid", "address"):
            table.add_column(column)
        addresses = {
            "aws": stack.aws_url,
            "mariadb": f"{stack.host}:{stack.port('mariadb')}",
            "api-gateway": f"{gateway_url} (docs: {gateway_url}/openapi.json)",
            "order-processor": f"{processor_url}/health",
        }
        for name, process in stack.processes.items():
            table.add_row(name, str(process.pid), addresses.get(name, ""))
        console.print(table)
        console.print(f"logs: {stack.home / 'logs'}  -  Ctrl-C to stop")
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(1)
        dead = [n for n, p in stack.processes.items() if p.poll() is not None]
        console.print(f"[red]stopped:[/red] {', '.join(dead)} exited; see {stack.home / 'logs'}")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("stopping")
    except RuntimeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        stack.stop_all()
