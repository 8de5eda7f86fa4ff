"""Releases: the local counterpart of a container image.

A release is an immutable directory ``HOME/releases/<id>/`` holding echobase installed from
a wheel into its own virtualenv, plus ``release.json``. Its id is ``<version>-<tree12>``:
the package version and the first 12 hex digits of the git *tree* hash, so the same content
always gets the same id whichever commit (or uncommitted state) it came from, and building it
again is a cache hit.

Dependencies live in shared, content-addressed layers ``HOME/releases/.deps/<hash>/``,
linked into each release venv by a ``.pth`` file: releases with the same dependencies share
one layer, so a new commit builds in seconds. A layer is installed from the source's own
``requirements/runtime.lock`` (exact versions with hashes; its hash is that of the lock's
content and the interpreter); a commit from before the lock falls back to the wheel's
``Requires-Dist`` lines, resolved by pip. Either way ``pip check`` must pass in the release
venv, so a lock that misses one of the wheel's requirements fails the build. The build
tools (pip, setuptools, wheel, from the source's ``requirements/tools.lock`` when it has one)
live in a similar layer under ``.tools/``, so after the first build nothing needs the
network.

Everything is built under ``.build-*`` and renamed into place only once verified: a crash
never leaves a directory that looks like a release. Pure functions compute ids, paths and
commands; the executor at the bottom runs them.
"""

from __future__ import annotations

import contextlib
import email.parser
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from echobase.platform import build_cache, frontend
from echobase.platform.runtime.files import make_dirs_writable
from echobase.platform.stack import COLOURS

RELEASES_DIR = "releases"
DEPS_DIR = ".deps"
TOOLS_DIR = ".tools"
BUILD_PREFIX = build_cache.WORK_PREFIX
TRASH_PREFIX = ".trash-"
LOCK_FILE = ".lock"
METADATA_FILE = "release.json"
DEPS_PTH = "_echobase_deps.pth"
# Inside the source tree: the exact dependency set of a release (written by scripts/lock).
RUNTIME_LOCK = "requirements/runtime.lock"
# Inside the source tree too: pip and the build backend that make the release's wheel.
TOOLS_LOCK = "requirements/tools.lock"
# What a colour runs; a release that cannot import all three is never published.
SERVICE_MODULES = ("echobase.app.gateway", "echobase.app.processor", "echobase.app.db.migrate")
# PEP 518's default for a project without a [build-system] table.
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0",)
# Variables that would let the interpreter see code outside the release.
LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
PIP_TIMEOUT = 1800.0
_HEX = re.compile(r"^[0-9a-f]{40,64}$")

Progress = Callable[[str], None]


class ReleaseError(RuntimeError):
    """A release cannot be built, found or pruned; the message says which and why."""


@dataclass(frozen=True)
class Release:
    """One built release, as recorded in its ``release.json``."""

    id: str
    path: Path
    version: str
    commit: str  # the commit asked for; for a working-tree build, the HEAD it started from
    tree: str  # git tree hash of the content: the release's identity
    ref: str | None  # the ref asked for; None = the working tree
    built_at: str  # UTC, ISO 8601
    python_version: str
    deps: str  # hash of the dependency layer under .deps/
    dirty: bool = False  # built from uncommitted changes on top of ``commit``
    frontend: str | None = None  # git tree of the frontend source; None: built without one

    @property
    def python(self) -> Path:
        return self.path / "venv" / "bin" / "python"

    @property
    def bundle(self) -> Path | None:
        """The browser app's built files, which nginx serves for the colour running this."""
        return self.path / frontend.SOURCE_DIR if self.frontend else None

    @property
    def short_commit(self) -> str:
        return self.commit[:10] + ("+dirty" if self.dirty else "")

    def as_dict(self) -> dict[str, Any]:
        """The ``release.json`` fields (the path is where it lies, so not among them)."""
        return {
            "id": self.id,
            "version": self.version,
            "commit": self.commit,
            "tree": self.tree,
            "ref": self.ref,
            "dirty": self.dirty,
            "built_at": self.built_at,
            "python_version": self.python_version,
            "deps": self.deps,
            "frontend": self.frontend,
        }

    @classmethod
    def from_dict(cls, path: Path, data: Mapping[str, Any]) -> Release:
        return cls(
            id=str(data["id"]),
            path=path,
            version=str(data["version"]),
            commit=str(data["commit"]),
            tree=str(data["tree"]),
            ref=None if data.get("ref") is None else str(data["ref"]),
            built_at=str(data["built_at"]),
            python_version=str(data["python_version"]),
            deps=str(data["deps"]),
            dirty=bool(data.get("dirty", False)),
            frontend=None if data.get("frontend") is None else str(data["frontend"]),
        )


