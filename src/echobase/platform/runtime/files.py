"""Files under the state directory: private by default, rewritten only when they change."""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """A directory only its owner can enter (its missing parents too)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for created in missing:
        os.chmod(created, 0o700)
    return path


def make_dirs_writable(path: Path) -> None:
    """Give the owner write permission on every directory of a tree made read-only:
    deleting its entries needs it."""
    if path.is_symlink() or not path.is_dir():
        return
    path.chmod(path.stat().st_mode | 0o700)
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            child = Path(root, name)
            if not child.is_symlink():
                child.chmod(child.stat().st_mode | 0o700)


def write_private(path: Path, content: str) -> None:
    """Write a file only its owner can read, without a moment of wider permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(path, 0o600)


def write_private_if_changed(path: Path, content: str) -> bool:
    """Leave an identical file alone (setup run again must change nothing); True if written."""
    if path.is_file() and path.read_text() == content:
        return False
    write_private(path, content)
    return True


def replace_private(path: Path, content: str, durable: bool = False) -> None:
    """Replace ``path`` whole with a private file: a reader sees the old content or the new,
    never half of either. ``durable``: fsynced, file and directory, before returning (what a
    power cut must keep). Each writer has its own scratch file, so writers never share one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    write_private(partial, content)
    try:
        if durable:
            fsync_path(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    if durable:
        fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to the disk: what a power cut keeps."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
