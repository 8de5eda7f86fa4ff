"""Running a release's own migration tool (``python -m echobase.app.db.migrate``) in a
process of its own. The platform never imports the tool or alembic: the schema moves only
with the code of a release that knows it, whichever version of echobase drives the
platform. The commands come from ``echobase.platform.render.release``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from echobase.platform.render.release import migrate_command, migrate_connection

TIMEOUT = 300.0


class MigrationToolError(RuntimeError):
    """The tool failed or said nothing usable; the message carries the end of its stderr."""


def run_migrate(
    python: Path | str,
    action: str,
    socket: Path | str,
    user: str,
    database: str,
    timeout: float = TIMEOUT,
) -> dict[str, Any]:
    """One JSON document from ``action`` (``pending`` or ``upgrade``) against ``database``,
    the admin connecting over the unix socket by OS identity: no password in the arguments."""
    return run_tool(python, action, *migrate_connection(socket, user, database), timeout=timeout)


def run_tool(
    python: Path | str, action: str, *args: str, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """The JSON document the release's tool prints for ``action`` (``schema`` needs no
    connection: the tables the release's models declare)."""
    command = migrate_command(python, action, *args)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise MigrationToolError(f"no interpreter at {python}") from None
    except subprocess.TimeoutExpired:
        raise MigrationToolError(
            f"migration tool `{action}`: no result after {timeout:.0f}s"
        ) from None
    if done.returncode != 0:
        raise MigrationToolError(f"migration tool `{action}` failed: {done.stderr.strip()[-1500:]}")
    try:
        return dict(json.loads(done.stdout))
    except ValueError:
        raise MigrationToolError(f"migration tool `{action}` printed no JSON") from None
