"""The user's path in tests: a clone of this checkout as a user would have it, and the same
outside check of a running system that CI runs (scripts/check-live)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def clone_checkout(target: Path) -> Path:
    """A clone of this checkout with the working tree's changes (tracked, new and deleted
    files) laid over it and staged, so a dirty checkout is tested as it is: a release is
    built from the tracked files."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True)
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        relative = raw.decode()
        source, copy = REPO / relative, target / relative
        if source.is_file():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
        elif not source.exists():
            copy.unlink(missing_ok=True)  # deleted in the working tree
    subprocess.run(["git", "-C", str(target), "add", "-A"], check=True)
    return target


def check_live(url: str, ca: Path) -> str:
    """scripts/check-live against ``url``: health, the app page, register, log in, order and
    the order listed, through the LB over HTTPS. Returns its output; fails the test with it."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check-live"), url, "--ca", str(ca)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
