"""``echobase release build|list|prune``: immutable, versioned builds that colours run."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from echobase.platform.release import (
    build_release,
    colour_releases,
    default_source,
    deps_layers,
    disk_usage,
    git_toplevel,
    list_releases,
    prune_releases,
    releases_in_use,
)
from echobase.platform.render.release import ReleaseError, releases_dir
from echobase.platform.stack import default_home

console = Console(stderr=True)
app = typer.Typer(
    help="Releases: the app built from a git commit (or the working tree) into its own venv.",
    no_args_is_help=True,
)

HomeOpt = Annotated[
    Path | None,
    typer.Option(help="State directory (default $ECHOBASE_HOME or ~/.local/share/echobase)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _home(home: Path | None) -> Path:
    return (home or default_home()).expanduser().resolve()


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(1)


def _size(num: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if num < 1024:
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    return f"{num:.1f} GiB"


def _when(built_at: str) -> str:
    try:
        return datetime.fromisoformat(built_at).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return built_at


@app.command("build")
def build(
    ref: Annotated[
        str | None,
        typer.Option(help="Git ref to build (default: the working tree, uncommitted changes too)."),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(help="Git work tree to build from (default: the one around the cwd)."),
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a release; building content that already has one returns it at once."""
    state = _home(home)
    started = time.monotonic()
    try:
        top = git_toplevel(source) if source else default_source(Path.cwd())
        with console.status("building release") as status:
            release, cache_hit = build_release(state, top, ref, progress=status.update)
    except (ReleaseError, OSError) as exc:  # OSError: a full disk or an unwritable home
        raise _fail(exc) from None
    seconds = round(time.monotonic() - started, 2)
    if as_json:
        result = {**release.as_dict(), "path": str(release.path)}
        typer.echo(json.dumps({**result, "cache_hit": cache_hit, "seconds": seconds}))
        return
    how = "already built (cache hit)" if cache_hit else f"built in {seconds:.1f}s"
    console.print(
        f"release [bold]{release.id}[/bold] {how}\n"
        f"  from    {release.ref or 'working tree'} (commit {release.short_commit})\n"
        f"  path    {release.path}\n"
        f"  python  {release.python}",
        highlight=False,
    )


@app.command("list")
def list_(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """The releases in the state directory, newest first."""
    state = _home(home)
    releases = list_releases(state)
    colours: dict[str, list[str]] = {}
    for colour, release_id in colour_releases(state).items():
        colours.setdefault(release_id, []).append(colour)
    sizes = {r.id: disk_usage(r.path) for r in releases}
    if as_json:
        rows = [
            {
                **r.as_dict(),
                "path": str(r.path),
                "size_bytes": sizes[r.id],
                "in_use_by": colours.get(r.id, []),
            }
            for r in releases
        ]
        typer.echo(json.dumps(rows))
        return
    if not releases:
        console.print(f"no releases in {releases_dir(state)}: `echobase release build` makes one")
        return
    table = Table(title=f"releases ({releases_dir(state)})")
    for column in ("id", "version", "commit", "built (UTC)", "size", "in use"):
        # Ids and commits are copied into other commands: never wrapped or cut.
        table.add_column(
            column,
            justify="right" if column == "size" else "left",
            no_wrap=column in ("id", "commit"),
            min_width=len(releases[0].id) if column == "id" else None,
        )
    for r in releases:
        table.add_row(
            r.id,
            r.version,
            r.short_commit,
            _when(r.built_at),
            _size(sizes[r.id]),
            ", ".join(colours.get(r.id, [])),
        )
    out = Console()
    # Piped output would be cut to 80 columns; a table narrower than this keeps its width.
    (out if out.is_terminal else Console(width=160)).print(table)


@app.command("prune")
def prune(
    keep: Annotated[int, typer.Option(min=0, help="How many of the newest releases to keep.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove old releases (never one a colour runs) and dependency layers none uses."""
    state = _home(home)
    in_use = releases_in_use(state)
    layers_before = set(deps_layers(state))
    try:
        removed = prune_releases(state, keep, in_use)
    except (ReleaseError, OSError) as exc:
        raise _fail(exc) from None
    removed_layers = sorted(layers_before - set(deps_layers(state)))
    kept = [r.id for r in list_releases(state)]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "removed": removed,
                    "kept": kept,
                    "in_use": sorted(in_use),
                    "removed_deps_layers": removed_layers,
                }
            )
        )
        return
    for release_id in removed:
        console.print(f"  removed {release_id}", highlight=False)
    for digest in removed_layers:
        console.print(f"  removed dependency layer {digest[:12]}", highlight=False)
    protected = sorted(in_use & set(kept))
    note = f" ({', '.join(protected)} in use)" if protected else ""
    console.print(f"{len(removed)} removed, {len(kept)} kept{note}", highlight=False)
