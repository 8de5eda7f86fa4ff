"""A deadline for each request's head, which uvicorn does not have.

uvicorn times out only the idle gap after a response (keep-alive): a client that connects and
sends nothing, or sends its headers a byte at a time (slowloris), keeps its connection and
file descriptor for as long as it likes, and enough of them exhaust the worker's descriptors.
Found by tests/security. The body has its own deadline in the gateway's edge middleware.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Read from the environment, not passed in: uvicorn builds the protocol in each worker
# process, which gets only the environment from the process that started it. serve() puts
# the validated setting there (ServiceSettings.header_timeout_seconds), so a bad value has
# already stopped the service at start-up.
HEADER_TIMEOUT = "ECHOBASE_HEADER_TIMEOUT_SECONDS"


def header_timeout() -> float:
    return float(os.environ[HEADER_TIMEOUT])


class HeadDeadlineProtocol(HttpToolsProtocol):
    """httptools' HTTP/1.1 protocol that closes a connection whose request head is not
    complete within ``header_timeout()`` of the connection opening or the request starting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = header_timeout()
        self._head_deadline: asyncio.TimerHandle | None = None

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self._head_timeout, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)
