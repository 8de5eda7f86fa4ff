"""`echobase doctor` on the state directory: whether nginx's workers, as the user its rendered
config names, can reach the app bundles (the default state directory under a 0700 home was
unreachable for www-data workers: issue 16)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from echobase.platform import doctor

NOBODY = 65534


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A directory every user may search, as /tmp is (pytest's own are 0700 to the root)."""
    path = Path(tempfile.mkdtemp(prefix="echobase-doctor-"))
    os.chmod(path, 0o755)  # noqa: S103 - the test is about who may pass through
    yield path
    shutil.rmtree(path)


def state_dir(tmp_path: Path, worker: str | None) -> Path:
    home = tmp_path / "home" / "echobase"
    bundle = home / "releases" / "r1" / "frontend"
    bundle.mkdir(parents=True)
    (bundle / "index.html").write_text("<!doctype html>")
    (home / "web").mkdir()
    (home / "web" / "green").symlink_to(bundle)
    config = home / "durable" / "devlocal" / "nginx" / "nginx.conf"
    config.parent.mkdir(parents=True)
    config.write_text("daemon off;\n" + (f"user {worker};\n" if worker else "") + "events {}\n")
    config.chmod(0o600)  # what the renderer writes; the app bundle stays as the build made it
    return home


def test_a_directory_without_search_for_the_worker_is_found(tmp_path: Path) -> None:
    home = state_dir(tmp_path, None)
    link = home / "web" / "green"
    os.chmod(tmp_path / "home", 0o755)  # noqa: S103
    os.chmod(home, 0o711)  # noqa: S103
    assert doctor.first_unsearchable(link, NOBODY, {NOBODY}) is None
    os.chmod(tmp_path / "home", 0o700)  # like /root
    assert doctor.first_unsearchable(link, NOBODY, {NOBODY}) == tmp_path / "home"
    assert doctor.first_unsearchable(link, 0, {0}) is None  # root passes everywhere


def test_the_group_bits_count_for_a_member(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o750)  # noqa: S103
    group = directory.stat().st_gid
    assert doctor.first_unsearchable(directory, NOBODY, {group}) is None
    assert doctor.first_unsearchable(directory, NOBODY, {NOBODY}) == directory


@pytest.mark.parametrize(
    ("text", "user"),
    [("user www-data www-data;\n", "www-data"), ("daemon off;\nuser root root;", "root")],
)
def test_the_worker_user_is_read_from_the_rendered_config(text: str, user: str) -> None:
    assert doctor.configured_worker_user(text) == user


@pytest.mark.skipif(os.geteuid() != 0, reason="an unreachable bundle needs a master run by root")
def test_workers_that_cannot_reach_a_bundle_fail_with_the_fix(tmp_path: Path) -> None:
    home = state_dir(tmp_path, "nobody nogroup")
    os.chmod(tmp_path / "home", 0o700)
    (check,) = doctor.check_served_files(home)
    assert check.outcome == "fail"
    assert "nobody" in check.detail and str(tmp_path / "home") in check.detail
    assert "echobase durable setup devlocal" in check.fix


def test_workers_run_as_the_owner_reach_every_bundle(tmp_path: Path) -> None:
    home = state_dir(tmp_path, "root root" if os.geteuid() == 0 else None)
    os.chmod(tmp_path / "home", 0o700)
    (check,) = doctor.check_served_files(home)
    assert check.outcome == "ok", check
    assert "green" in check.detail


def test_a_state_directory_open_to_others_fails(tmp_path: Path) -> None:
    home = state_dir(tmp_path, None)
    os.chmod(home, 0o711)  # noqa: S103
    failed = {c.name: c for c in doctor.check_state_dir(home) if c.outcome == "fail"}
    assert failed["state directory permissions"].fix == f"chmod 700 {home}"
    os.chmod(home, 0o700)
    assert not [
        c
        for c in doctor.check_state_dir(home)
        if c.name.startswith("state") and c.outcome == "fail"
    ]
