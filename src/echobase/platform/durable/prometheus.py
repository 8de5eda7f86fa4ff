"""Prometheus's scrape targets written where it watches for them, and Debian's console
library found; the rest is ``render/prometheus.py``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from echobase.platform.render.prometheus import (
    CONSOLE_LIBRARY_SOURCES,
    PrometheusSpec,
    ScrapeTarget,
    render_targets,
)
from echobase.platform.runtime.files import replace_private


def debian_console_library(sources: Sequence[Path] = CONSOLE_LIBRARY_SOURCES) -> Path | None:
    """Debian's prom.lib, where the installed package keeps it; None when it is missing (a
    minimal image that drops /usr/share/doc, say)."""
    for directory in sources:
        if (directory / "prom.lib").is_file():
            return directory / "prom.lib"
    return None


def write_targets(spec: PrometheusSpec, owner: str, targets: Sequence[ScrapeTarget]) -> None:
    """Atomic: Prometheus watches the directory and must never read half a file."""
    spec.targets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = spec.targets_dir / f"{owner}.json"
    text = render_targets(targets)
    if path.is_file() and path.read_text() == text:
        return
    replace_private(path, text)


def remove_targets(spec: PrometheusSpec, owner: str) -> None:
    (spec.targets_dir / f"{owner}.json").unlink(missing_ok=True)
