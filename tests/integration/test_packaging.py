"""`pip install .` must give a working `echobase` with its migrations inside the package, and
the runtime lock alone (no extras) everything that package imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_migrations_dashboards_and_the_console_script(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("echobase-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "echobase/app/db/migrations/env.py" in names
    assert "echobase/app/db/migrations/versions/0001_initial_schema.py" in names
    # For teams with their own Grafana and Prometheus (echobase dashboards export).
    assert "echobase/platform/monitoring/shipped/echobase.json" in names
    assert "echobase/platform/monitoring/shipped/echobase-rules.yml" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "echobase = echobase.cli.main:app" in text


# Run inside the fresh venv: every module of the installed package, by name, with its error.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import echobase

failed = {}
names = []
def record(name):
    failed[name] = repr(sys.exc_info()[1])
for info in pkgutil.walk_packages(echobase.__path__, "echobase.", onerror=record):
    if info.name.endswith(".__main__"):
        continue  # importing one runs a service
    names.append(info.name)
    try:
        importlib.import_module(info.name)
    except BaseException as exc:
        failed[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"imported": names, "failed": failed}))
"""


def _run(cmd: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"{cmd} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return done


def test_runtime_only_install_imports_every_module_and_runs_the_cli(tmp_path: Path) -> None:
    """What `bash scripts/run` gets: the runtime lock, then the project without extras. A
    module importing a package only the test extra brings fails here, naming it."""
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["ECHOBASE_HOME"] = str(tmp_path / "home")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env)
    python, echobase = str(venv / "bin" / "python"), str(venv / "bin" / "echobase")
    # As scripts/install does (pip's cache, kept on purpose, serves the wheels): the locked
    # pip and build backend, the runtime lock, then the project built by that backend.
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for lock in ("tools.lock", "runtime.lock"):
        _run([*pip, "--require-hashes", "-r", str(ROOT / "requirements" / lock)], env)
    _run([*pip, "--no-deps", "--no-build-isolation", "-e", str(ROOT)], env)
    installed = time.monotonic()

    report = json.loads(_run([python, "-I", "-c", IMPORT_ALL], env).stdout)
    assert report["failed"] == {}, report["failed"]
    assert {"echobase.platform.bluegreen.smoke", "echobase.cli.main"} <= set(report["imported"])

    assert "Usage" in _run([echobase, "--help"], env).stdout
    # Ports or servers may be missing here, so any exit code; but an answer, not a crash.
    doctor = _run([echobase, "doctor", "--json"], env, check=False)
    for text in (doctor.stdout, doctor.stderr):
        assert "Traceback" not in text and "ModuleNotFoundError" not in text, text
    assert isinstance(json.loads(doctor.stdout)["checks"], list), doctor.stdout
    print(
        f"\nruntime-only install: {installed - started:.1f}s install, "
        f"{time.monotonic() - installed:.1f}s checks, {len(report['imported'])} modules"
    )
