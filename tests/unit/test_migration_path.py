"""Migrations run one way only: a release's migration tool in a process of its own. No module
of the platform or of the CLI imports the tool or alembic, at the top or inside a function,
so no echobase version can move a schema with code other than the release's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "echobase"
FORBIDDEN = ("echobase.app.db.migrate", "alembic")
PACKAGES = ("platform", "cli")


def imported_modules(tree: ast.AST) -> list[str]:
    """Every module an import statement names, ``from a import b`` as ``a`` and ``a.b``."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN)


def test_the_rule_sees_imports_inside_functions_and_from_forms() -> None:
    source = (
        "def f():\n    from echobase.app.db.migrate import upgrade\n"
        "from echobase.app.db import migrate\nimport alembic.command\n"
        "from alembicx import y\n"
    )
    hits = {n for n in imported_modules(ast.parse(source)) if forbidden(n)}
    assert hits == {
        "echobase.app.db.migrate",  # from both forms
        "echobase.app.db.migrate.upgrade",
        "alembic.command",
    }


@pytest.mark.parametrize(
    "path",
    sorted(p for package in PACKAGES for p in (SRC / package).rglob("*.py")),
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_no_platform_or_cli_module_imports_the_migration_tool(path: Path) -> None:
    names = imported_modules(ast.parse(path.read_text(), str(path)))
    assert [n for n in names if forbidden(n)] == [], (
        f"{path.relative_to(SRC)} imports the migration tool: run it through a release's "
        "interpreter (echobase.platform.runtime.migrations.run_migrate)"
    )
