"""The pure parts of release builds that choose and install a dependency layer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from echobase.platform import frontend
from echobase.platform.render.release import (
    FRONTEND_DIR,
    TOOLS_LOCK,
    ReleaseError,
    build_requires,
    check_verification,
    colour_release_file,
    deps_check_command,
    deps_install_command,
    layer_hash,
    lock_hash,
    migrate_command,
    migrate_connection,
    plan_deps,
    tools_install_command,
    wheel_command,
)
from echobase.platform.stack import Stack, resolve_ports

ROOT = Path(__file__).resolve().parents[2]

TAG = "cpython-311-linux-x86_64"
LOCK = "httpx==0.29.0 \\\n    --hash=sha256:" + "a" * 64 + "\n"
REQUIRES = ["httpx>=0.27", "rich>=13"]


def test_a_source_with_a_lock_installs_exactly_the_lock() -> None:
    plan = plan_deps(LOCK, REQUIRES, TAG)
    assert plan.locked and plan.requirements == LOCK
    assert plan.hash == lock_hash(LOCK, TAG)
    # Named by the lock's content and the interpreter, never by the looser Requires-Dist.
    assert plan.hash != layer_hash(REQUIRES, TAG)
    assert plan_deps(LOCK.replace("0.29.0", "0.29.1"), REQUIRES, TAG).hash != plan.hash
    assert plan_deps(LOCK, REQUIRES, "cpython-312-linux-x86_64").hash != plan.hash
    assert plan_deps(LOCK, ["other"], TAG).hash == plan.hash


def test_a_source_from_before_the_lock_keeps_its_requires_dist_layer() -> None:
    plan = plan_deps(None, REQUIRES, TAG)
    assert not plan.locked
    assert plan.hash == layer_hash(REQUIRES, TAG)  # so its existing layer is still found
    assert plan.requirements == "httpx>=0.27\nrich>=13\n"


def test_only_a_locked_install_demands_hashes_and_resolves_nothing() -> None:
    target, file = Path("/layer/site"), Path("/layer/requirements.txt")
    locked = deps_install_command("/py", target, file, locked=True)
    loose = deps_install_command("/py", target, file)
    assert locked[:3] == ["/py", "-m", "pip"]
    assert {"--require-hashes", "--no-deps"} <= set(locked)
    assert not {"--require-hashes", "--no-deps"} & set(loose)
    for cmd in (locked, loose):
        assert cmd[cmd.index("--target") + 1] == str(target)
        assert cmd[cmd.index("-r") + 1] == str(file)


def test_the_layer_is_checked_from_inside_the_release_venv() -> None:
    cmd = deps_check_command("/py", Path("/release/venv/bin/python"))
    assert cmd[:3] == ["/py", "-m", "pip"]
    assert cmd[-3:] == ["--python", "/release/venv/bin/python", "check"]


def test_the_build_tools_install_from_their_lock_with_hashes() -> None:
    file = Path("/tools/requirements.txt")
    locked = tools_install_command("/py", Path("/tools/venv/bin/python"), file, locked=True)
    assert locked[:5] == ["/py", "-m", "pip", "--disable-pip-version-check", "--python"]
    assert {"--require-hashes", "--no-deps"} <= set(locked)
    assert locked[locked.index("-r") + 1] == str(file)
    loose = tools_install_command("/py", Path("/tools/venv/bin/python"), file)
    assert not {"--require-hashes", "--no-deps"} & set(loose)


def test_the_tools_lock_pins_pip_and_meets_the_build_system() -> None:
    # scripts/install builds the project and release builds make its wheel with exactly these:
    # a [build-system] change without `bash scripts/lock` must fail here, not in a build.
    pins = dict(re.findall(r"^([a-z0-9_.-]+)==(\S+)", (ROOT / TOOLS_LOCK).read_text(), re.M))
    assert "pip" in pins
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for text in build_requires(pyproject):
        requirement = Requirement(text)
        assert requirement.name in pins, f"{TOOLS_LOCK} has no {requirement.name}"
        assert pins[requirement.name] in requirement.specifier, (text, pins[requirement.name])


def test_the_import_check_accepts_only_the_release_its_layer_and_the_stdlib() -> None:
    root, site = Path("/h/releases/.build-1"), Path("/h/releases/.deps/ab/site")
    report = {
        "echobase": f"{root}/venv/lib/python3.11/site-packages/echobase/__init__.py",
        "base_prefix": "/usr",
        "path": ["/usr/lib/python311.zip", "/usr/lib/python3.11", f"{site}", f"{root}/venv"],
    }
    check_verification(report, root, site)
    with pytest.raises(ReleaseError, match="outside the release"):
        check_verification(
            {**report, "path": [*report["path"], "/usr/lib/python3/dist-packages"]}, root, site
        )
    with pytest.raises(ReleaseError, match="not from its own venv"):
        check_verification({**report, "echobase": "/work/src/echobase/__init__.py"}, root, site)


def test_pip_wheel_is_given_absolute_paths_only() -> None:
    cmd = wheel_command("/py", Path("/tools/bin/python"), Path("/b/src"), Path("/b/dist"))
    assert cmd[-3:] == ["-w", "/b/dist", "/b/src"]
    with pytest.raises(ReleaseError):
        wheel_command("/py", Path("/tools/bin/python"), Path("src"), Path("/b/dist"))


def test_a_colour_records_its_release_in_its_own_directory() -> None:
    stack = Stack(Path("/h"), resolve_ports())
    assert colour_release_file(stack.ephemeral_dir("green")) == Path("/h/ephemeral/green/release")
    # The bundle a release carries and the source folder the build copies are one folder.
    assert FRONTEND_DIR == frontend.SOURCE_DIR


def test_migrations_run_by_the_release_interpreter_with_no_secret_in_argv() -> None:
    cmd = migrate_command(
        Path("/r/venv/bin/python"), "upgrade", *migrate_connection("/s/sock", "me", "orders_db")
    )
    assert cmd == [
        "/r/venv/bin/python",
        "-I",
        "-m",
        "echobase.app.db.migrate",
        "upgrade",
        "--socket",
        "/s/sock",
        "--user",
        "me",
        "--database",
        "orders_db",
    ]
