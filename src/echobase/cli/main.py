"""The ``echobase`` command. It only orchestrates: what to run is built elsewhere."""

from __future__ import annotations

import typer

from echobase import __version__
from echobase.cli import data, dev

app = typer.Typer(
    name="echobase",
    help="Blue-green order processing on one machine: durable and ephemeral layers.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold credentials
)
app.add_typer(dev.app, name="dev")
app.add_typer(data.queues, name="queues")
app.add_typer(data.db, name="db")


@app.command()
def version() -> None:
    """Print the echobase version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