# --- pure: names and paths --------------------------------------------------------------


def releases_dir(home: Path) -> Path:
    return home / RELEASES_DIR


def release_dir(home: Path, release_id: str) -> Path:
    return releases_dir(home) / release_id


def deps_dir(home: Path, deps_hash: str) -> Path:
    return releases_dir(home) / DEPS_DIR / deps_hash


def tools_dir(home: Path, tools_hash: str) -> Path:
    return releases_dir(home) / TOOLS_DIR / tools_hash


def release_id(version: str, tree: str) -> str:
    return f"{version}-{tree[:12]}"


def interpreter_tag() -> str:
    """What compiled wheels depend on: a layer built for one interpreter is useless to
    another, so it is part of every layer's hash."""
    return f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"


def wheel_version(wheel_name: str) -> str:
    """``echobase-0.1.0-py3-none-any.whl`` -> ``0.1.0`` (PEP 427: no '-' inside fields)."""
    parts = wheel_name.removesuffix(".whl").split("-")
    if len(parts) not in (5, 6) or not wheel_name.endswith(".whl"):
        raise ReleaseError(f"{wheel_name!r} is not a wheel file name")
    return parts[1]


def requires_dist(metadata: str) -> list[str]:
    """The wheel METADATA's ``Requires-Dist`` lines that apply without extras, sorted: the
    test extra's tools do not belong in a service's runtime."""
    message = email.parser.Parser().parsestr(metadata, headersonly=True)
    lines = []
    for line in message.get_all("Requires-Dist") or []:
        _, _, marker = line.partition(";")
        if re.search(r"\bextra\s*==", marker):
            continue
        lines.append(line.strip())
    return sorted(lines)


def layer_hash(requirements: Iterable[str], tag: str) -> str:
    text = "\n".join([f"# {tag}", *sorted(requirements)]) + "\n"
    return hashlib.sha256(text.encode()).hexdigest()


def lock_hash(lock: str, tag: str) -> str:
    """A locked layer's identity: the lock's exact text (pins and hashes) and the
    interpreter; the marker line keeps it apart from any ``layer_hash``."""
    text = f"# {tag}\n# {RUNTIME_LOCK}\n{lock}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class DepsPlan:
    """How a release's dependency layer is made: what pip installs and under which hash."""

    hash: str
    requirements: str  # the requirements file pip installs from
    locked: bool  # exact pins with hashes; False: resolved from Requires-Dist


def plan_deps(lock: str | None, requires: Sequence[str], tag: str) -> DepsPlan:
    """From the source's lock when it has one; a commit older than the lock gets the layer
    it always had (same hash, so its existing layer is still found)."""
    if lock is None:
        return DepsPlan(layer_hash(requires, tag), "\n".join(requires) + "\n", locked=False)
    return DepsPlan(lock_hash(lock, tag), lock, locked=True)


def build_requires(pyproject: Mapping[str, Any]) -> list[str]:
    system = pyproject.get("build-system", {})
    return sorted(system.get("requires", DEFAULT_BUILD_REQUIRES))


def deps_pth(deps_site: Path) -> str:
    """The release venv's link to its dependency layer. ``addsitedir`` rather than a bare
    path line so that ``.pth`` files inside the layer (namespace packages) are honoured;
    nothing else is added, so the builder's own site-packages stay invisible."""
    return f"import site; site.addsitedir({str(deps_site)!r})\n"


def service_command(release: Release, module: str, *args: str) -> list[str]:
    """How a colour runs one of its services from a release. ``-I`` keeps PYTHONPATH, the
    user site and the working directory out: the release sees only itself and its layer."""
    return [str(release.python), "-I", "-m", module, *args]


def plan_prune(releases: Sequence[Release], keep: int, in_use: Collection[str]) -> list[Release]:
    """The releases to remove: all but the ``keep`` newest, never one in use. ``releases``
    is newest first, as ``list_releases`` gives them."""
    if keep < 0:
        raise ReleaseError(f"--keep must be 0 or more, not {keep}")
    return [r for r in releases[keep:] if r.id not in in_use]


