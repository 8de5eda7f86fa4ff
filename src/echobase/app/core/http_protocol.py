"""uvicorn's httptools protocol with two things it lacks: a deadline for each request's head,
and a response head that leaves with its body.

The deadline: uvicorn times out only the idle gap after a response (keep-alive): a client
that connects and sends nothing, or sends its headers a byte at a time (slowloris), keeps its
connection and file descriptor for as long as it likes, and enough of them exhaust the
worker's descriptors.
Found by tests/security. The body has its own deadline in the gateway's edge middleware.

The head with its body: uvicorn writes a response's status line and headers as soon as the
app starts the response, and the body in a second write. Between the two the interpreter may
run another thread for up to its switch interval (the trace exporter's, say), and a worker
killed there leaves nginx holding headers with no body. nginx has sent them on by then, so all
it can do is cut the client's connection ("peer closed connection without sending complete
message body", found by the chaos suite: 1 in 12 SIGKILLed workers). Written together, a
response reaches the kernel whole or not at all, and nginx answers a response that never
came with its 503.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

# Read from the environment, not passed in: uvicorn builds the protocol in each worker
# process, which gets only the environment from the process that started it. serve() puts
# the validated setting there (ServiceSettings.header_timeout_seconds), so a bad value has
# already stopped the service at start-up.
HEADER_TIMEOUT = "ECHOBASE_HEADER_TIMEOUT_SECONDS"


def header_timeout() -> float:
    return float(os.environ[HEADER_TIMEOUT])


class HeadWithBody:
    """Stands in for a request cycle's transport: the write made while the response starts
    (its head) is held and joined to the next write (the body's first part)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._holding = False
        self._head: bytes | None = None

    def hold_next_write(self) -> None:
        self._holding = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._holding:
            self._holding = False
            self._head = bytes(data)
            return
        if self._head is not None:
            data, self._head = self._head + bytes(data), None
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def write_head_with_body(cycle: RequestResponseCycle) -> None:
    transport = HeadWithBody(cycle.transport)
    send = cycle.send

    async def send_head_with_body(message: Any) -> None:
        if message["type"] == "http.response.start":
            transport.hold_next_write()
        await send(message)

    cycle.transport = transport  # type: ignore[assignment]
    # The cycle's task looks its send up when it starts, after this.
    cycle.send = send_head_with_body  # type: ignore[method-assign]


class HttpProtocol(HttpToolsProtocol):
    """httptools' HTTP/1.1 protocol that closes a connection whose request head is not
    complete within ``header_timeout()`` of the connection opening or the request starting,
    and writes each response's head together with its body."""

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
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:  # not an upgrade
            write_head_with_body(self.cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)
