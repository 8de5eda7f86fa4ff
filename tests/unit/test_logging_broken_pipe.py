"""A service whose stdout reader died (its supervisord was SIGKILLed) keeps working: the
broken pipe is not raised into the code that logged (it was, as HTTP 500s and a processor
that stopped consuming)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SERVICE = """
import logging, sys, time
import structlog
from echobase.app.core.logging import configure_logging
configure_logging("test", "blue")
time.sleep(0.3)  # the reader has gone by now
for i in range(3):
    structlog.get_logger().info("order stored", i=i)
    logging.getLogger("uvicorn.error").warning("still here %d", i)
    print("a stray print", i)
open(sys.argv[1], "w").write("survived")
"""


def test_logging_survives_a_dead_stdout_reader(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE, str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert service.stdout is not None
    service.stdout.close()  # what a SIGKILLed supervisord does to the pipe
    assert service.wait(30) == 0
    assert marker.read_text() == "survived"
