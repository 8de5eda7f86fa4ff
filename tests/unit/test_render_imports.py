"""The rule that keeps ``echobase.platform.render`` pure: a renderer imports only the stack
model (and the other renderers, and the small contract modules both sides share), never a
module that acts: no processes, files, sockets, users, clocks, AWS or database clients.
Checked on the source (every import, also inside functions) and through every module it
reaches, so an acting import cannot hide one module away."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import echobase

SRC = Path(echobase.__file__).parent.parent
RENDER = SRC / "echobase" / "platform" / "render"

# The model: the stack and the settings types it holds. Contract modules: names and the
# queue layout both the app and the platform agree on; monitoring's catalogue and the
# renderings of its rules, console and dashboards.
ALLOWED = {
    "echobase",
    "echobase.platform",
    "echobase.platform.stack",
    "echobase.platform.bluegreen",
    "echobase.platform.bluegreen.analysis_settings",
    "echobase.platform.monitoring",
    "echobase.platform.monitoring.settings",
    "echobase.platform.monitoring.catalogue",
    "echobase.platform.monitoring.console",
    "echobase.platform.monitoring.rules",
    "echobase.platform.monitoring.grafana",
    "echobase.app",
    "echobase.app.core",
    "echobase.app.core.names",
    "echobase.app.queues",
}
# What acts, or talks to something that does. (yaml too: a renderer returns data; the CLI
# writes it.)
FORBIDDEN = {
    "os",
    "subprocess",
    "socket",
    "shutil",
    "fcntl",
    "pwd",
    "grp",
    "getpass",
    "tempfile",
    "time",
    "signal",
    "glob",
    "urllib.request",
    "http.client",
    "xmlrpc.client",
    "multiprocessing",
    "threading",
    "asyncio",
    "boto3",
    "botocore",
    "aiobotocore",
    "httpx",
    "pymysql",
    "asyncmy",
    "sqlalchemy",
    "alembic",
    "bcrypt",
    "cryptography",
    "yaml",
}
# The model's loader reads echobase.toml and ECHOBASE_* (Stack.load); renderers take a
# loaded Stack and never call it (checked below).
LOADER = "echobase.platform.stack"


def module_path(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # `from echobase.platform.render import nginx` imports a module, not a name.
            for alias in node.names:
                if module_path(f"{node.module}.{alias.name}") is not None:
                    yield f"{node.module}.{alias.name}"


def parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def renderers() -> list[str]:
    return sorted(
        "echobase.platform.render" + ("" if p.stem == "__init__" else f".{p.stem}")
        for p in RENDER.glob("*.py")
    )


def reach(start: str) -> dict[str, str]:
    """Every echobase module ``start`` imports, directly or not: name -> who imported it."""
    seen = {start: start}
    todo = [start]
    while todo:
        current = todo.pop()
        path = module_path(current)
        assert path is not None, current
        for name in imports(path):
            for module in (*parents(name), name):
                if module.startswith("echobase") and module not in seen:
                    if module_path(module) is not None:
                        seen[module] = current
                        todo.append(module)
    return seen


def test_the_render_package_holds_the_renderers() -> None:
    names = renderers()
    for expected in ("nginx", "supervisor", "prometheus", "durable", "ephemeral", "compose"):
        assert f"echobase.platform.render.{expected}" in names


@pytest.mark.parametrize("renderer", renderers())
def test_a_renderer_reaches_only_the_model_and_other_renderers(renderer: str) -> None:
    reached = reach(renderer)
    outside = {
        module: via
        for module, via in reached.items()
        if module not in ALLOWED and not module.startswith("echobase.platform.render")
    }
    assert not outside, f"{renderer} reaches acting modules (module: imported by): {outside}"
    acting = {
        (module, name)
        for module in reached
        if module != LOADER
        for name in imports(module_path(module))  # type: ignore[arg-type]
        if name in FORBIDDEN or name.split(".")[0] in FORBIDDEN
    }
    assert not acting, f"{renderer} reaches modules that act: {sorted(acting)}"


@pytest.mark.parametrize("renderer", renderers())
def test_a_renderer_never_loads_the_stack_itself(renderer: str) -> None:
    path = module_path(renderer)
    assert path is not None
    calls = [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("load", "read_config_files", "default_home")
        )
        or (isinstance(node, ast.Name) and node.id in ("read_config_files", "default_home"))
    ]
    assert not calls, f"{renderer} reads configuration itself (lines {calls}): take a Stack"


def test_the_rule_catches_an_acting_import(tmp_path: Path) -> None:
    """The check itself can fail: a module importing subprocess is caught by name."""
    bad = tmp_path / "bad.py"
    bad.write_text("import json\nfrom subprocess import run\n")
    assert {name for name in imports(bad) if name in FORBIDDEN} == {"subprocess"}
    assert "echobase.platform.runtime.files" in reach("echobase.platform.durable.nginx")
