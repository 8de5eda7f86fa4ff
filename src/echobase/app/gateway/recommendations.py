"""Recommendations for a login, from the durable MCP service, never at the cost of the login.

Each gateway worker keeps one MCP client session open (a call on it is one round trip;
opening one costs several). A background task opens it, reading the API key from the
secrets store each time so a new key is picked up, and opens it again whenever a call
failed; while it is not open, callers get ``[]`` at once instead of waiting. A call that
takes longer than the timeout also answers ``[]``. An outage is logged once when it begins
and once when it ends."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import anyio
import httpx2
import structlog
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.concurrency import run_in_threadpool

from echobase.app.core.config import GatewaySettings
from echobase.app.core.secrets import fetch_secret, secrets_client
from echobase.app.mcp.contract import RECOMMENDED_PRODUCTS_TOOL, recommended_from_result

log = structlog.get_logger()

RECOMMENDATIONS_LIMIT = 5
_RETRY_FIRST, _RETRY_MAX = 0.5, 5.0


def describe(exc: BaseException) -> str:
    """One short line for the log: the innermost cause of an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RecommendationsClient:
    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        self._url = settings.mcp_url
        self._timeout = settings.mcp_timeout_seconds
        self._client: Client | None = None
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
            with anyio.fail_after(self._timeout):
                result = await client.call_tool(RECOMMENDED_PRODUCTS_TOOL, {"userId": user_id})
            if result.is_error:
                raise RuntimeError(f"the tool failed: {result.content!r:.120}")
            return recommended_from_result(result.structured_content, RECOMMENDATIONS_LIMIT)
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
                async with contextlib.AsyncExitStack() as stack:
                    http = await stack.enter_async_context(
                        httpx2.AsyncClient(
                            headers={"X-API-Key": key}, timeout=httpx2.Timeout(self._timeout)
                        )
                    )
                    # No cancel scope around this: the client's task group opens inside it
                    # and must close in the same scope. The HTTP timeouts bound a hung server.
                    client = await stack.enter_async_context(
                        Client(
                            streamable_http_client(url, http_client=http),
                            read_timeout_seconds=self._timeout,
                            cache=None,
                        )
                    )
                    self._broken.clear()
                    self._client = client
                    self._came_back()
                    delay = _RETRY_FIRST
                    await self._broken.wait()
                    self._client = None
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # an exception group from the SDK's task group
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                self._went_down(describe(exc))
            finally:
                self._client = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)
