"""Commands that prepare what the order services need: queues and the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from echobase.app.queues import DEAD_LETTER_QUEUE, ORDER_QUEUE, ensure_queues

console = Console(stderr=True)
queues = typer.Typer(help="SQS queues of a colour.", no_args_is_help=True)
db = typer.Typer(help="The shared database schema.", no_args_is_help=True)


@queues.command("create")
def create_queues(
    endpoint_url: Annotated[str | None, typer.Option(help="SQS endpoint (moto locally).")] = None,
    region: Annotated[str, typer.Option()] = "us-east-1",
    queue_name: Annotated[str, typer.Option()] = ORDER_QUEUE,
    dlq_name: Annotated[str, typer.Option()] = DEAD_LETTER_QUEUE,
    visibility_timeout: Annotated[int, typer.Option(min=1, max=43200)] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create the order queue and its dead-letter queue (maxReceiveCount 3); idempotent."""
    import boto3  # here: every echobase command would pay for it (a switch waits on that)

    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
    urls = ensure_queues(sqs, queue_name, dlq_name, visibility_timeout)
    if as_json:
        typer.echo(json.dumps({"queueUrl": urls.queue_url, "dlqUrl": urls.dlq_url}))
    else:
        console.print(f"queue: {urls.queue_url}\ndead-letter queue: {urls.dlq_url}")


@db.command("upgrade")
def upgrade_schema(
    env: Annotated[str, typer.Option("--env", help="Durable environment: devlocal or ci.")] = (
        "devlocal"
    ),
    home: Annotated[
        Path | None,
        typer.Option(help="State directory (default $ECHOBASE_HOME or ~/.local/share/echobase)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Bring an environment's schema to what its live release ships, with that release's own
    migration tool (e.g. after restoring a backup). A new release's migrations come with
    `echobase deploy`, which first checks them against the live release."""
    # Here, not at the top: every echobase command would pay for loading the SDKs.
    from echobase.cli.durable import load_stack
    from echobase.platform.bluegreen.pipeline import BlueGreen, DeployError
    from echobase.platform.runtime.migrations import MigrationToolError, run_migrate
    from echobase.platform.stack import COLOURS, StackConfigError, check_env

    try:
        check_env(env)
    except StackConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    bluegreen = BlueGreen(load_stack(home), env)
    live = bluegreen.live()
    plan = bluegreen.running_plan(live) if live in COLOURS else None
    if plan is None:
        console.print(
            f"[red]error:[/red] no release is live in {env} (live colour: {live or 'unknown'}), "
            "so no release's migrations can be chosen: `echobase up` or `echobase deploy` "
            "migrates with the release it starts"
        )
        raise typer.Exit(1)
    server = bluegreen.durable.plan.database
    try:
        dbname = bluegreen.database().dbname
        result = run_migrate(plan.python, "upgrade", server.socket, server.os_user, dbname)
    except (DeployError, MigrationToolError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({"release": plan.release_id, **result}))
    else:
        console.print(
            f"schema of {env} is at {', '.join(result['to']) or 'no revision'} "
            f"(release {plan.release_id}, {live})",
            highlight=False,
        )
