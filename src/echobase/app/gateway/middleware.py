"""The gateway's edge, as plain ASGI: correlation ids, security headers, body limit, CSRF,
rate limiting, and a last-resort 500 that still carries those headers."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import structlog
from opentelemetry import trace

from echobase.app.core.telemetry import span_ids
from echobase.app.gateway.errors import error_body
from echobase.app.gateway.ratelimit import RateLimiter

log = structlog.get_logger()

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str) -> str | None:
    """scheme://host[:port] in lower case without default port; None when not an origin."""
    value = value.strip()
    if not value or value == "null" or "," in value or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def client_ip(peer: str | None, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The peer, unless it is a trusted proxy: then the nearest untrusted X-Forwarded-For hop.
    Anything a client writes into the header before our proxy's entry is ignored."""
    ip = peer or "unknown"
    if ip in trusted and forwarded_for:
        for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
            if not hop:
                break
            ip = hop
            if hop not in trusted:
                break
    return ip


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _correlation_id(inbound: str | None) -> str:
    """The caller's own well-formed id is kept (the reference contract) and recorded on the
    request's span, so `echobase trace` finds the trace by it; otherwise the answer carries
    the trace id itself, which a user copies from the browser."""
    span = trace.get_current_span()
    if inbound and _CORRELATION_ID.fullmatch(inbound):
        span.set_attribute("echobase.correlation_id", inbound)
        return inbound
    return span_ids(span).get("trace_id") or str(uuid.uuid4())


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        allowed_origins: Iterable[str],
        trusted_proxies: Iterable[str],
        max_body_bytes: int,
        body_timeout: float = 15.0,
    ) -> None:
        self.app = app
        self.allowed_origins = frozenset(
            o for o in (normalise_origin(x) for x in allowed_origins) if o
        )
        self.trusted_proxies = frozenset(trusted_proxies)
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = _correlation_id(_header(scope, b"x-correlation-id"))
        peer = scope.get("client")[0] if scope.get("client") else None
        ip = client_ip(peer, _header(scope, b"x-forwarded-for"), self.trusted_proxies)
        scope.setdefault("state", {}).update(correlation_id=correlation_id, client_ip=ip)
        extra = [*SECURITY_HEADERS, (b"x-correlation-id", correlation_id.encode())]
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"server"]
                message = {**message, "headers": headers + extra}
            await send(message)

        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        try:
            rejection = self._reject_origin(scope, ip)
            if rejection is None:
                receive, rejection = await self._limit_body(scope, receive)
            if rejection is not None:
                status, body = rejection
                # A body refused unread would keep the connection busy for as long as the
                # client goes on sending it: close it once the answer is out.
                close = [(b"connection", b"close")] if status in (408, 413) else []
                await _send_json(send_with_headers, status, body, close)
                return
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unhandled error", path=scope.get("path"))
            if not started:
                await _send_json(
                    send_with_headers,
                    500,
                    error_body("Internal Server Error", "An unexpected error occurred"),
                )
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")

    def _reject_origin(self, scope: Scope, ip: str) -> tuple[int, dict[str, Any]] | None:
        if scope["method"] not in _UNSAFE_METHODS:
            return None
        origin = _header(scope, b"origin")
        referer = _header(scope, b"referer")
        if origin is None and referer is None:
            # Tools on the machine itself (curl, health probes) send neither header.
            if is_loopback(ip):
                return None
        else:
            claimed = normalise_origin(origin) if origin is not None else None
            if origin is None and referer is not None:
                try:  # a malformed Referer (e.g. "https://[") is no origin: refuse, never 500
                    parts = urlsplit(referer) if "," not in referer else None
                except ValueError:
                    parts = None
                claimed = normalise_origin(f"{parts.scheme}://{parts.netloc}") if parts else None
            if claimed in self.allowed_origins:
                return None
        return 403, error_body("Forbidden", "Origin validation failed")

    async def _limit_body(
        self, scope: Scope, receive: Receive
    ) -> tuple[Receive, tuple[int, dict[str, Any]] | None]:
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                return receive, (400, error_body("Bad Request", "Invalid Content-Length"))
            if int(length) > self.max_body_bytes:
                return receive, self._too_large()
        if scope["method"] not in _UNSAFE_METHODS:
            return receive, None
        # Read the (bounded) body now, so an oversized chunked upload is refused up front, and
        # within a deadline: a body trickled in a byte at a time would otherwise hold the
        # request open for ever (found by tests/security).
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(self.body_timeout):
                refused = await self._read_body(receive, chunks)
        except TimeoutError:
            refused = 408, error_body("Request Timeout", "The request body arrived too slowly")
        if refused is not None:
            return receive, refused
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, None

    def _too_large(self) -> tuple[int, dict[str, Any]]:
        limit = self.max_body_bytes
        return 413, error_body("Payload Too Large", f"Request body exceeds {limit} bytes")

    async def _read_body(
        self, receive: Receive, chunks: list[bytes]
    ) -> tuple[int, dict[str, Any]] | None:
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 400, error_body("Bad Request", "Client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return None


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, limiter: Callable[[], RateLimiter | None], prefix: str
    ) -> None:
        self.app, self.limiter, self.prefix = app, limiter, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.limiter()
        if scope["type"] != "http" or limiter is None or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        decision = await limiter.hit("ip:" + scope["state"]["client_ip"])
        headers = [(k.lower().encode(), v.encode()) for k, v in decision.headers().items()]
        if not decision.allowed:
            body = error_body("Too many requests", "Too many requests, please try again later")
            await _send_json(send, 429, body, headers)
            return

        async def send_with_limit(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_limit)
