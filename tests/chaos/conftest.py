"""One whole blue-green system for the chaos scenarios (both colours running, blue live),
and the table of their outcomes at the end of the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bluegreen_support import BlueGreenSystem

from .chaos_support import GATEWAY_WORKERS, OUTCOMES, Chaos, render_table


@pytest.fixture(scope="package")
def chaos() -> Iterator[Chaos]:
    bg = BlueGreenSystem.create(services={"ECHOBASE_WORKERS": str(GATEWAY_WORKERS)})
    harness: Chaos | None = None
    try:
        for release in (bg.release_a, bg.release_b):  # green, then blue: both run
            bg.system.ok("deploy", "--release", release.id)
        harness = Chaos(bg)
        yield harness
    finally:
        if harness is not None:
            harness.close()
        bg.destroy()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not OUTCOMES:
        return
    table = render_table(OUTCOMES)
    terminalreporter.write_sep("=", "chaos")
    terminalreporter.write_line(table)
    report = os.environ.get("ECHOBASE_CHAOS_REPORT")
    if report:
        Path(report).write_text(table + "\n")
