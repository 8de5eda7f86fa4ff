"""Writing a rendering (``{relative path: manifest or list of manifests}``) as YAML files:
the one place the CLI turns renderers' data into files, so renderers stay pure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def manifest_yaml(manifest: Any) -> str:
    """One document, or several (a list) in one file; keys in the renderer's order."""
    if isinstance(manifest, list):
        return yaml.safe_dump_all(manifest, sort_keys=False, default_flow_style=False)
    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)


def write_manifests(root: Path, files: Mapping[str, Any]) -> list[Path]:
    """Every file under ``root`` (mode 0644: names and references only, nothing secret),
    in the rendering's order; returns the paths written."""
    written = []
    for relative, manifest in files.items():
        path = root / relative
        if not path.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"{relative!r} is outside {root}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(manifest_yaml(manifest))
        path.chmod(0o644)
        written.append(path)
    return written
