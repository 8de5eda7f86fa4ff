"""Releases built for real: git archive of a clone of this repository, pip wheel, a venv per
release and one shared dependency layer (installed once per module: the slow part)."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from echobase.cli.release import app
from echobase.platform.release import (
    build_release,
    deps_layers,
    interpreter_tag,
    list_releases,
    load_release,
    releases_in_use,
)
from echobase.platform.render.release import (
    DEPS_DIR,
    RUNTIME_LOCK,
    Release,
    ReleaseError,
    layer_hash,
    lock_hash,
    plan_prune,
    releases_dir,
    requires_dist,
    service_command,
    wheel_version,
)

ROOT = Path(__file__).resolve().parents[2]
MARKER_LINE = 'RELEASE_TEST_MARKER = "two"\n'
SHOW = (
    "import json, sys, echobase\n"
    "print(json.dumps({'file': echobase.__file__, 'path': sys.path,"
    " 'marker': getattr(echobase, 'RELEASE_TEST_MARKER', None)}))"
)
pytestmark = pytest.mark.timeout(900)  # the first dependency layer installs everything


@dataclass
class Workspace:
    base: Path
    src: Path
    home: Path
    first: str
    second: str
    release1: Release
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def releases(self) -> Path:
        return releases_dir(self.home)

    def git(self, *args: str) -> str:
        return _git(self.src, *args)

    def build(self, ref: str | None, label: str | None = None) -> tuple[Release, bool]:
        started = time.monotonic()
        result = build_release(self.home, self.src, ref)
        if label:
            self.timings[label] = round(time.monotonic() - started, 2)
        return result

    def leftovers(self) -> list[str]:
        return [p.name for p in self.releases.rglob(".build-*")] + [
            p.name for p in self.releases.rglob(".trash-*")
        ]


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def _commit_all(repo: Path, message: str) -> str:
    _git(repo, "commit", "-q", "-am", message)
    return _git(repo, "rev-parse", "HEAD")


def _force_remove(path: Path) -> None:
    # Releases and layers are read-only: their directories need write back to be emptied.
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            child = Path(root, name)
            if not child.is_symlink():
                child.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def _show(python: Path, *flags: str, cwd: Path, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(python), *flags, "-c", SHOW],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def ws() -> Iterator[Workspace]:
    base = Path(tempfile.mkdtemp(prefix="eb-", dir="/tmp"))
    src = base / "src"
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(src)], check=True, timeout=120)
        _git(src, "config", "user.name", "release test")
        _git(src, "config", "user.email", "release-test@echobase.invalid")
        first = _git(src, "rev-parse", "HEAD")
        # Off the main line: a release whose service imports fail, and one built twice at once.
        _git(src, "checkout", "-q", "-b", "broken")
        gateway_init = src / "src/echobase/app/gateway/__init__.py"
        gateway_init.write_text(gateway_init.read_text() + "import echobase_no_such_module\n")
        _commit_all(src, "break the gateway")
        _git(src, "checkout", "-q", "-b", "concurrent", first)
        messages = src / "src/echobase/app/messages.py"
        messages.write_text(messages.read_text() + "# built twice at once\n")
        _commit_all(src, "another tree")
        _git(src, "checkout", "-q", "-")
        _git(src, "checkout", "-q", "-B", "main", first)
        init = src / "src/echobase/__init__.py"
        init.write_text(init.read_text() + MARKER_LINE)
        second = _commit_all(src, "a change only the second release has")

        home = base / "home"
        started = time.monotonic()
        release1, hit = build_release(home, src, first)
        assert not hit
        workspace = Workspace(base, src, home, first, second, release1)
        workspace.timings["cold build (new dependency layer)"] = round(
            time.monotonic() - started, 2
        )
        yield workspace
        print(f"\nrelease build timings (s): {json.dumps(workspace.timings, indent=2)}")
    finally:
        _force_remove(base)


# --- pure parts ---------------------------------------------------------------------------


def test_requires_dist_drops_extras_and_sorts() -> None:
    metadata = (
        "Metadata-Version: 2.1\nName: x\n"
        "Requires-Dist: rich>=13\n"
        "Requires-Dist: uvicorn[standard]>=0.30\n"
        'Requires-Dist: pytest>=8; extra == "test"\n'
        "Requires-Dist: tomli; python_version < '3.11'\n"
    )
    assert requires_dist(metadata) == [
        "rich>=13",
        "tomli; python_version < '3.11'",
        "uvicorn[standard]>=0.30",
    ]


def test_layer_hash_depends_on_content_and_interpreter_not_order() -> None:
    a = layer_hash(["b>=1", "a>=2"], "cpython-311-linux-x86_64")
    assert a == layer_hash(["a>=2", "b>=1"], "cpython-311-linux-x86_64")
    assert a != layer_hash(["a>=2", "b>=1"], "cpython-312-linux-x86_64")
    assert a != layer_hash(["a>=2"], "cpython-311-linux-x86_64")


def test_wheel_version() -> None:
    assert wheel_version("echobase-0.1.0-py3-none-any.whl") == "0.1.0"
    with pytest.raises(ReleaseError):
        wheel_version("echobase-0.1.0.tar.gz")


def test_plan_prune_keeps_newest_and_in_use() -> None:
    def fake(n: int) -> Release:
        return Release(f"r{n}", Path(f"/x/r{n}"), "0", "c", "t", None, f"{n}", "3", "d")

    newest_first = [fake(5), fake(4), fake(3), fake(2), fake(1)]
    doomed = plan_prune(newest_first, keep=2, in_use={"r2"})
    assert [r.id for r in doomed] == ["r3", "r1"]
    assert [r.id for r in plan_prune(newest_first, keep=0, in_use={"r5"})] == [
        "r4",
        "r3",
        "r2",
        "r1",
    ]
    with pytest.raises(ReleaseError):
        plan_prune(newest_first, keep=-1, in_use=())


# --- building -----------------------------------------------------------------------------


def test_release_json_records_what_was_built(ws: Workspace) -> None:
    release = ws.release1
    tree = ws.git("rev-parse", f"{ws.first}^{{tree}}")
    init = ws.git("show", f"{ws.first}:src/echobase/__init__.py")
    version = re.search(r'__version__ = "([^"]+)"', init).group(1)  # type: ignore[union-attr]
    assert release.id == f"{version}-{tree[:12]}"
    assert release.path == ws.releases / release.id
    data = json.loads((release.path / "release.json").read_text())
    assert data == {
        "id": release.id,
        "version": version,
        "commit": ws.first,
        "tree": tree,
        "ref": ws.first,
        "dirty": False,
        "built_at": data["built_at"],
        "python_version": platform.python_version(),
        "deps": release.deps,
        "frontend": ws.git("rev-parse", f"{ws.first}:frontend"),
    }
    built = datetime.fromisoformat(data["built_at"])
    assert built.utcoffset() is not None and built.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - built).total_seconds()) < 900
    assert re.fullmatch(r"[0-9a-f]{64}", release.deps)
    assert (ws.releases / DEPS_DIR / release.deps / "site").is_dir()
    # The layer came from the commit's own lock, and is named by its content.
    lock = ws.git("show", f"{ws.first}:{RUNTIME_LOCK}") + "\n"
    assert release.deps == lock_hash(lock, interpreter_tag())
    layer = json.loads((ws.releases / DEPS_DIR / release.deps / "layer.json").read_text())
    assert layer["source"] == RUNTIME_LOCK
    assert load_release(ws.home, release.id) == release


def test_release_imports_its_own_echobase_not_the_working_tree(ws: Workspace) -> None:
    release = ws.release1
    own = _show(release.python, cwd=ws.base)
    assert Path(own["file"]).is_relative_to(release.path)
    main_venv = ROOT / ".venv"
    for entry in own["path"]:
        assert not Path(entry or ws.base).resolve().is_relative_to(main_venv), entry
        assert not Path(entry or ws.base).resolve().is_relative_to(ROOT / "src"), entry
    # As services run it: even beside the source and with PYTHONPATH pointing at it.
    isolated = _show(release.python, "-I", cwd=ROOT / "src", PYTHONPATH=str(ROOT / "src"))
    assert Path(isolated["file"]).is_relative_to(release.path)
    assert service_command(release, "echobase.app.gateway")[:3] == [
        str(release.python),
        "-I",
        "-m",
    ]
    for module in ("echobase.app.gateway", "echobase.app.processor", "echobase.app.db.migrate"):
        subprocess.run(
            [str(release.python), "-I", "-c", f"import {module}"], check=True, timeout=60
        )


def test_second_commit_reuses_the_dependency_layer(ws: Workspace) -> None:
    release2, hit = ws.build(ws.second, "second commit, warm dependency layer")
    assert not hit and release2.id != ws.release1.id
    assert release2.deps == ws.release1.deps
    assert deps_layers(ws.home) == [ws.release1.deps]
    assert ws.timings["second commit, warm dependency layer"] < 60
    # The change of the second commit is in the second release only.
    assert _show(release2.python, cwd=ws.base)["marker"] == "two"
    assert _show(ws.release1.python, cwd=ws.base)["marker"] is None


def test_same_content_again_is_a_cache_hit(ws: Workspace) -> None:
    again, hit = ws.build(ws.first, "cache hit (same ref again)")
    assert hit and again == ws.release1
    assert ws.timings["cache hit (same ref again)"] < 2
    code, out, err = _cli(
        "build", "--ref", ws.first, "--source", str(ws.src), "--home", str(ws.home), "--json"
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["cache_hit"] is True and shown["id"] == ws.release1.id
    assert shown["path"] == str(ws.release1.path)


def test_working_tree_build_includes_uncommitted_changes(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    release2, _ = ws.build(ws.second)
    messages = ws.src / "src/echobase/app/messages.py"
    original = messages.read_text()
    messages.write_text(original + "UNCOMMITTED = True\n")
    try:
        dirty, hit = ws.build(None, "working tree (dirty), warm dependency layer")
        assert not hit and dirty.id != release2.id
        assert dirty.dirty and dirty.ref is None and dirty.commit == ws.second
        check = "import echobase.app.messages as m; print(m.UNCOMMITTED)"
        out = subprocess.run(
            [str(dirty.python), "-I", "-c", check], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == "True", out.stderr
        # Nothing in the clone was touched: the change is still uncommitted, no stash left.
        assert ws.git("status", "--porcelain") == "M src/echobase/app/messages.py"
        assert ws.git("stash", "list") == ""
        # The same dirty content again: the same id, found at once (default source: cwd).
        monkeypatch.chdir(ws.src / "src")
        code, out_json, err = _cli("build", "--home", str(ws.home), "--json")
        assert code == 0, err
        assert json.loads(out_json)["id"] == dirty.id
        assert json.loads(out_json)["cache_hit"] is True
    finally:
        messages.write_text(original)
    clean, hit = ws.build(None)
    assert hit and clean == release2


def test_bad_ref_and_no_repository_fail_clearly(ws: Workspace) -> None:
    with pytest.raises(ReleaseError, match="no-such-ref"):
        ws.build("no-such-ref")
    code, _out, err = _cli(
        "build", "--ref", "no-such-ref", "--source", str(ws.src), "--home", str(ws.home)
    )
    assert code == 1 and "no-such-ref" in err and "Traceback" not in err, err
    lonely = ws.base / "not-a-repo"
    lonely.mkdir(exist_ok=True)
    code, _, err = _cli("build", "--source", str(lonely), "--home", str(ws.home))
    assert code == 1 and "not inside a git work tree" in err, err
    assert ws.leftovers() == []


def test_release_that_cannot_import_its_services_is_not_published(ws: Workspace) -> None:
    before = {r.id for r in list_releases(ws.home)}
    with pytest.raises(ReleaseError, match="echobase_no_such_module"):
        ws.build("broken")
    assert {r.id for r in list_releases(ws.home)} == before
    assert ws.leftovers() == []
    tree = ws.git("rev-parse", "broken^{tree}")
    assert not any(p.name.endswith(tree[:12]) for p in ws.releases.iterdir())


def test_concurrent_builds_of_the_same_content_and_crash_leftovers(ws: Workspace) -> None:
    # What a build killed half-way leaves: cleaned by the next build, never listed.
    for crashed in (ws.releases / ".build-crashed", ws.releases / DEPS_DIR / ".build-crashed"):
        (crashed / "venv").mkdir(parents=True)
        (crashed / "venv" / "half").write_text("")
        for path in (crashed / "venv" / "half", crashed / "venv", crashed):
            path.chmod(0o555)
    assert ".build-crashed" not in {r.id for r in list_releases(ws.home)}
    results: list[tuple[Release, bool]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(build_release(ws.home, ws.src, "concurrent"))
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    (first, _), (second, _) = results
    assert first == second
    assert sorted(hit for _, hit in results) == [False, True]
    assert load_release(ws.home, first.id) == first
    assert ws.leftovers() == []


def test_releases_are_read_only(ws: Workspace) -> None:
    trees = [ws.release1.path, ws.releases / DEPS_DIR / ws.release1.deps]
    for tree in trees:
        assert not tree.stat().st_mode & 0o222
        for root, dirs, files in os.walk(tree):
            for name in [*dirs, *files]:
                path = Path(root, name)
                if not path.is_symlink():
                    assert not path.stat().st_mode & 0o222, path


def test_list_is_newest_first(ws: Workspace) -> None:
    releases = list_releases(ws.home)
    assert len(releases) >= 3
    stamps = [r.built_at for r in releases]
    assert stamps == sorted(stamps, reverse=True)
    code, out, err = _cli("list", "--home", str(ws.home), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [row["id"] for row in rows] == [r.id for r in releases]
    assert all(row["size_bytes"] > 0 for row in rows)
    code, out, err = _cli("list", "--home", str(ws.home))
    assert code == 0 and all(r.id in out for r in releases), out


def test_load_missing_release_names_it_and_the_known_ones(ws: Workspace) -> None:
    with pytest.raises(ReleaseError) as raised:
        load_release(ws.home, "9.9.9-000000000000")
    assert "9.9.9-000000000000" in str(raised.value)
    assert ws.release1.id in str(raised.value)


def test_prune_keeps_in_use_and_drops_unused_layers(ws: Workspace) -> None:
    # The oldest release is blue's: prune must not touch it.
    blue = ws.home / "ephemeral" / "blue"
    blue.mkdir(parents=True, exist_ok=True)
    (blue / "release").write_text(ws.release1.id + "\n")
    assert releases_in_use(ws.home) == {ws.release1.id}
    # A layer no release uses, read-only like a real one.
    orphan = ws.releases / DEPS_DIR / ("0" * 64)
    (orphan / "site" / "pkg").mkdir(parents=True)
    (orphan / "site" / "pkg" / "__init__.py").write_text("")
    for path in (orphan / "site" / "pkg" / "__init__.py", orphan / "site" / "pkg", orphan):
        path.chmod(path.stat().st_mode & ~0o222)

    before = list_releases(ws.home)
    newest = before[0]
    code, out, err = _cli("prune", "--keep", "1", "--home", str(ws.home), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result["removed"]) == {r.id for r in before} - {newest.id, ws.release1.id}
    assert result["removed_deps_layers"] == ["0" * 64]
    assert sorted(result["kept"]) == sorted({newest.id, ws.release1.id})
    assert load_release(ws.home, ws.release1.id) == ws.release1
    assert deps_layers(ws.home) == [ws.release1.deps]
    assert ws.leftovers() == []
    # Still runs after its neighbours and the orphan layer went.
    assert Path(_show(ws.release1.python, cwd=ws.base)["file"]).is_relative_to(ws.release1.path)

    code, out, err = _cli("prune", "--keep", "1", "--home", str(ws.home), "--json")
    assert code == 0 and json.loads(out)["removed"] == [], err


def _drop_locked(lock: str, name: str) -> str:
    """The lock without ``name``'s entry (its pin line and the hash and via lines under it)."""
    blocks = re.split(r"\n(?=\S)", lock)
    kept = [b for b in blocks if not b.startswith(f"{name}==")]
    assert len(kept) == len(blocks) - 1, f"{name} is not in the lock"
    return "\n".join(kept)


def test_a_lock_missing_a_dependency_fails_the_build(ws: Workspace) -> None:
    # Last in the module: it leaves a layer (a valid one, for that lock) that no release uses.
    ws.git("checkout", "-q", "-b", "lock-without-httpx", ws.first)
    lock = ws.src / RUNTIME_LOCK
    lock.write_text(_drop_locked(lock.read_text(), "httpx"))
    _commit_all(ws.src, "a lock that forgot httpx")
    ws.git("checkout", "-q", "main")
    before = {r.id for r in list_releases(ws.home)}
    with pytest.raises(ReleaseError) as raised:
        ws.build("lock-without-httpx")
    message = str(raised.value)
    assert "does not satisfy the release" in message and "bash scripts/lock" in message
    assert re.search(r"echobase \S+ requires httpx", message), message
    assert {r.id for r in list_releases(ws.home)} == before
    assert ws.leftovers() == []
