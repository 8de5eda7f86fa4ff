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


@app.command("aws")
def aws(
    env: EnvOpt,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="A .json file, or a directory to write echobase-ENV.cfn.json into "
            "(created if missing). Default: the template on stdout.",
        ),
    ] = None,
    colours: Annotated[
        list[str] | None,
        typer.Option("--colour", help="Only this colour's queues and policies (repeatable)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="List the written file as JSON on stdout.")
    ] = False,
) -> None:
    """A CloudFormation template (JSON) of what the services need in AWS: each colour's
    queues, a KMS key, generated secrets and least-privilege IAM policies."""
    import json

    from echobase.platform.render.aws import render_template, template_file_name, template_json
    from echobase.platform.stack import COLOURS, StackConfigError

    try:
        text = template_json(render_template(env, tuple(colours or COLOURS)))
    except (StackConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if output is None:
        typer.echo(text, nl=False)
        return
    path = output if output.suffix == ".json" else output / template_file_name(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)  # names and references only: nothing in it is secret
    if as_json:
        typer.echo(json.dumps({"written": [str(path)]}))
    else:
        typer.echo(f"wrote {path}")
