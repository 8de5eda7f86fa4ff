"""``echobase up|deploy|switch|canary|promote|abort|rollback|active|status|history|down``:
blue-green on one durable environment. Orchestration only: the steps live in
platform/bluegreen."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from echobase.cli.durable import HomeOpt, JsonOpt, checked_env, load_stack, preflight_ports
from echobase.platform.bluegreen import history
from echobase.platform.bluegreen.lock import LockHeld
from echobase.platform.bluegreen.pipeline import BlueGreen, DeployError, Outcome
from echobase.platform.bluegreen.recovery import RecoveryError, recover, resume_colours
from echobase.platform.durable.layer import AlertsReport, DurableError, unsupervised
from echobase.platform.monitoring.alerts import since_text
from echobase.platform.release import build_release, default_source, load_release
from echobase.platform.render.release import ReleaseError
from echobase.platform.render.routing import RoutingState
from echobase.platform.runtime.services import ServiceFailed
from echobase.platform.runtime.supervisor import SupervisorError
from echobase.platform.stack import COLOURS, StackConfigError, check_colour

console = Console(stderr=True)

EnvOpt = Annotated[str, typer.Option("--env", help="Durable environment: devlocal or ci.")]
LockWaitOpt = Annotated[
    float, typer.Option("--lock-wait", help="Wait this long for another deploy's lock.")
]
PromoteOpt = Annotated[
    bool,
    typer.Option(
        "--promote",
        help="Step the canary on (analysis.steps in echobase.toml, e.g. 10 -> 50 -> 100 %) "
        "while each step passes its analysis.",
    ),
]
FAILURES = (
    DeployError,
    DurableError,
    ReleaseError,
    LockHeld,
    ServiceFailed,
    StackConfigError,
    RecoveryError,
    SupervisorError,
)


def _bluegreen(env: str, home: Path | None) -> BlueGreen:
    env = checked_env(env)  # a usage error first: it needs no configuration
    return BlueGreen(load_stack(home), env)


def _progress(status: Any) -> Any:
    marks: list[tuple[str, float]] = []

    def progress(step: str) -> None:
        now = time.monotonic()
        if marks:
            console.print(f"  [green]done[/green] {marks[-1][0]} ({now - marks[-1][1]:.1f}s)")
        marks.append((step, now))
        if step:
            status.update(step)

    return progress


def _fail(exc: Exception, as_json: bool = False, url: str = "") -> typer.Exit:
    """Exit 1 saying why; with --json, what was done before the failure too (a canary's
    abort, a rollback), as the same JSON a success prints."""
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    outcome = getattr(exc, "outcome", None)
    if as_json and isinstance(outcome, Outcome):
        typer.echo(json.dumps({**outcome.as_dict(), "url": url}))
    return typer.Exit(1)


def _report(outcome: Outcome, as_json: bool, url: str) -> None:
    if as_json:
        typer.echo(json.dumps({**outcome.as_dict(), "url": url}))
        return
    console.print(
        f"{outcome.action}: {outcome.source} -> {outcome.target} ({outcome.release}) "
        f"{outcome.result} in {outcome.seconds:.1f}s"
        + (f"\n  {escape(outcome.detail)}" if outcome.detail else "")
        + (f"\n  users: {weights_text(outcome.weights)}" if outcome.weights else "")
        + f"\n  live: {url}"
    )


def weights_text(weights: dict[str, int] | None) -> str:
    """``blue 90 % / green 10 %``; the colours without users left out."""
    if not weights:
        return "-"
    shares = [f"{colour} {share} %" for colour, share in weights.items() if share]
    return " / ".join(shares) or "nobody (no colour live)"


def deploy(
    env: EnvOpt = "devlocal",
    colour: Annotated[
        str | None, typer.Option(help="Target colour (default: the idle one).")
    ] = None,
    release: Annotated[
        str | None, typer.Option(help="Release id (default: build the working tree).")
    ] = None,
    no_switch: Annotated[
        bool, typer.Option("--no-switch", help="Stop after the smoke test.")
    ] = False,
    allow_contract: Annotated[
        bool, typer.Option(help="Apply migrations that drop what the live release uses.")
    ] = False,
    smoke_hook: Annotated[
        str | None, typer.Option(help="Extra smoke check command, run before and after.")
    ] = None,
    canary: Annotated[
        int | None,
        typer.Option(
            "--canary",
            min=1,
            max=100,
            help="Send this percent of users to the new colour (sticky per user) and watch "
            "it against the live one, instead of switching everyone.",
        ),
    ] = None,
    promote: PromoteOpt = False,
    lock_wait: LockWaitOpt = 0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    target: Annotated[
        str, typer.Option(help="local (this machine) or k8s (a cluster, through kubectl).")
    ] = "local",
    kubeconfig: Annotated[
        Path | None, typer.Option(help="k8s: the kubeconfig file of the cluster.")
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="k8s: the image to deploy, REPOSITORY:TAG.")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="k8s: the namespace (default echobase-ENV).")
    ] = None,
    plan: Annotated[
        bool, typer.Option("--plan", help="k8s: print the kubectl commands; run nothing.")
    ] = False,
) -> None:
    """Deploy a release to the idle colour, prove it, switch traffic (or a canary's share),
    prove it again, and watch it against the old colour (analysis in echobase.toml)."""
    if target != "local" or kubeconfig or image or namespace or plan:
        _deploy_k8s(target, locals())
        return
    bluegreen = _bluegreen(env, home)
    # A deploy starts a colour's servers only: the durable layer must already run.
    preflight_ports(bluegreen.stack, env, as_json, durable=False)
    with console.status("deploying") as status:
        bluegreen.progress = progress = _progress(status)
        bluegreen.tick = status.update
        try:
            chosen = (
                load_release(bluegreen.stack.home, release)
                if release
                else _build_working_tree(bluegreen, progress)
            )
            outcome = bluegreen.deploy(
                chosen,
                colour=colour,
                switch=not no_switch,
                allow_contract=allow_contract,
                lock_wait=lock_wait,
                smoke_hook=smoke_hook,
                canary=canary,
                watch=bluegreen.stack.analysis,
                promote=promote,
            )
        except FAILURES as exc:
            raise _fail(exc, as_json, bluegreen.durable.plan.lb_url) from None
        progress("")
    _report(outcome, as_json, bluegreen.durable.plan.lb_url)


def _deploy_k8s(target: str, options: dict[str, Any]) -> None:
    """``--target k8s`` (see cli/deploy_k8s.py); the options that only mean something on
    this machine, or only on a cluster, are refused rather than ignored."""
    from echobase.cli.deploy_k8s import deploy_k8s, usage_error

    if target not in ("local", "k8s"):
        raise usage_error(f"--target is local or k8s, not {target!r}")
    if target == "local":
        raise usage_error("--kubeconfig, --image, --namespace and --plan need --target k8s")
    local_only = {"release": "--release", "canary": "--canary", "promote": "--promote"}
    local_only["smoke_hook"] = "--smoke-hook"
    given = [flag for name, flag in local_only.items() if options[name]]
    if given:
        raise usage_error(f"{', '.join(given)}: not with --target k8s (this machine only)")
    deploy_k8s(
        env=checked_env(options["env"]),
        kubeconfig=options["kubeconfig"],
        image=options["image"],
        namespace=options["namespace"],
        colour=options["colour"],
        switch=not options["no_switch"],
        allow_contract=options["allow_contract"],
        lock_wait=options["lock_wait"],
        plan_only=options["plan"],
        as_json=options["as_json"],
        home=options["home"],
    )


def _build_working_tree(bluegreen: BlueGreen, progress: Any) -> Any:
    progress("building a release from the working tree")
    release, _cached = build_release(bluegreen.stack.home, default_source(Path.cwd()), None)
    return release


def _traffic(
    env: str, home: Path | None, as_json: bool, move: Callable[[BlueGreen], Outcome]
) -> None:
    bluegreen = _bluegreen(env, home)
    with console.status("routing") as status:
        bluegreen.progress = progress = _progress(status)
        bluegreen.tick = status.update
        try:
            outcome = move(bluegreen)
        except FAILURES as exc:
            raise _fail(exc, as_json, bluegreen.durable.plan.lb_url) from None
        progress("")
    _report(outcome, as_json, bluegreen.durable.plan.lb_url)


def switch(
    colour: Annotated[str, typer.Argument(help="blue or green")],
    env: EnvOpt = "devlocal",
    lock_wait: LockWaitOpt = 0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send production traffic to a colour (refused unless it runs healthy), then watch it
    against the colour it replaced, switching back on a breach."""
    _traffic(
        env,
        home,
        as_json,
        lambda bg: bg.switch(check_colour(colour), lock_wait, watch=bg.stack.analysis),
    )


def canary(
    colour: Annotated[str, typer.Argument(help="blue or green: the idle colour")],
    percent: Annotated[int, typer.Argument(min=1, max=100, help="Percent of users, 1-100.")],
    promote: PromoteOpt = False,
    env: EnvOpt = "devlocal",
    lock_wait: LockWaitOpt = 0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a share of users to a colour (each user stays on one colour), watch it against
    the live one, and abort by itself on a breach."""
    _traffic(
        env,
        home,
        as_json,
        lambda bg: bg.canary(
            check_colour(colour), percent, lock_wait, watch=bg.stack.analysis, promote=promote
        ),
    )


def promote(
    env: EnvOpt = "devlocal",
    lock_wait: LockWaitOpt = 0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send everyone to the canary's colour (watched like any switch)."""
    _traffic(env, home, as_json, lambda bg: bg.promote(lock_wait, watch=bg.stack.analysis))


def abort(
    env: EnvOpt = "devlocal",
    lock_wait: LockWaitOpt = 0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send the canary's users back to the live colour."""
    _traffic(env, home, as_json, lambda bg: bg.abort(lock_wait))


def rollback(
    env: EnvOpt = "devlocal",
    lock_wait: LockWaitOpt = 0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Switch back to the other colour, if it still runs healthy."""
    _traffic(env, home, as_json, lambda bg: bg.rollback(lock_wait))


def active(env: EnvOpt = "devlocal", home: HomeOpt = None) -> None:
    """Print the live colour as nginx serves it: blue, green or none."""
    live = _bluegreen(env, home).live()
    if live is None:
        console.print(f"[red]error:[/red] the load balancer of {env} does not answer")
        raise typer.Exit(1)
    typer.echo(live)


def status(env: EnvOpt = "devlocal", home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Both colours: release, health of each service, queue depth, which is live, and the
    alerts firing in the environment's Prometheus."""
    bluegreen = _bluegreen(env, home)
    live = bluegreen.live()
    routed = bluegreen.routing()
    weights = routed.weights() if routed is not None else None
    colours = []
    for colour in COLOURS:
        plan = bluegreen.running_plan(colour)
        runtime = bluegreen.colour(colour)
        services = runtime.health(plan) if plan else []
        colours.append(
            {
                "colour": colour,
                "live": colour == live,
                "weight": weights[colour] if weights is not None else None,
                "release": plan.release_id if plan else None,
                "queueDepth": runtime.queue_depth(plan) if plan else None,
                "services": [vars(s) for s in services],
                "healthy": bool(services) and all(s.healthy for s in services),
            }
        )
    orphans = unsupervised(bluegreen.stack)
    alerts = bluegreen.durable.firing_alerts()
    if as_json:
        unsupervised_programs = [{"program": o.program, "pids": list(o.pids)} for o in orphans]
        typer.echo(
            json.dumps(
                {
                    "env": env,
                    "live": live,
                    "canary": _canary_dict(routed),
                    "colours": colours,
                    "unsupervised": unsupervised_programs,
                    # null (and why in alertsProblem) when Prometheus does not answer
                    "alerts": (
                        None
                        if alerts.alerts is None
                        else [alert.as_dict() for alert in alerts.alerts]
                    ),
                    "alertsProblem": alerts.problem,
                }
            )
        )
        return
    if orphans:
        console.print(
            "[red]warning:[/red] these programs run without a supervisord (it died): "
            + ", ".join(f"{o.program} (pids {', '.join(map(str, o.pids))})" for o in orphans)
            + "; run `echobase up` to put them back under supervision"
        )
    title = f"{env}: live colour {live if live is not None else 'unknown'}"
    if routed is not None and routed.canary is not None:
        title += f" (canary: {routed.canary.colour} takes {routed.canary.percent} % of users)"
    table = Table(title=title)
    columns = (
        "colour",
        "users",
        "release",
        "service",
        "state",
        "pid",
        "port",
        "health",
        "queue",
        "problem",
    )
    for column in columns:
        table.add_column(column)
    for entry in colours:
        mark = f"{entry['colour']}{' (live)' if entry['live'] else ''}"
        share = "?" if entry["weight"] is None else f"{entry['weight']} %"
        if not entry["services"]:
            table.add_row(mark, share, "-", "-", "not running", "", "", "", "")
        for index, service in enumerate(entry["services"]):
            table.add_row(
                mark if index == 0 else "",
                share if index == 0 else "",
                str(entry["release"]) if index == 0 else "",
                service["role"],
                service["state"],
                str(service["pid"] or "-"),
                str(service["port"]),
                "[green]healthy[/green]" if service["healthy"] else "[red]unhealthy[/red]",
                _queue_cell(entry["queueDepth"]) if index == 0 else "",
                "" if service["healthy"] else escape(service["detail"]),
            )
    Console().print(table)
    _print_alerts(env, alerts)


def _print_alerts(env: str, report: AlertsReport) -> None:
    out = Console()
    if report.alerts is None:
        out.print(f"[yellow]alerts unknown:[/yellow] {escape(str(report.problem))}")
        return
    if not report.alerts:
        out.print(f"{env}: no alerts firing")
        return
    now = dt.datetime.now(dt.UTC)
    table = Table(title=f"{env}: {len(report.alerts)} alert(s) firing")
    for column in ("alert", "severity", "colour / service", "since", "summary"):
        table.add_column(column)
    for alert in report.alerts:
        severity = "red" if alert.severity == "critical" else "yellow"
        table.add_row(
            alert.name,
            f"[{severity}]{escape(alert.severity)}[/{severity}]",
            escape(alert.about),
            since_text(alert.since, now),
            escape(alert.summary),
        )
    out.print(table)


def _canary_dict(routed: RoutingState | None) -> dict[str, Any] | None:
    if routed is None or routed.canary is None:
        return None
    return {"colour": routed.canary.colour, "percent": routed.canary.percent}


def _queue_cell(depth: int | None) -> str:
    return "[red]unknown: queue server down[/red]" if depth is None else str(depth)


def show_history(
    env: EnvOpt = "devlocal",
    limit: Annotated[int, typer.Option(min=1)] = 20,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploys, switches, canaries, rollbacks and downs: when, who, from, to, release,
    result, the users each colour had afterwards, and why."""
    bluegreen = _bluegreen(env, home)
    events = history.read(bluegreen.durable.plan.home, limit)
    if as_json:
        typer.echo(json.dumps([vars(e) for e in events]))
        return
    table = Table(title=f"{env} history")
    columns = ("when", "who", "action", "from", "to", "release", "result", "seconds", "users")
    for column in (*columns, "detail"):
        table.add_column(column)
    for e in events:
        table.add_row(
            e.at,
            e.who,
            e.action,
            e.source,
            e.target,
            e.release or "-",
            e.result,
            f"{e.seconds:.1f}",
            weights_text(e.weights),
            escape(e.detail),
        )
    Console().print(table)


def down(
    colour: Annotated[str | None, typer.Argument(help="blue or green")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Both colours and the durable layer (data kept).")
    ] = False,
    env: EnvOpt = "devlocal",
    drain_timeout: Annotated[float, typer.Option(help="Seconds to let the queue empty.")] = 30,
    home: HomeOpt = None,
) -> None:
    """Stop an idle colour after draining it (refuses the live one)."""
    bluegreen = _bluegreen(env, home)
    try:
        if all_:
            bluegreen.down_all(drain_timeout)
            console.print(f"{env}: both colours and the durable layer stopped; data kept")
            return
        if colour is None:
            console.print("[red]error:[/red] name a colour (blue or green), or pass --all")
            raise typer.Exit(2)
        with console.status(f"stopping {colour}") as spinner:
            bluegreen.progress = _progress(spinner)
            report = bluegreen.down(check_colour(colour), drain_timeout)
            bluegreen.progress("")
    except FAILURES as exc:
        raise _fail(exc) from None
    console.print(
        f"{colour} stopped: {report.drained} order(s) drained, {report.moved} moved to the "
        f"live colour, in {report.waited_seconds:.1f}s"
    )


def up(env: EnvOpt = "devlocal", home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Everything from a fresh clone: the durable layer, a release of the working tree,
    deployed and live. Run again, it changes nothing."""
    bluegreen = _bluegreen(env, home)
    # Programs a dead supervisord left running are this system's own: up replaces them.
    preflight_ports(bluegreen.stack, env, as_json, recovering=True)
    with console.status("bringing echobase up") as status:
        bluegreen.progress = progress = _progress(status)
        bluegreen.durable.progress = progress
        try:
            recovered = recover(bluegreen)
            if recovered is not None:
                console.print(
                    f"recovered: {len(recovered.replaced)} program(s) back under a new "
                    f"supervisord in {recovered.seconds:.1f}s"
                    + (
                        " (production on the idle colour meanwhile)"
                        if recovered.switched_away
                        else ""
                    )
                )
            bluegreen.durable.setup()
            resume_colours(bluegreen)
            release = _build_working_tree(bluegreen, progress)
            outcome = bluegreen.up(release)
        except FAILURES as exc:
            raise _fail(exc) from None
        progress("")
    _report(outcome, as_json, bluegreen.durable.plan.lb_url)


def register(app: typer.Typer) -> None:
    for command, name in (
        (up, "up"),
        (deploy, "deploy"),
        (switch, "switch"),
        (canary, "canary"),
        (promote, "promote"),
        (abort, "abort"),
        (rollback, "rollback"),
        (active, "active"),
        (status, "status"),
        (show_history, "history"),
        (down, "down"),
    ):
        app.command(name)(command)
