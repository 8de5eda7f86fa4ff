"""Run the Alembic migrations shipped inside the package (no alembic.ini needed).

Also a command line, because blue and green may run different releases against one database
and a deploy must apply the *target* release's migrations with that release's own code::

    <release python> -m echobase.app.db.migrate pending --socket S --user U --database D
    <release python> -m echobase.app.db.migrate upgrade --socket S --user U --database D
    <release python> -m echobase.app.db.migrate schema

    <python> -m echobase.app.db.migrate upgrade --secret echobase/ci/database/migrations

Each prints one JSON document on stdout. The connection is either the MariaDB admin over the
unix socket (authenticated by OS identity: the local machine) or, with ``--secret``, a user
over TCP whose credentials JSON is read from Secrets Manager (a managed database, e.g. a
Kubernetes Job): the store's endpoint and region come from the environment as the services'
do (ECHOBASE_SECRETS_ENDPOINT_URL, ECHOBASE_AWS_REGION, the AWS_* credentials). Either way
no password is ever an argument or in the output.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, TypedDict

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationStep
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import URL
from sqlalchemy.exc import SQLAlchemyError

from echobase.app.core.secrets import SecretUnavailableError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class PendingRevision(TypedDict):
    revision: str
    description: str
    sql: str


def admin_socket_url(socket: str | os.PathLike[str], user: str, database: str) -> URL:
    """The MariaDB admin over a unix socket; lives here (not in platform) so a release's
    migration command needs nothing but its own app package."""
    return URL.create(
        "mariadb+pymysql",
        username=user,
        host="localhost",
        database=database,
        query={"unix_socket": str(socket), "charset": "utf8mb4"},
    )


def secret_url(secret_name: str) -> URL:
    """The TCP URL of the database user whose credentials JSON is the secret ``secret_name``
    (the shape ``DatabaseCredentials`` reads). Raises SecretUnavailableError, whose message
    names the secret and never its value."""
    from echobase.app.core.config import ServiceSettings
    from echobase.app.core.secrets import DatabaseCredentials, fetch_secret, secrets_client

    settings = ServiceSettings()
    raw = fetch_secret(secrets_client(settings), secret_name, settings.secret_wait_seconds)
    return DatabaseCredentials.from_secret(raw).url("pymysql")


def alembic_config(url: URL | None, migrations_dir: Path = MIGRATIONS_DIR) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Passed as an attribute, not an option: the option would be interpolated and logged.
    config.attributes["url"] = url
    return config


def upgrade(url: URL, revision: str = "head", migrations_dir: Path = MIGRATIONS_DIR) -> None:
    command.upgrade(alembic_config(url, migrations_dir), revision)


def current_heads(url: URL) -> set[str]:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def head_revisions(migrations_dir: Path = MIGRATIONS_DIR) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(None, migrations_dir)).get_heads())


def pending_revisions(
    url: URL, migrations_dir: Path = MIGRATIONS_DIR, current: set[str] | None = None
) -> list[PendingRevision]:
    """The revisions an upgrade to head would apply, oldest first, each with its SQL."""
    config = alembic_config(url, migrations_dir)
    script = ScriptDirectory.from_config(config)
    if current is None:
        current = current_heads(url)
    lower = tuple(sorted(current)) or None
    steps = list(script.iterate_revisions("heads", lower, implicit_base=True))
    return [
        PendingRevision(
            revision=step.revision, description=step.doc, sql=_step_sql(config, script, step)
        )
        for step in reversed(steps)
    ]


def _step_sql(config: Config, script: ScriptDirectory, step: Script) -> str:
    """Offline (--sql) SQL for exactly one revision. A "from:to" range through
    command.upgrade cannot start at a merge revision's several parents, so the single step
    is handed to the environment directly; starting_rev still gives the version-table
    statements that step would run."""
    buffer = io.StringIO()
    config.output_buffer = buffer

    def one_step(_rev: Any, _context: Any) -> list[MigrationStep]:
        return [MigrationStep.upgrade_from_script(script.revision_map, step)]

    with EnvironmentContext(
        config,
        script,
        fn=one_step,
        as_sql=True,
        starting_rev=step.down_revision,
        destination_rev=step.revision,
    ):
        script.run_env()
    return buffer.getvalue()


def models_schema() -> dict[str, list[str]]:
    """Tables and columns this release's code reads and writes: what a later release's
    migrations must leave in place while this one may still be live."""
    from echobase.app.db.models import Base

    return {
        table.name: [column.name for column in table.columns]
        for table in Base.metadata.sorted_tables
    }


# --- command line ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--socket", type=Path, help="MariaDB unix socket")
    connection.add_argument(
        "--user", help="admin user over --socket (unix_socket auth; default: the OS user)"
    )
    connection.add_argument(
        "--secret",
        help="instead of --socket: a Secrets Manager secret holding the database user's "
        "credentials JSON, used over TCP",
    )
    connection.add_argument("--database", help="database name (with --secret: the secret's)")
    connection.add_argument(
        "--migrations",
        type=Path,
        default=MIGRATIONS_DIR,
        help="Alembic script directory (default: the one shipped in this release)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m echobase.app.db.migrate",
        description="This release's database migrations; every command prints JSON.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("upgrade", parents=[connection], help="apply pending migrations")
    commands.add_parser("pending", parents=[connection], help="pending revisions and their SQL")
    commands.add_parser("schema", parents=[connection], help="tables and columns this release uses")
    return parser


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "schema":
        return {"tables": models_schema()}
    if args.secret is not None:
        url = secret_url(args.secret)
        if args.database is not None:
            url = url.set(database=args.database)
    else:
        url = admin_socket_url(args.socket, args.user or getpass.getuser(), args.database)
    if args.command == "upgrade":
        before = current_heads(url)
        upgrade(url, "heads", args.migrations)
        return {"from": sorted(before), "to": sorted(current_heads(url))}
    current = current_heads(url)
    return {
        "current": sorted(current),
        "head": sorted(head_revisions(args.migrations)),
        "revisions": pending_revisions(url, args.migrations, current),
    }


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "schema":
        if args.secret is not None and (args.socket is not None or args.user is not None):
            parser.error("--secret connects over TCP: it takes no --socket or --user")
        if args.secret is None and (args.socket is None or args.database is None):
            parser.error(f"{args.command} needs --socket and --database, or --secret")
    out = sys.stdout
    try:
        # stdout carries exactly one JSON document: whatever alembic or a migration script
        # prints goes to stderr instead.
        with contextlib.redirect_stdout(sys.stderr):
            result = _run(args)
    # RevisionError: the database is at a revision this release does not ship (a newer
    # release migrated it), which the caller must hear about rather than get a traceback.
    except (SQLAlchemyError, CommandError, RevisionError) as exc:
        print(f"migrate {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except SecretUnavailableError as exc:  # names the secret, never its value
        print(f"migrate {args.command}: {exc}", file=sys.stderr)
        return 1
    json.dump(result, out, indent=2)
    out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
