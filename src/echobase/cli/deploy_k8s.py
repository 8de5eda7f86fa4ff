"""``echobase deploy --target k8s``: the blue-green pipeline carried out with kubectl against
a cluster (``--plan``: printed, nothing run). Orchestration only: the plan is built by
``platform/render/k8s_deploy.py`` and run by ``platform/bluegreen/k8s_runner.py``."""

from __future__ import annotations

import getpass
import json
import secrets
import socket
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from echobase.cli.durable import load_stack
from echobase.platform.bluegreen.k8s_runner import K8sDeployError, Runner, find_kubectl
from echobase.platform.render.k8s_deploy import DeployInputs, deploy_plan, plan_text
from echobase.platform.stack import StackConfigError, check_colour

console = Console(stderr=True)


def usage_error(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def deploy_k8s(
    *,
    env: str,
    kubeconfig: Path | None,
    image: str | None,
    namespace: str | None,
    colour: str | None,
    switch: bool,
    allow_contract: bool,
    lock_wait: float,
    plan_only: bool,
    as_json: bool,
    home: Path | None,
) -> None:
    if kubeconfig is None:
        raise usage_error("--target k8s needs --kubeconfig FILE (the cluster to deploy to)")
    if not kubeconfig.is_file():
        raise usage_error(f"--kubeconfig {kubeconfig}: no such file")
    if image is None:
        raise usage_error("--target k8s needs --image REPOSITORY:TAG (the build to deploy)")
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    try:
        inputs = DeployInputs(
            kubeconfig=str(kubeconfig.resolve()),
            env=env,
            image=image,
            run_id=secrets.token_hex(4),
            holder=who,
            namespace=namespace or "",
            switch=switch,
            allow_contract=allow_contract,
        )
        if colour is not None:
            check_colour(colour)
    except StackConfigError as exc:
        raise usage_error(str(exc)) from None
    stack = load_stack(home)
    if plan_only:
        # Nothing is asked of the cluster: the live colour is the other one than --colour,
        # blue when none is named (a run reads it from the production Service).
        live = "green" if colour == "blue" else "blue"
        plan = deploy_plan(stack, inputs, live, colour)
        typer.echo(json.dumps(plan.as_dict(), indent=2) if as_json else plan_text(plan))
        return
    try:
        find_kubectl()
    except K8sDeployError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    with console.status("deploying to the cluster") as status:
        runner = Runner(progress=lambda step: status.update(escape(step)))
        try:
            live = runner.read_live(inputs)
            try:
                plan = deploy_plan(stack, inputs, live, colour)
            except StackConfigError as exc:
                raise K8sDeployError(str(exc)) from None
            outcome = runner.run(plan, who, lock_wait).as_dict()
        except K8sDeployError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            if as_json and exc.outcome is not None:
                typer.echo(json.dumps(exc.outcome))
            raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(outcome))
        return
    console.print(
        f"deploy: {outcome['from']} -> {outcome['to']} ({outcome['release']}) "
        f"{outcome['result']} in {outcome['seconds']:.1f}s on namespace {inputs.namespace}"
    )
