"""``echobase render compose|k8s|aws``: the stack rendered for another target, written to a
directory. Orchestration only: each rendering is a pure function in platform/render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Render the same stack for Docker Compose, Kubernetes or AWS CloudFormation.",
    no_args_is_help=True,
)

EnvOpt = Annotated[str, typer.Option("--env", help="Durable environment: devlocal or ci.")]
OutOpt = Annotated[
    Path, typer.Option("--output", "-o", help="Directory to write to (created if missing).")
]