def unused_layers(layers: Iterable[str], releases: Iterable[Release]) -> list[str]:
    used = {r.deps for r in releases}
    return sorted(set(layers) - used)


# --- pure: commands ---------------------------------------------------------------------


def pip_command(python: str, *args: str) -> list[str]:
    """pip of the interpreter echobase runs in; ``--python`` points it at another
    environment, so neither the tools nor the release venvs need a pip of their own."""
    return [python, "-m", "pip", "--disable-pip-version-check", *args]


def venv_command(python: str, path: Path) -> list[str]:
    return [python, "-m", "venv", "--without-pip", str(path)]


def tools_install_command(
    python: str, tools_python: Path, requirements_file: Path, locked: bool = False
) -> list[str]:
    exact = ["--require-hashes", "--no-deps"] if locked else []
    return pip_command(
        python, "--python", str(tools_python), "install", "-q", *exact, "-r", str(requirements_file)
    )


def wheel_command(python: str, tools_python: Path, src: Path, dist: Path) -> list[str]:
    # Absolute paths: a bare name like "src" would be looked up on the index as a project.
    return pip_command(
        python,
        "--python",
        str(tools_python),
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        str(dist.resolve()),
        str(src.resolve()),
    )


def deps_install_command(
    python: str, target: Path, requirements_file: Path, locked: bool = False
) -> list[str]:
    # A lock already holds the whole closure: pip must neither resolve nor add anything,
    # and every file must match its recorded hash.
    exact = ["--require-hashes", "--no-deps"] if locked else []
    return pip_command(
        python,
        "install",
        "-q",
        "--no-warn-script-location",
        *exact,
        "--target",
        str(target),
        "-r",
        str(requirements_file),
    )


def deps_check_command(python: str, venv_python: Path) -> list[str]:
    """``pip check`` inside the release venv, which sees the layer through its ``.pth``:
    every installed distribution's requirements, the wheel's among them, must be met."""
    return pip_command(python, "--python", str(venv_python), "check")


def wheel_install_command(python: str, venv_python: Path, wheel: Path) -> list[str]:
    return pip_command(
        python, "--python", str(venv_python), "install", "-q", "--no-deps", "--no-index", str(wheel)
    )


VERIFY_SCRIPT = (
    "import json, platform, sys\n"
    f"import echobase, {', '.join(SERVICE_MODULES)}\n"
    "print(json.dumps({'echobase': echobase.__file__, 'version': echobase.__version__,"
    " 'python': platform.python_version(), 'base_prefix': sys.base_prefix,"
    " 'path': sys.path}))\n"
)


def verify_command(venv_python: Path) -> list[str]:
    return [str(venv_python), "-I", "-c", VERIFY_SCRIPT]


def check_verification(report: Mapping[str, Any], root: Path, deps_site: Path) -> None:
    """The release must import its own echobase, and find nothing outside itself, its
    dependency layer and the interpreter's standard library."""
    own = Path(report["echobase"]).resolve()
    if not own.is_relative_to(root.resolve()):
        raise ReleaseError(f"the release imports echobase from {own}, not from its own venv")
    base = Path(report["base_prefix"]).resolve()
    for entry in report["path"]:
        where = Path(entry).resolve()
        if where.is_relative_to(root.resolve()) or where.is_relative_to(deps_site.resolve()):
            continue
        # The interpreter's standard library, but not its site-packages.
        if where.is_relative_to(base) and not {"site-packages", "dist-packages"} & set(where.parts):
            continue
        raise ReleaseError(f"the release venv sees {where}, outside the release")


# --- executor ---------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    env.update(extra)
    return env


