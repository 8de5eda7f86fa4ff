"""Durable layer figures: how long `echobase durable setup` takes and what the layer costs in
memory, on a private system (temporary state directory, free ports) beside anything running.

    .venv/bin/python bench/durable_setup.py [--runs 3]

Each run, from an empty state directory:
  1. cold setup (secrets generated, MariaDB initialised, everything started);
  2. setup again with everything running (the idempotent no-op);
  3. teardown keeping data, then setup again (the "after a reboot" path: data exists);
  4. RSS of each durable service (process and children) once running.
Prints per-run figures and medians; the warm/cold ratios are within the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from echobase.platform.runtime.processes import free_ports
from echobase.platform.stack import free_port_overrides, render_ports_toml

ECHOBASE = str(Path(sys.executable).parent / "echobase")


def run(home: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOBASE_")}
    env["ECHOBASE_HOME"] = str(home)
    started = time.perf_counter()
    result = subprocess.run(
        [ECHOBASE, *args], env=env, cwd=home, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{args} failed:\n{result.stderr[-3000:]}")
    return seconds


def status(home: Path) -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOBASE_")}
    env["ECHOBASE_HOME"] = str(home)
    out = subprocess.run(
        [ECHOBASE, "durable", "status", "devlocal", "--json"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return list(json.loads(out)["services"])


def one_run() -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="eb-bench-", dir="/tmp"))
    (home / "echobase.toml").write_text(render_ports_toml(free_port_overrides(free_ports)))
    try:
        figures = {"cold": run(home, "durable", "setup", "devlocal")}
        figures["again"] = run(home, "durable", "setup", "devlocal")
        time.sleep(3)  # let the servers settle before reading memory
        for service in status(home):
            figures[f"rss_{service['role']}_mib"] = int(service["rss_bytes"] or 0) / 2**20
        figures["rss_total_mib"] = sum(v for k, v in figures.items() if k.startswith("rss_"))
        figures["teardown"] = run(home, "durable", "teardown", "devlocal")
        figures["restart"] = run(home, "durable", "setup", "devlocal")
        return figures
    finally:
        run(home, "durable", "teardown", "devlocal", "--volumes", "--yes")
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for index in range(args.runs):
        figures = one_run()
        runs.append(figures)
        shown = "  ".join(f"{k}={v:.2f}" for k, v in figures.items())
        print(f"run {index + 1}: {shown}", flush=True)
    print("\nmedians over", len(runs), "runs:")
    for key in runs[0]:
        value = statistics.median(r[key] for r in runs)
        unit = "MiB" if key.endswith("_mib") else "s"
        print(f"  {key:>22}: {value:8.2f} {unit}")
    cold = statistics.median(r["cold"] for r in runs)
    again = statistics.median(r["again"] for r in runs)
    restart = statistics.median(r["restart"] for r in runs)
    print(f"  setup again / cold: {again / cold:.2f}   restart / cold: {restart / cold:.2f}")


if __name__ == "__main__":
    main()
