"""A machine-wide cache of the parts of a release build that do not depend on the state
directory: dependency layers, build-tools venvs and frontend bundles, each under the content
hash its home already names it by.

A second state directory on the same machine (a CI runner's, a test stack beside a running
one, a teammate's checkout) then copies in three seconds what took a minute of pip and npm to
make. Copies, not hard links: a link would share the file, and its mode, with the cache and
every other home, so one ``chmod -R u+w`` before deleting a home would make every copy
writable. Removing the cache breaks no home, and removing a home leaves the cache whole. The
cache is best-effort: when it cannot be read or written the build goes on as if there were
none. Every release still runs ``pip check`` and imports its own services, so a damaged entry
fails a build rather than a deploy.

``ECHOBASE_BUILD_CACHE`` names the cache's directory; ``off`` (or empty) turns it off. By
default it is ``$XDG_CACHE_HOME/echobase/build`` (``~/.cache/echobase/build``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from echobase.platform.runtime.files import make_dirs_writable

CACHE_ENV = "ECHOBASE_BUILD_CACHE"
OFF = ("", "off")
# The builds' own prefix for unfinished trees: a home's leftover-cleaning removes ours too.
WORK_PREFIX = ".build-"
DEPS, TOOLS, BUNDLES = "deps", "tools", "frontend"  # the kinds of entry
STALE_WORK_SECONDS = 3600.0


def cache_root(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where the cache is, or None when it is turned off."""
    chosen = environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in OFF else Path(chosen).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "echobase" / "build"


def restore(kind: str, key: str, final: Path) -> bool:
    """Put the cached ``kind``/``key`` at ``final`` (which must not exist); False if the cache
    has none or cannot give it."""
    root = cache_root()
    if root is None or not _is_dir(root / kind / key):
        return False
    return _copy_whole(root / kind / key, final)


def keep(kind: str, key: str, built: Path) -> None:
    """Offer a finished ``built`` tree to the cache as ``kind``/``key``."""
    root = cache_root()
    if root is None or _is_dir(root / kind / key):
        return
    try:
        (root / kind).mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return
    _remove_stale_work(root / kind)
    _copy_whole(built, root / kind / key)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # another user's cache
        return False


def _copy_whole(source: Path, final: Path) -> bool:
    """Copy ``source`` to ``final``, appearing there whole or not at all (another process
    may be doing the same: the first one wins)."""
    try:
        work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=final.parent))
    except OSError:
        return False
    try:
        shutil.copytree(source, work / "tree", symlinks=True)
        (work / "tree").rename(final)
        return True
    except OSError:
        return False
    finally:
        remove_tree(work)


def _remove_stale_work(parent: Path) -> None:
    """Half-copied trees of a process that died copying (older than an hour)."""
    now = time.time()
    for child in parent.glob(f"{WORK_PREFIX}*"):
        try:
            if now - child.stat().st_mtime > STALE_WORK_SECONDS:
                remove_tree(child)
        except OSError:
            continue


def remove_tree(path: Path) -> None:
    """Remove a cache (or a copy being made): its trees are read-only."""
    make_dirs_writable(path)
    shutil.rmtree(path, ignore_errors=True)
