"""Recommendations for a login, from the durable MCP service, never at the cost of the login.

Each gateway worker keeps one MCP session open (a call on it is one round trip; opening
one costs several). A background task opens it, reading the API key from the secrets store
each time so a new key is picked up, and opens it again whenever a call failed; while it is
not open, callers get ``[]`` at once instead of waiting. A call that takes longer than the
timeout also answers ``[]``. An outage is logged once when it begins and once when it ends.

The session speaks MCP's Streamable HTTP itself (``McpSession``) instead of through the
SDK's client: a gateway calls one tool, and the SDK's package imports its server side and
every protocol type with it, 16.7 MiB in each gateway process (of a 1 GiB budget for the
whole system); aiohttp, which the SQS client loads anyway, carries the requests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterable
from typing import Any

import aiohttp
import structlog
from opentelemetry import propagate
from opentelemetry.trace import SpanKind
from starlette.concurrency import run_in_threadpool

from echobase.app.core.config import GatewaySettings
from echobase.app.core.secrets import fetch_secret, secrets_client
from echobase.app.core.telemetry import tracer
from echobase.app.mcp.contract import (
    MCP_PROTOCOL_VERSION,
    RECOMMENDED_PRODUCTS_TOOL,
    recommended_from_result,
)

log = structlog.get_logger()

RECOMMENDATIONS_LIMIT = 5
_RETRY_FIRST, _RETRY_MAX = 0.5, 5.0


def describe(exc: BaseException) -> str:
    """One short line for the log: the innermost cause of an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class McpError(RuntimeError):
    """The service answered, but not with a usable result."""


class McpSession:
    """One MCP session over Streamable HTTP: ``initialize`` once, then one POST per call.

    The service is stateless and answers plain JSON; an event-stream answer (what a
    stateful server may send) is read too, up to the message that answers the call."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self._http = http
        self._url = url
        self._ids = itertools.count(1)
        self._headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }

    async def initialize(self) -> None:
        result, headers = await self._request(
            "initialize",
            {
                "protocolVersion": MCP_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "echobase-gateway", "version": "1"},
            },
        )
        version = result.get("protocolVersion")
        if version != MCP_PROTOCOL_VERSION:
            raise McpError(f"the service speaks protocol {str(version)[:40]!r}")
        if session_id := headers.get("mcp-session-id"):
            self._headers["Mcp-Session-Id"] = session_id
        self._headers["Mcp-Protocol-Version"] = version
        await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        """The tool's structured content; McpError when the tool reports an error."""
        result, _ = await self._request("tools/call", {"name": name, "arguments": arguments})
        if result.get("isError"):
            raise McpError(f"the tool failed: {result.get('content')!r:.120}")
        return result.get("structuredContent")

    async def _request(
        self, method: str, params: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        request_id = next(self._ids)
        target = params.get("name")
        # The span and the context in ``_meta`` are what the SDK's client sends (SEP-414):
        # the service's SDK continues the caller's trace from ``_meta``.
        with tracer().start_as_current_span(
            f"MCP send {method}{f' {target}' if isinstance(target, str) else ''}",
            kind=SpanKind.CLIENT,
            attributes={"mcp.method.name": method, "jsonrpc.request.id": str(request_id)},
        ):
            meta: dict[str, str] = {}
            propagate.inject(meta)
            message = {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": method,
                "params": {**params, "_meta": meta} if meta else params,
            }
            answer, headers = await self._post(message, request_id)
        if not isinstance(answer, dict):
            raise McpError(f"no answer to {method}")
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise McpError(f"{method}: {str(error.get('message'))[:120]}")
        result = answer.get("result")
        if not isinstance(result, dict):
            raise McpError(f"{method} answered no result")
        return result, headers

    async def _post(
        self, message: dict[str, Any], request_id: int | None = None
    ) -> tuple[Any, dict[str, str]]:
        async with self._http.post(self._url, json=message, headers=self._headers) as response:
            if response.status >= 400:
                raise McpError(f"HTTP {response.status} from the service")
            if request_id is None:
                return None, {}
            kind = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
            if kind == "text/event-stream":
                answer = await answer_in_stream(response.content, request_id)
            else:
                answer = await response.json(content_type=None)
            return answer, {k.lower(): v for k, v in response.headers.items()}


async def answer_in_stream(stream: AsyncIterable[bytes], request_id: int) -> Any:
    """The message answering ``request_id`` among an event stream's ``data:`` events."""
    data: list[str] = []
    async for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            message = json.loads("\n".join(data))
            data = []
            if isinstance(message, dict) and message.get("id") == request_id:
                return message
    return None


class RecommendationsClient:
    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        self._url = settings.mcp_url
        self._timeout = settings.mcp_timeout_seconds
        self._client: McpSession | None = None
        self._broken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._problem: str | None = None  # set while unavailable

    @property
    def problem(self) -> str | None:
        """Why recommendations are unavailable now; None when they are (or are off)."""
        if self._url is None:
            return None
        return self._problem if self._client is None else None

    def start(self) -> None:
        if self._url is not None:
            self._problem = "connecting"
            self._task = asyncio.create_task(self._keep_connected(self._url))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def for_user(self, user_id: int) -> list[dict[str, Any]]:
        client = self._client
        if client is None:
            return []
        try:
            async with asyncio.timeout(self._timeout):
                structured = await client.call_tool(RECOMMENDED_PRODUCTS_TOOL, {"userId": user_id})
            return recommended_from_result(structured, RECOMMENDATIONS_LIMIT)
        except Exception as exc:
            # The session may be unusable now (a closed connection ends it for good):
            # the background task opens a new one.
            self._went_down(describe(exc))
            self._broken.set()
            return []

    def _went_down(self, reason: str) -> None:
        if self._problem is None:
            log.warning("recommendations unavailable: logins answer none", reason=reason)
        self._problem = reason

    def _came_back(self) -> None:
        if self._problem is not None and self._problem != "connecting":
            log.info("recommendations available again")
        self._problem = None

    def _api_key(self) -> str:
        # No waiting: a missing key is retried by the loop, logins meanwhile go on.
        return fetch_secret(secrets_client(self._settings), self._settings.mcp_key_secret_name, 0)

    async def _keep_connected(self, url: str) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                key = await run_in_threadpool(self._api_key)
                timeout = aiohttp.ClientTimeout(total=self._timeout)
                async with aiohttp.ClientSession(
                    headers={"X-API-Key": key}, timeout=timeout
                ) as http:
                    client = McpSession(http, url)
                    await client.initialize()
                    self._broken.clear()
                    self._client = client
                    self._came_back()
                    delay = _RETRY_FIRST
                    await self._broken.wait()
                    self._client = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._went_down(describe(exc))
            finally:
                self._client = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)
