"""The machine-wide build cache: what a second home gets, and what it never breaks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from echobase.platform import build_cache
from echobase.platform.release import make_read_only


def layer(path: Path) -> Path:
    (path / "site" / "pkg").mkdir(parents=True)
    (path / "site" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (path / "layer.json").write_text("{}\n")
    (path / "link").symlink_to("site/pkg")
    make_read_only(path)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(build_cache.CACHE_ENV, str(root))
    return root


def test_where_the_cache_is() -> None:
    home = str(Path.home())
    assert build_cache.cache_root({}) == Path(home, ".cache/echobase/build")
    assert build_cache.cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/echobase/build")
    assert build_cache.cache_root({build_cache.CACHE_ENV: "/c"}) == Path("/c")
    for off in ("off", "OFF", "", " "):
        assert build_cache.cache_root({build_cache.CACHE_ENV: off}) is None


def test_a_kept_tree_is_restored_whole_into_another_home(tmp_path: Path, cache: Path) -> None:
    built = layer(tmp_path / "home-a" / "deps" / "abc")
    build_cache.keep(build_cache.DEPS, "abc", built)
    final = tmp_path / "home-b" / "deps" / "abc"
    final.parent.mkdir(parents=True)
    assert build_cache.restore(build_cache.DEPS, "abc", final)
    assert (final / "site/pkg/__init__.py").read_text() == "VALUE = 1\n"
    assert os.readlink(final / "link") == "site/pkg"
    # Read-only like the original, and a copy: making one home's tree writable (as one does
    # before deleting it) leaves the cache and the other homes read-only.
    assert not (final / "site").stat().st_mode & 0o222
    assert not (final / "layer.json").stat().st_mode & 0o222
    subprocess.run(["chmod", "-R", "u+w", str(built)], check=True)
    for tree in (final, cache / "deps" / "abc"):
        assert not (tree / "layer.json").stat().st_mode & 0o222
        assert not (tree / "site" / "pkg" / "__init__.py").stat().st_mode & 0o222
    assert [p.name for p in final.parent.iterdir()] == ["abc"]  # no work dir left behind


def test_removing_the_cache_or_a_home_breaks_neither(tmp_path: Path, cache: Path) -> None:
    built = layer(tmp_path / "home-a" / "abc")
    build_cache.keep(build_cache.TOOLS, "abc", built)
    final = tmp_path / "home-b" / "abc"
    final.parent.mkdir()
    assert build_cache.restore(build_cache.TOOLS, "abc", final)
    build_cache.remove_tree(tmp_path / "home-a")
    assert (cache / "tools/abc/layer.json").is_file()
    build_cache.remove_tree(cache)
    assert (final / "site/pkg/__init__.py").is_file()


def test_nothing_cached_or_the_cache_off_means_a_build(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "home" / "abc"
    final.parent.mkdir()
    assert not build_cache.restore(build_cache.BUNDLES, "abc", final)
    built = layer(tmp_path / "built")
    monkeypatch.setenv(build_cache.CACHE_ENV, "off")
    build_cache.keep(build_cache.BUNDLES, "abc", built)
    assert not cache.exists()
    assert not build_cache.restore(build_cache.BUNDLES, "abc", final)
    assert not final.exists()


def test_a_cache_that_cannot_be_written_is_passed_by(tmp_path: Path, cache: Path) -> None:
    cache.write_text("not a directory")
    build_cache.keep(build_cache.DEPS, "abc", layer(tmp_path / "built"))  # no exception
    final = tmp_path / "home" / "abc"
    final.parent.mkdir()
    assert not build_cache.restore(build_cache.DEPS, "abc", final)


def test_an_entry_already_there_is_kept_as_it_is(tmp_path: Path, cache: Path) -> None:
    first = layer(tmp_path / "first")
    build_cache.keep(build_cache.DEPS, "abc", first)
    second = tmp_path / "second"
    (second / "other").mkdir(parents=True)
    build_cache.keep(build_cache.DEPS, "abc", second)
    assert sorted(p.name for p in (cache / "deps/abc").iterdir()) == ["layer.json", "link", "site"]
