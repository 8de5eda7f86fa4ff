"""Injected per-request pieces: the process context, the signed-in user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from echobase.app.core.security import (
    TokenExpiredError,
    TokenInvalidError,
    TokenUser,
    decode_token,
    issue_token,
)
from echobase.app.gateway.context import GatewayContext
from echobase.app.gateway.errors import ApiError


async def get_context(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.ctx
    return ctx


Context = Annotated[GatewayContext, Depends(get_context)]


def set_auth_cookie(response: Response, ctx: GatewayContext, user: TokenUser) -> None:
    settings = ctx.settings
    response.set_cookie(
        settings.cookie_name,
        issue_token(user, ctx.jwt_key, settings.jwt_lifetime_seconds),
        max_age=settings.jwt_lifetime_seconds,
        httponly=True,
        secure=True,
        samesite="strict",
        path="/",
    )


def _presented_token(request: Request, cookie_name: str) -> str | None:
    cookie = request.cookies.get(cookie_name)
    if cookie:
        return cookie
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def current_user(request: Request, response: Response, ctx: Context) -> TokenUser:
    token = _presented_token(request, ctx.settings.cookie_name)
    if token is None:
        raise ApiError(401, "Authentication required", "Missing or invalid authentication")
    try:
        user = decode_token(token, ctx.jwt_key)
    except TokenExpiredError:
        raise ApiError(401, "Authentication failed", "Token expired") from None
    except TokenInvalidError:
        raise ApiError(401, "Authentication failed", "Invalid token") from None
    # Sliding session: every authenticated request gets a fresh 15-minute token.
    set_auth_cookie(response, ctx, user)
    return user


CurrentUser = Annotated[TokenUser, Depends(current_user)]
