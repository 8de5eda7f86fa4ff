"""``echobase trace`` and ``echobase logs``: what the services left behind, read from their
files (platform/observability does the reading; this module only prints)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from echobase.cli.bluegreen import EnvOpt
from echobase.cli.durable import HomeOpt, JsonOpt, checked_env, load_stack
from echobase.platform.observability import trace_view
from echobase.platform.observability.filters import (
    LEVELS,
    iso_utc,
    parse_level,
    parse_since,
    to_unix_nanos,
)
from echobase.platform.observability.log_view import human_line, json_line, plain_line
from echobase.platform.observability.logs import (
    LogFilter,
    LogRecord,
    MergedLogs,
    UnknownService,
    log_sources,
    select_sources,
)
from echobase.platform.observability.traces import lookup, slowest, trace_files
from echobase.platform.render.durable import DurablePlan
from echobase.platform.stack import COLOURS, StackConfigError, check_colour

console = Console(stderr=True)

SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="Only since then: a duration back from now (30s, 10m, 2h, 1d) or an ISO 8601 "
        "time (local time unless it names a zone).",
    ),
]
# Traces are sampled: say so whenever one is missing, and where its request can still be found.
SAMPLED = (
    "Traces are sampled: a request that was not sampled leaves no trace, but its log lines "
    "still carry its trace id and correlation id (echobase logs --trace ID)."
)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_since(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def _usage(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(2)


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document))


# --- trace ------------------------------------------------------------------------------


def trace(
    ident: Annotated[
        str | None,
        typer.Argument(
            metavar="ID",
            help="A trace id (32 hex digits), or a correlation id or order id its spans carry.",
        ),
    ] = None,
    slowest_count: Annotated[
        int | None,
        typer.Option("--slowest", metavar="N", min=1, help="The N slowest traces instead."),
    ] = None,
    since: SinceOpt = None,
    env: EnvOpt = "devlocal",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One request's spans across services as a tree, or the slowest recent traces."""
    env = checked_env(env)
    if (ident is None) == (slowest_count is None):
        raise _usage("give a trace id, correlation id or order id, or --slowest N")
    if since is not None and slowest_count is None:
        raise _usage("--since goes with --slowest")
    window = _since(since)
    directory = DurablePlan(load_stack(home), env).traces_dir
    if slowest_count is not None:
        _show_slowest(directory, slowest_count, window, as_json)
        return
    assert ident is not None
    found = lookup(directory, ident)
    if not found.traces:
        _not_found(directory, ident, as_json)
        raise typer.Exit(1)
    if as_json:
        # One document per trace, one per line: a correlation id may span several.
        for trace_id, spans in found.traces.items():
            _print_json(trace_view.trace_document(trace_id, spans))
        return
    out = Console(highlight=False)
    if len(found.traces) > 1:
        out.print(f"{len(found.traces)} traces carry {escape(ident)}", style="bold")
    for trace_id, spans in found.traces.items():
        out.print(trace_view.trace_tree(trace_id, spans))


def _not_found(directory: Path, ident: str, as_json: bool) -> None:
    files = trace_files(directory)
    where = (
        f"{len(files)} file(s) in {directory}"
        if files
        else f"{directory} ({'no trace files' if directory.is_dir() else 'does not exist'})"
    )
    message = (
        f"no trace found for {ident!r}: looked for a span with that trace id, correlation id "
        f"or order id in {where}. {SAMPLED}"
    )
    if as_json:
        _print_json({"found": False, "id": ident, "tracesDir": str(directory), "message": message})
    else:
        console.print(f"[red]not found:[/red] {escape(message)}", highlight=False)


def _show_slowest(directory: Path, count: int, window: datetime | None, as_json: bool) -> None:
    since_ns = to_unix_nanos(window) if window is not None else 0
    summaries = slowest(directory, count, since_ns)
    since_text = iso_utc(window) if window is not None else None
    if as_json:
        _print_json(
            {
                "since": since_text,
                "tracesDir": str(directory),
                "traces": [trace_view.summary_dict(s) for s in summaries],
            }
        )
        return
    scope = f"since {since_text}" if since_text else "stored"
    if not summaries:
        console.print(f"no traces {scope} in {directory}. {SAMPLED}", highlight=False)
        return
    title = f"{len(summaries)} slowest trace(s) {scope}"
    Console(highlight=False).print(trace_view.slowest_table(summaries, title))


# --- logs -------------------------------------------------------------------------------


def logs(
    services: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SERVICE",
            help="Roles (api-gateway, order-processor, sqs, mcp, nginx, mariadb, secrets, "
            "prometheus) or program names; all when none.",
            show_default=False,
        ),
    ] = None,
    colour: Annotated[
        str | None,
        typer.Option("--colour", help=f"Only this colour's programs: {' or '.join(COLOURS)}."),
    ] = None,
    trace_id: Annotated[
        str | None,
        typer.Option("--trace", metavar="ID", help="Lines whose trace id or correlation id is ID."),
    ] = None,
    since: SinceOpt = None,
    level: Annotated[
        str | None,
        typer.Option(
            "--level",
            help=f"At or above: {' < '.join(LEVELS)}. Lines naming no level count as info.",
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print new lines until Ctrl-C.")
    ] = False,
    env: EnvOpt = "devlocal",
    home: HomeOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (the line's own fields).")
    ] = False,
) -> None:
    """Every program's log merged in time order (UTC): the environment's durable programs
    and both colours'."""
    env = checked_env(env)
    try:
        if colour is not None:
            check_colour(colour)
        min_level = parse_level(level) if level is not None else None
    except (StackConfigError, ValueError) as exc:
        raise _usage(str(exc)) from None
    stack = load_stack(home)
    try:
        sources = select_sources(log_sources(stack, env), services or [], colour)
    except UnknownService as exc:
        raise _usage(str(exc)) from None
    merged = MergedLogs(sources, LogFilter(_since(since), min_level, trace_id))
    emit = _emitter(as_json, follow)
    try:
        if follow:
            with _stop_on_signals() as stop:
                merged.follow(emit, stop.wait)
        else:
            for record in merged.backlog():
                emit(record)
    except BrokenPipeError:
        _quiet_stdout()  # the reader went away (| head): nothing left to say
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        merged.close()


def _emitter(as_json: bool, follow: bool) -> Callable[[LogRecord], None]:
    out = Console(highlight=False, soft_wrap=True)
    styled = out.is_terminal and not as_json
    if follow:  # line by line, so a follower piped into grep sees each line as it comes
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    def emit(record: LogRecord) -> None:
        if as_json:
            sys.stdout.write(json.dumps(json_line(record), default=str) + "\n")
            return
        if styled:
            out.print(human_line(record))
        else:
            sys.stdout.write(plain_line(record) + "\n")

    return emit


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM end --follow between two polls, files closed, exit status 0."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _quiet_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def register(app: typer.Typer) -> None:
    app.command("trace")(trace)
    app.command("logs")(logs)