def _run(
    cmd: Sequence[str], what: str, cwd: Path | None = None, timeout: float = PIP_TIMEOUT
) -> str:
    try:
        done = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=_clean_env(PIP_NO_INPUT="1"),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ReleaseError(f"{what}: {cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ReleaseError(f"{what}: no result after {timeout:.0f}s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ReleaseError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def _git_run(top: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # stash create makes a commit object, which needs an identity even if none is set up.
    identity = {
        "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", "echobase release"),
        "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", "release@echobase.invalid"),
        "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", "echobase release"),
        "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", "release@echobase.invalid"),
    }
    try:
        return subprocess.run(
            ["git", "-C", str(top), *args],
            env=_clean_env(**identity),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except FileNotFoundError:
        raise ReleaseError("git is not installed") from None


def _git(top: Path, *args: str, what: str) -> str:
    done = _git_run(top, *args)
    if done.returncode != 0:
        raise ReleaseError(f"{what}: {done.stderr.strip() or f'git exit {done.returncode}'}")
    return done.stdout.strip()


def _snapshot(top: Path) -> str | None:
    """A commit of the working tree's tracked files, or None when they equal HEAD."""
    done = _git_run(top, "stash", "create")
    if done.returncode == 0:
        return done.stdout.strip() or None
    # A file rewritten with its committed content makes git 2.39's stash create exit 1
    # silently; only a clean diff proves that means "no changes".
    if done.stderr.strip() or _git_run(top, "diff", "--quiet", "HEAD", "--").returncode != 0:
        raise ReleaseError(
            f"recording the working tree: {done.stderr.strip() or 'git stash create failed'}"
        )
    return None


def git_toplevel(source: Path) -> Path:
    """The work tree that contains ``source``."""
    if not source.is_dir():
        raise ReleaseError(f"{source} is not a directory")
    try:
        return Path(_git(source, "rev-parse", "--show-toplevel", what="git")).resolve()
    except ReleaseError:
        raise ReleaseError(f"{source} is not inside a git work tree") from None


def default_source(cwd: Path) -> Path:
    """The work tree to build when none is named: the one around ``cwd``, else the one
    this echobase was installed from (an editable install from a clone)."""
    try:
        return git_toplevel(cwd)
    except ReleaseError:
        installed = Path(__file__).resolve().parents[3]
        try:
            return git_toplevel(installed)
        except ReleaseError:
            raise ReleaseError(
                f"{cwd} is not inside a git work tree; run from the echobase clone or pass "
                "--source DIR"
            ) from None


@dataclass(frozen=True)
class Source:
    """What to build: the commit to archive and what to record about it."""

    top: Path
    archive: str  # the commit object git archive exports
    commit: str  # recorded in release.json
    tree: str
    ref: str | None
    dirty: bool


def resolve_source(source: Path, ref: str | None) -> Source:
    """``ref`` as a commit; without one, the working tree's tracked files as they are
    (``git stash create`` commits the dirty state without touching the tree, the index or
    any ref; untracked files that were never ``git add``-ed are not part of it)."""
    top = git_toplevel(source)
    if ref is not None:
        if not ref or ref.startswith("-"):
            raise ReleaseError(f"bad git ref {ref!r}")
        try:
            commit = _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", what="")
        except ReleaseError:
            raise ReleaseError(f"git ref {ref!r} is not a commit in {top}") from None
        tree = _git(top, "rev-parse", f"{commit}^{{tree}}", what=f"tree of {ref}")
        return Source(top, commit, commit, tree, ref, dirty=False)
    try:
        head = _git(top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", what="")
    except ReleaseError:
        raise ReleaseError(f"{top} has no commit yet: commit once, or pass --ref") from None
    snapshot = _snapshot(top) or head
    tree = _git(top, "rev-parse", f"{snapshot}^{{tree}}", what="tree of the working tree")
    head_tree = _git(top, "rev-parse", f"{head}^{{tree}}", what="tree of HEAD")
    return Source(top, snapshot, head, tree, None, dirty=tree != head_tree)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    root = releases_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    # Everything that reads a release (the services, nginx's workers) runs as its owner;
    # explicit, so that the 0711 of earlier versions closes too.
    os.chmod(root, 0o700)
    with open(root / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_tree(path: Path) -> None:
    """Remove a (possibly read-only) tree; renamed aside first so that a crash half-way
    leaves a ``.trash-*`` the next build cleans, never a half release under its own name."""
    if not path.exists():
        return
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{secrets.token_hex(4)}")
    path.rename(trash)
    make_dirs_writable(trash)
    shutil.rmtree(trash)


def make_read_only(path: Path, include_root: bool = True) -> None:
    for root, dirs, files in os.walk(path):
        for name in [*files, *dirs]:
            child = Path(root, name)
            if not child.is_symlink():
                child.chmod(child.stat().st_mode & ~0o222)
    if include_root:
        path.chmod(path.stat().st_mode & ~0o222)


def _clean_leftovers(home: Path) -> None:
    """Half-built and half-removed trees of an earlier crash (called under the lock, so no
    build of ours is running)."""
    root = releases_dir(home)
    for parent in (root, root / DEPS_DIR, root / TOOLS_DIR, root / frontend.BUNDLES_DIR):
        if not parent.is_dir():
            continue
        for child in parent.iterdir():
            if child.name.startswith((BUILD_PREFIX, TRASH_PREFIX)) and child.is_dir():
                make_dirs_writable(child)
                shutil.rmtree(child, ignore_errors=True)


def _new_build_dir(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=parent))


def _find_by_tree(home: Path, tree: str) -> Release | None:
    root = releases_dir(home)
    if not root.is_dir():
        return None
    for path in root.glob(f"*-{tree[:12]}"):
        release = _read_release(path)
        if release is not None and release.tree == tree:
            return release
    return None


def _read_release(path: Path) -> Release | None:
    try:
        data = json.loads((path / METADATA_FILE).read_text())
        return Release.from_dict(path, data)
    except (OSError, ValueError, KeyError):
        return None


def _site_packages(venv: Path) -> Path:
    (site,) = venv.glob("lib/python*/site-packages")
    return site


def _ensure_tools(home: Path, plan: DepsPlan, progress: Progress) -> Path:
    """A venv holding the build backend, made once per tools lock (or, for a commit older
    than the lock, per set of build requirements), so that building a wheel needs neither
    build isolation nor the network."""
    final = tools_dir(home, plan.hash)
    if (final / "bin" / "python").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    if build_cache.restore(build_cache.TOOLS, plan.hash, final):
        progress(f"build tools {plan.hash[:12]} taken from the build cache")
        return final
    source = TOOLS_LOCK if plan.locked else "[build-system] requires, no lock"
    progress(f"installing build tools (from {source})")
    work = _new_build_dir(final.parent)
    (work / "requirements.txt").write_text(plan.requirements)
    venv = work / "venv"
    _run(venv_command(sys.executable, venv), "creating the build-tools venv")
    _run(
        tools_install_command(
            sys.executable, venv / "bin" / "python", work / "requirements.txt", plan.locked
        ),
        f"installing build tools from {source}",
    )
    # pyvenv.cfg sits beside bin/, so the venv works from wherever it is renamed to.
    venv.rename(final)
    shutil.rmtree(work)
    build_cache.keep(build_cache.TOOLS, plan.hash, final)
    return final


def _ensure_deps(home: Path, plan: DepsPlan, progress: Progress) -> tuple[str, Path]:
    """The shared dependency layer of ``plan``; installed once with pip --target."""
    digest = plan.hash
    final = deps_dir(home, digest)
    if (final / "layer.json").exists():
        return digest, final / "site"
    final.parent.mkdir(parents=True, exist_ok=True)
    if build_cache.restore(build_cache.DEPS, digest, final):
        progress(f"dependency layer {digest[:12]} taken from the build cache")
        return digest, final / "site"
    source = RUNTIME_LOCK if plan.locked else "Requires-Dist, no lock"
    progress(f"installing dependencies into a new layer {digest[:12]} (from {source})")
    work = _new_build_dir(final.parent)
    (work / "requirements.txt").write_text(plan.requirements)
    _run(
        deps_install_command(
            sys.executable, work / "site", work / "requirements.txt", locked=plan.locked
        ),
        f"installing dependencies from {source}",
    )
    # Console scripts here would start the builder's interpreter, not a release's.
    shutil.rmtree(work / "site" / "bin", ignore_errors=True)
    layer = {
        "hash": digest,
        "interpreter": interpreter_tag(),
        "source": source,
        "installed": sorted(p.name.removesuffix(".dist-info") for p in _dist_infos(work)),
        "built_at": _now(),
    }
    (work / "layer.json").write_text(json.dumps(layer, indent=2) + "\n")
    make_read_only(work, include_root=False)
    work.rename(final)
    make_read_only(final)
    build_cache.keep(build_cache.DEPS, digest, final)
    return digest, final / "site"


def _check_deps(venv_python: Path, plan: DepsPlan) -> None:
    try:
        _run(deps_check_command(sys.executable, venv_python), "pip check")
    except ReleaseError as exc:
        fix = f"; regenerate {RUNTIME_LOCK} with `bash scripts/lock`" if plan.locked else ""
        raise ReleaseError(
            f"the dependency layer does not satisfy the release{fix}: {exc}"
        ) from None


def _read_lock(tree: Path, name: str) -> str | None:
    """A lock file of the source, or None for a commit from before it existed."""
    path = tree / name
    return path.read_text() if path.is_file() else None


def _dist_infos(layer: Path) -> Iterator[Path]:
    return (layer / "site").glob("*.dist-info")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _export(source: Source, dest: Path) -> None:
    archive = dest.with_suffix(".tar")
    _git(source.top, "archive", "--format=tar", "-o", str(archive), source.archive, what="export")
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # 3.11.4+: refuse paths that escape dest
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover
            tar.extractall(dest)  # noqa: S202 - our own git's archive of our own tree
    archive.unlink()


def _frontend_tree(src: Source) -> str | None:
    """The git tree of the source's frontend folder; None for a commit without one."""
    found = _git_run(
        src.top, "rev-parse", "--verify", "--quiet", f"{src.archive}:{frontend.SOURCE_DIR}"
    )
    if found.returncode != 0:
        return None
    return found.stdout.strip()


def _relocate_scripts(venv: Path, old: Path, new: Path) -> None:
    """Scripts pip wrote name the interpreter by the build path, and the install record
    names the wheel by it; point them at the final paths (the rename that follows makes
    them exist)."""
    before, after = str(old).encode(), str(new).encode()
    records = _site_packages(venv).glob("*.dist-info/direct_url.json")
    for path in [*(venv / "bin").iterdir(), venv / "pyvenv.cfg", *records]:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if before in data:
            path.write_bytes(data.replace(before, after))


def build_release(
    home: Path, source: Path, ref: str | None = None, progress: Progress | None = None
) -> tuple[Release, bool]:
    """Build ``ref`` (or the working tree) of the git work tree ``source`` into
    ``HOME/releases/<id>``. Returns the release and whether it already existed."""
    say: Progress = progress or (lambda _step: None)
    home = home.expanduser().resolve()
    say(f"resolving {ref or 'the working tree'}")
    src = resolve_source(source.expanduser().resolve(), ref)
    existing = _find_by_tree(home, src.tree)
    if existing is not None:
        return existing, True
    say("waiting for other builds")
    with _locked(home):
        existing = _find_by_tree(home, src.tree)  # built while we waited
        if existing is not None:
            return existing, True
        _clean_leftovers(home)
        work = _new_build_dir(releases_dir(home))
        try:
            release = _build(home, src, work, say)
        except BaseException:
            make_dirs_writable(work)
            shutil.rmtree(work, ignore_errors=True)
            raise
    return release, False


def _build(home: Path, src: Source, work: Path, say: Progress) -> Release:
    what = src.ref or "the working tree"
    say(f"exporting {what} ({src.tree[:12]})")
    tree_dir = work / "src"
    _export(src, tree_dir)
    pyproject_file = tree_dir / "pyproject.toml"
    if not pyproject_file.is_file():
        raise ReleaseError(f"{what} has no pyproject.toml at the top of the repository")
    try:
        pyproject = tomllib.loads(pyproject_file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ReleaseError(f"{what}: pyproject.toml: {exc}") from None
    tag = interpreter_tag()
    lock = _read_lock(tree_dir, RUNTIME_LOCK)
    tools_plan = plan_deps(_read_lock(tree_dir, TOOLS_LOCK), build_requires(pyproject), tag)
    tools = _ensure_tools(home, tools_plan, say)
    frontend_tree = _frontend_tree(src)
    if frontend_tree is not None:
        try:
            bundle = frontend.ensure_bundle(
                releases_dir(home), tree_dir / frontend.SOURCE_DIR, frontend_tree, _run, say
            )
        except frontend.FrontendError as exc:
            raise ReleaseError(str(exc)) from None
        shutil.copytree(bundle, work / frontend.SOURCE_DIR)

    say("building the wheel")
    dist = work / "dist"
    _run(wheel_command(sys.executable, tools / "bin" / "python", tree_dir, dist), "pip wheel")
    wheels = list(dist.glob("*.whl"))
    if len(wheels) != 1:
        raise ReleaseError(f"pip wheel made {len(wheels)} wheels, expected one")
    wheel = wheels[0]
    version = wheel_version(wheel.name)
    new_id = release_id(version, src.tree)
    final = release_dir(home, new_id)
    if final.exists():
        raise ReleaseError(f"{final} exists but is not a release of tree {src.tree}: remove it")
    with zipfile.ZipFile(wheel) as archive:
        (meta_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requirements = requires_dist(archive.read(meta_name).decode())
    plan = plan_deps(lock, requirements, tag)
    deps_hash, deps_site = _ensure_deps(home, plan, say)

    say("installing echobase into the release venv")
    venv = work / "venv"
    _run(venv_command(sys.executable, venv), "creating the release venv")
    _run(wheel_install_command(sys.executable, venv / "bin" / "python", wheel), "pip install")
    (_site_packages(venv) / DEPS_PTH).write_text(deps_pth(deps_site))
    shutil.rmtree(tree_dir)
    _check_deps(venv / "bin" / "python", plan)

    say("verifying the release imports its own code")
    out = _run(verify_command(venv / "bin" / "python"), "importing the services", cwd=work)
    report = json.loads(out.strip().splitlines()[-1])
    check_verification(report, work, deps_site)

    release = Release(
        id=new_id,
        path=final,
        version=version,
        commit=src.commit,
        tree=src.tree,
        ref=src.ref,
        built_at=_now(),
        python_version=str(report["python"]),
        deps=deps_hash,
        dirty=src.dirty,
        frontend=frontend_tree,
    )
    _relocate_scripts(venv, work, final)
    (work / METADATA_FILE).write_text(json.dumps(release.as_dict(), indent=2) + "\n")
    say(f"publishing {new_id}")
    make_read_only(work, include_root=False)
    work.rename(final)
    make_read_only(final)
    return release


def clone_with_commit(source: Path, dest: Path, files: Mapping[str, str], message: str) -> Path:
    """A clone of the HEAD of the work tree around ``source`` at ``dest``, plus one commit
    writing ``files`` (path relative to the top -> text): a second, different release of the
    same code, for exercising or measuring a deploy from one release to another."""
    top = git_toplevel(source)
    _git(top, "clone", "-q", str(top), str(dest), what="cloning")
    for relative, text in files.items():
        path = dest / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(dest, "add", "-A", what="staging the change")
    _git(dest, "commit", "-qm", message, what="committing the change")
    return dest


def list_releases(home: Path) -> list[Release]:
    """Every published release, newest first."""
    root = releases_dir(home.expanduser().resolve())
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue
        release = _read_release(path)
        if release is not None:
            found.append(release)
    return sorted(found, key=lambda r: (r.built_at, r.id), reverse=True)


def load_release(home: Path, release_id: str) -> Release:
    home = home.expanduser().resolve()
    path = release_dir(home, release_id)
    release = None if "/" in release_id or release_id.startswith(".") else _read_release(path)
    if release is None:
        known = ", ".join(r.id for r in list_releases(home)) or "none"
        raise ReleaseError(
            f"no release {release_id!r} in {releases_dir(home)} (known: {known}); "
            "build one with `echobase release build`"
        )
    return release


def deps_layers(home: Path) -> list[str]:
    root = releases_dir(home.expanduser().resolve()) / DEPS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if _HEX.match(p.name) and p.is_dir())


def prune_releases(home: Path, keep: int, in_use: Collection[str]) -> list[str]:
    """Remove all but the ``keep`` newest releases, never one in ``in_use``, then every
    dependency layer no remaining release uses. Returns the removed release ids."""
    home = home.expanduser().resolve()
    with _locked(home):
        _clean_leftovers(home)
        releases = list_releases(home)
        doomed = plan_prune(releases, keep, in_use)
        for release in doomed:
            remove_tree(release.path)
        gone = {r.id for r in doomed}
        remaining = [r for r in releases if r.id not in gone]
        for digest in unused_layers(deps_layers(home), remaining):
            remove_tree(deps_dir(home, digest))
    return [r.id for r in doomed]


def colour_releases(home: Path) -> dict[str, str]:
    """Which release each colour runs, from ``HOME/ephemeral/<colour>/release`` (written by
    the colour's deploy)."""
    home = home.expanduser().resolve()
    found = {}
    for colour in COLOURS:
        try:
            text = (home / "ephemeral" / colour / "release").read_text().strip()
        except FileNotFoundError:
            continue
        if text:
            found[colour] = text
    return found


def releases_in_use(home: Path) -> set[str]:
    return set(colour_releases(home).values())


def disk_usage(path: Path) -> int:
    """Bytes under ``path`` (not following links: the shared layer is not the release's)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total
