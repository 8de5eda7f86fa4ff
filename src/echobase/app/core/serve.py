"""Serving a service's ASGI app with uvicorn, the same way for both services."""

from __future__ import annotations

import ctypes
import os
import signal

import uvicorn

from echobase.app.core.config import ServiceSettings
from echobase.app.core.http_protocol import HEADER_TIMEOUT

# The pid of the process that runs uvicorn's worker supervisor, for its workers to check.
SERVER_PID = "ECHOBASE_SERVER_PID"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def serve(factory: str, settings: ServiceSettings, workers: int = 1, grace: float = 10) -> None:
    # Spawned workers inherit the environment as it is when they start.
    os.environ[SERVER_PID] = str(os.getpid())
    os.environ[HEADER_TIMEOUT] = repr(settings.header_timeout_seconds)
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        server_header=False,
        http="echobase.app.core.http_protocol:HttpProtocol",
        proxy_headers=False,  # the gateway's edge middleware decides whom to believe
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(grace),
    )


def follow_server_process() -> None:
    """In a uvicorn worker: shut down gracefully when the process that started it dies.

    A SIGKILLed uvicorn master does not take its workers along: they are reparented, keep
    the listening socket and serve on unsupervised, while every restart the process manager
    tries fails with "address already in use". Found by the chaos suite. SIGTERM makes an
    orphan finish its in-flight requests and release the port within a moment."""
    server = os.environ.get(SERVER_PID)
    if server is None or int(server) == os.getpid():
        return  # not started by serve(), or a single process serving in place
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(server):  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)
