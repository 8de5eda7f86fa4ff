"""What a release is and how one is built, as data: ids, paths inside the state directory,
the dependency layer's plan and hash, every command a build runs, the check of what a built
release imports, and which releases pruning removes. Nothing here runs, reads or writes;
``echobase.platform.release`` carries these out (git, pip, locks, the store on disk).

A release is ``HOME/releases/<id>/``: echobase installed from a wheel into a venv of its
own, plus ``release.json``. Its id is ``<version>-<tree12>``, so the same content always has
the same id. Dependencies live in shared layers ``HOME/releases/.deps/<hash>/``, linked into
each venv by a ``.pth`` file; the build tools in ``HOME/releases/.tools/<hash>/``."""

from __future__ import annotations

import email.parser
import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

RELEASES_DIR = "releases"
DEPS_DIR = ".deps"
TOOLS_DIR = ".tools"
TRASH_PREFIX = ".trash-"
LOCK_FILE = ".lock"
METADATA_FILE = "release.json"
DEPS_PTH = "_echobase_deps.pth"
# Inside the source tree: the exact dependency set of a release (written by scripts/lock).
RUNTIME_LOCK = "requirements/runtime.lock"
# Inside the source tree too: pip and the build backend that make the release's wheel.
TOOLS_LOCK = "requirements/tools.lock"
# The browser app's sources in the repository, and its built files in a release
# (``echobase.platform.frontend.SOURCE_DIR`` names the same folder; a unit test holds it).
FRONTEND_DIR = "frontend"
# A colour's record of the release it runs, inside its ephemeral directory.
COLOUR_RELEASE_FILE = "release"
MIGRATE_MODULE = "echobase.app.db.migrate"
# What a colour runs; a release that cannot import all three is never published.
SERVICE_MODULES = ("echobase.app.gateway", "echobase.app.processor", MIGRATE_MODULE)
# PEP 518's default for a project without a [build-system] table.
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0",)
# Variables that would let the interpreter see code outside the release.
LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
HEX_NAME = re.compile(r"^[0-9a-f]{40,64}$")


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
        return self.path / FRONTEND_DIR if self.frontend else None

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


# --- names and paths --------------------------------------------------------------------


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


# --- commands -------------------------------------------------------------------------


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
    """``src`` and ``dist`` absolute (the caller resolves them): a bare name like "src"
    would be looked up on the index as a project."""
    if not (src.is_absolute() and dist.is_absolute()):
        raise ReleaseError(f"pip wheel needs absolute paths, not {src} and {dist}")
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
        str(dist),
        str(src),
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


# Paths come back resolved by the release's own interpreter (``realpath``), so checking
# them here is arithmetic on strings, with nothing to look up.
VERIFY_SCRIPT = (
    "import json, os, platform, sys\n"
    f"import echobase, {', '.join(SERVICE_MODULES)}\n"
    "real = os.path.realpath\n"
    "print(json.dumps({'echobase': real(echobase.__file__), 'version': echobase.__version__,"
    " 'python': platform.python_version(), 'base_prefix': real(sys.base_prefix),"
    " 'path': [real(p) for p in sys.path]}))\n"
)


def verify_command(venv_python: Path) -> list[str]:
    return [str(venv_python), "-I", "-c", VERIFY_SCRIPT]


def check_verification(report: Mapping[str, Any], root: Path, deps_site: Path) -> None:
    """The release must import its own echobase, and find nothing outside itself, its
    dependency layer and the interpreter's standard library. ``root`` and ``deps_site`` are
    resolved by the caller, the report's paths by the release (``VERIFY_SCRIPT``)."""
    own = PurePosixPath(report["echobase"])
    if not own.is_relative_to(root):
        raise ReleaseError(f"the release imports echobase from {own}, not from its own venv")
    base = PurePosixPath(report["base_prefix"])
    for entry in report["path"]:
        where = PurePosixPath(entry)
        if where.is_relative_to(root) or where.is_relative_to(deps_site):
            continue
        # The interpreter's standard library, but not its site-packages.
        if where.is_relative_to(base) and not {"site-packages", "dist-packages"} & set(where.parts):
            continue
        raise ReleaseError(f"the release venv sees {where}, outside the release")


def colour_release_file(ephemeral_dir: Path) -> Path:
    """Where a colour records the release it runs (``Stack.ephemeral_dir(colour)``)."""
    return ephemeral_dir / COLOUR_RELEASE_FILE


def migrate_command(python: Path | str, action: str, *connection: str) -> list[str]:
    """A release's own migration tool (``pending``, ``upgrade``, ``schema``), run by its
    interpreter so that the schema moves only with the code that knows it. ``connection``:
    ``--socket S --user U --database D`` (the admin over the unix socket: no password)."""
    return [str(python), "-I", "-m", MIGRATE_MODULE, action, *connection]


def migrate_connection(socket: Path | str, user: str, database: str) -> list[str]:
    return ["--socket", str(socket), "--user", user, "--database", database]
