"""A service process imports neither rich nor pygments, and still logs JSON with tracebacks.

In a fresh interpreter, as ``python -m echobase.app.<service>`` starts: its ``__main__`` runs
(without serving), then everything the service builds its app from.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, logging, runpy, sys
runpy.run_module("echobase.app.{service}", run_name="probe")  # __main__ without serving
import echobase.app.gateway.main, echobase.app.processor.main, echobase.app.mcp.server
from mcp.server.mcpserver.utilities.logging import configure_logging as mcp_logging
mcp_logging()  # what MCPServer() runs
from echobase.app.core.logging import configure_logging
configure_logging("{service}", "blue")
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("probe").exception("failed")
loaded = sorted(name for name, module in sys.modules.items() if module is not None)
print(json.dumps([n for n in loaded if n.split(".")[0] in ("rich", "pygments")]), file=sys.stderr)
"""


def probe(service: str) -> tuple[list[str], dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(service=service)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stderr.strip().splitlines()[-1]), json.loads(done.stdout)


def test_services_leave_out_the_console_libraries() -> None:
    for service in ("gateway", "processor", "mcp"):
        console, line = probe(service)
        assert console == [], f"{service} imported {console}"
        assert line["event"] == "failed" and line["service"] == service
        assert "ValueError: boom" in str(line["exception"])


def test_the_cli_keeps_them() -> None:
    """The library is left out by the services' entry points only, never by importing
    echobase: the CLI's tables and progress need rich."""
    done = subprocess.run(
        [sys.executable, "-c", "import echobase.app.core.imports, echobase.cli.main, rich.table"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("module", "left_out"),
    [
        # Its two endpoints are plain Starlette; FastAPI would add 5 MiB to each processor.
        ("echobase.app.processor.main", "fastapi"),
        # It speaks MCP itself: the SDK would add 16.7 MiB to each gateway.
        ("echobase.app.gateway.main", "mcp"),
    ],
)
def test_a_service_leaves_out_what_it_does_not_need(module: str, left_out: str) -> None:
    probe = f"import sys, {module}; print({left_out!r} in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
