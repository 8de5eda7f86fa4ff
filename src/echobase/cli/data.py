"""Commands that prepare what the order services need: queues and the schema."""

from __future__ import annotations

import json
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
def upgrade_schema() -> None:
    """Apply pending migrations, with credentials read from Secrets Manager."""
    from echobase.app.core.config import ServiceSettings
    from echobase.app.core.secrets import SecretUnavailableError, load_database_credentials
    from echobase.app.db.migrate import upgrade

    try:
        credentials = load_database_credentials(ServiceSettings())
    except SecretUnavailableError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    upgrade(credentials.url("pymysql"))
    console.print("schema is at head")
