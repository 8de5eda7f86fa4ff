"""Releases: the local counterpart of a container image, built and kept on disk.

``echobase.platform.render.release`` says what a release is and which commands make one;
this module carries them out: it exports a git tree, runs pip in the shared layers, holds
the build lock, publishes and prunes the store. Everything is built under ``.build-*`` and
renamed into place only once verified, so a crash never leaves a directory that looks like a
release. A layer is installed from the source's ``requirements/runtime.lock`` (a commit from
before the lock falls back to the wheel's ``Requires-Dist``, resolved by pip); either way
``pip check`` must pass in the release venv. After the first build nothing needs the network.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from echobase.platform import build_cache, frontend
from echobase.platform.render.release import (
    DEPS_DIR,
    DEPS_PTH,
    FRONTEND_DIR,
    HEX_NAME,
    LEAKY_ENV,
    LOCK_FILE,
    METADATA_FILE,
    RUNTIME_LOCK,
    TOOLS_DIR,
    TOOLS_LOCK,
    TRASH_PREFIX,
    DepsPlan,
    Release,
    ReleaseError,
    build_requires,
    check_verification,
    colour_release_file,
    deps_check_command,
    deps_dir,
    deps_install_command,
    deps_pth,
    plan_deps,
    plan_prune,
    release_dir,
    release_id,
    releases_dir,
    requires_dist,
    tools_dir,
    tools_install_command,
    unused_layers,
    venv_command,
    verify_command,
    wheel_command,
    wheel_install_command,
    wheel_version,
)
from echobase.platform.runtime.files import make_dirs_writable
from echobase.platform.stack import COLOURS, Stack, resolve_ports

BUILD_PREFIX = build_cache.WORK_PREFIX
PIP_TIMEOUT = 1800.0

Progress = Callable[[str], None]


def interpreter_tag() -> str:
    """What compiled wheels depend on: a layer built for one interpreter is useless to
    another, so it is part of every layer's hash."""
    return f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"


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
        shutil.copytree(bundle, work / FRONTEND_DIR)

    say("building the wheel")
    dist = work / "dist"
    _run(
        wheel_command(sys.executable, tools / "bin" / "python", tree_dir.resolve(), dist.resolve()),
        "pip wheel",
    )
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
    check_verification(report, work.resolve(), deps_site.resolve())

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
    return sorted(p.name for p in root.iterdir() if HEX_NAME.match(p.name) and p.is_dir())


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
    """Which release each colour runs, from its record in the colour's state directory
    (written by the colour's deploy)."""
    # Directories do not depend on ports: the default table names them as any other would.
    stack = Stack(home.expanduser().resolve(), resolve_ports())
    found = {}
    for colour in COLOURS:
        try:
            text = colour_release_file(stack.ephemeral_dir(colour)).read_text().strip()
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
