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

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

SOURCE_DIR = "frontend"  # in the repository, and in a release
BUNDLES_DIR = ".frontend"
WEB_DIR = "web"
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


def web_link(home: Path, colour: str) -> Path:
    """What nginx serves for ``colour``: a link to that colour's release bundle."""
    return home / WEB_DIR / colour


def npm_ci_command(npm: str) -> list[str]:
    # --prefer-offline: npm's own cache answers for every package it has seen, so a second
    # state directory builds without the registry.
    return [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]


def npm_build_command(npm: str) -> list[str]:
    return [npm, "run", "--silent", "build"]


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


def _npm() -> str:
    npm = shutil.which("npm")
    node = shutil.which("node")
    if not npm or not node:
        raise FrontendError("the frontend needs Node.js and npm: run scripts/install")
    found = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    version = parse_node_version(found.stdout or found.stderr)
    if version < MIN_NODE:
        need = ".".join(map(str, MIN_NODE))
        raise FrontendError(f"the frontend needs Node.js {need} or newer, found {found.stdout}")
    return npm


def ensure_bundle(releases_root: Path, source: Path, tree: str, run: Runner, say: Progress) -> Path:
    """The built bundle of the frontend source ``source`` (tree hash ``tree``), building it
    unless a release with the same frontend already did. The caller holds the build lock."""
    final = bundle_dir(releases_root, tree)
    if (final / "index.html").is_file():
        return final
    npm = _npm()
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        shutil.copytree(source, work / "src")
        say("installing the frontend's packages (npm ci)")
        run(npm_ci_command(npm), "npm ci", work / "src", NPM_TIMEOUT)
        say("building the frontend (type check + vite build)")
        run(npm_build_command(npm), "frontend build", work / "src", NPM_TIMEOUT)
        dist = work / "src" / "dist"
        problems = check_bundle(dist)
        if problems:
            raise FrontendError("the frontend bundle is unfit to serve: " + "; ".join(problems))
        dist.rename(work / "dist")
        shutil.rmtree(work / "src")
        # nginx's workers run as another user: the bundle must be world-readable.
        for root, dirs, files in os.walk(work):
            for name in dirs:
                os.chmod(Path(root, name), 0o755)  # noqa: S103 - served files, no secret
            for name in files:
                os.chmod(Path(root, name), 0o644)
        (work / "dist").rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def publish(home: Path, colour: str, bundle: Path | None) -> None:
    """Point ``colour``'s web link at ``bundle`` (None: remove it, so nginx answers 503),
    atomically: a request never sees a missing link while it changes."""
    link = web_link(home, colour)
    link.parent.mkdir(parents=True, exist_ok=True)
    # nginx's workers pass through to the link; nobody else needs to list the folder.
    os.chmod(link.parent, 0o711)  # noqa: S103 - search only, see above
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
