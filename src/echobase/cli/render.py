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
HomeOpt = Annotated[
    Path | None,
    typer.Option(help="State directory whose echobase.toml to read (ports, [services])."),
]
ListJsonOpt = Annotated[bool, typer.Option("--json", help="List what was written as JSON.")]


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
    as_json: ListJsonOpt = False,
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


@app.command("k8s")
def k8s(
    env: EnvOpt,
    output: OutOpt,
    image: Annotated[
        str | None,
        typer.Option(
            help="The image to run, REPOSITORY:TAG or @sha256:... (default echobase:VERSION)."
        ),
    ] = None,
    secrets: Annotated[
        str,
        typer.Option(
            help="The pods' AWS key pair where there is no IRSA: 'external' (External Secrets "
            "Operator, from Secrets Manager) or 'plain' (empty Secrets to fill in, dev clusters)."
        ),
    ] = "external",
    live: Annotated[str, typer.Option(help="The colour the production Service selects.")] = "blue",
    namespace: Annotated[str | None, typer.Option(help="Namespace (default echobase-ENV).")] = None,
    region: Annotated[
        str, typer.Option(help="AWS region of the queues and secrets.")
    ] = "us-east-1",
    aws_account_id: Annotated[
        str | None,
        typer.Option(help="AWS account id for queue URLs and role ARNs (default: a placeholder)."),
    ] = None,
    home: HomeOpt = None,
    as_json: ListJsonOpt = False,
) -> None:
    """A kustomize layout: per colour the gateway's and processor's Deployments, Service,
    PodDisruptionBudget and autoscaler; the production Service whose selector is the live
    colour; the migrations Job; the pods' AWS identity."""
    import json

    from echobase import __version__
    from echobase.cli.durable import load_stack
    from echobase.cli.manifests import write_manifests
    from echobase.platform.render.k8s import ACCOUNT_PLACEHOLDER, K8sTarget, render
    from echobase.platform.stack import StackConfigError

    try:
        target = K8sTarget(
            env,
            image or f"echobase:{__version__}",
            live=live,
            secrets=secrets,
            namespace=namespace or "",
            region=region,
            account_id=aws_account_id or ACCOUNT_PLACEHOLDER,
        )
    except StackConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    written = write_manifests(output, render(load_stack(home), target))
    if as_json:
        typer.echo(json.dumps({"written": [str(path) for path in written]}))
    else:
        typer.echo(f"wrote {len(written)} files under {output} (kustomize: kubectl apply -k)")


@app.command("compose")
def compose(
    env: EnvOpt,
    output: OutOpt,
    image: Annotated[
        str | None,
        typer.Option(help="The Dockerfile's app image, NAME:TAG (default echobase:VERSION)."),
    ] = None,
    frontend_image: Annotated[
        str | None,
        typer.Option(
            help="The Dockerfile's frontend image, NAME:TAG (default echobase-frontend:VERSION)."
        ),
    ] = None,
    live: Annotated[
        str, typer.Option(help="The colour the LB routes to at first: blue, green or none.")
    ] = "blue",
    home: HomeOpt = None,
    as_json: ListJsonOpt = False,
) -> None:
    """Docker Compose projects: the environment's durable layer (MariaDB encrypted at rest,
    the secrets store, the LB, the OpenTelemetry collector, Prometheus, Jaeger, Loki and
    Grafana) and one project per colour, on the local table's ports."""
    import json

    import yaml

    from echobase import __version__
    from echobase.cli.durable import checked_env, load_stack
    from echobase.platform.durable.credentials import EMULATOR_AWS_ENV
    from echobase.platform.monitoring.grafana import render_dashboard
    from echobase.platform.monitoring.rules import render_rules
    from echobase.platform.render.compose import ComposeError, ComposeInputs, render
    from echobase.platform.stack import StackConfigError

    env = checked_env(env)
    stack = load_stack(home)
    try:
        files = render(
            stack,
            ComposeInputs(
                env=env,
                app_image=image or f"echobase:{__version__}",
                frontend_image=frontend_image or f"echobase-frontend:{__version__}",
                rules_yaml=render_rules(stack.monitoring),
                dashboard_json=render_dashboard(),
                live=None if live == "none" else live,
                aws_env=EMULATOR_AWS_ENV,
            ),
        )
    except (ComposeError, StackConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    written = []
    for relative, content in files.items():
        path = output / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (
            content
            if isinstance(content, str)
            else yaml.safe_dump(content, sort_keys=False, default_flow_style=False, width=100)
        )
        path.write_text(text)
        path.chmod(0o644)  # names and references only: the secrets are files the user makes
        written.append(path)
    if as_json:
        typer.echo(json.dumps({"written": [str(path) for path in written]}))
    else:
        typer.echo(f"wrote {len(written)} files under {output}: see {output / 'README.md'}")
