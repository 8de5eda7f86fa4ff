from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from echobase.app.core.security import TokenUser, hash_password, verify_password
from echobase.app.db.models import User
from echobase.app.gateway.api.deps import Context, set_auth_cookie
from echobase.app.gateway.errors import ApiError
from echobase.app.gateway.schemas import LoginRequest, RegisterRequest

router = APIRouter(prefix="/auth", tags=["auth"])

_DUPLICATE_KEY = 1062


@cache
def _decoy_hash(rounds: int) -> str:
    # Checked against when the user does not exist, so both failures cost one bcrypt.
    return hash_password("decoy-password-for-timing", rounds)


def _user_json(user_id: int, username: str, email: str, full_name: str) -> dict[str, Any]:
    return {"id": user_id, "username": username, "email": email, "fullName": full_name}


@router.post("/register", status_code=201)
async def register(body: RegisterRequest, response: Response, ctx: Context) -> dict[str, Any]:
    password_hash = await run_in_threadpool(
        hash_password, body.password, ctx.settings.bcrypt_rounds
    )
    try:
        async with ctx.engine.begin() as conn:
            result = await conn.execute(
                insert(User).values(
                    username=body.username,
                    email=body.email,
                    full_name=body.fullName,
                    password_hash=password_hash,
                )
            )
            user_id = int(result.inserted_primary_key[0])
    except IntegrityError as exc:
        if getattr(exc.orig, "args", [None])[0] == _DUPLICATE_KEY:
            raise ApiError(
                409, "User already exists", "Username or email is already registered"
            ) from None
        raise
    set_auth_cookie(response, ctx, TokenUser(user_id, body.username, body.fullName))
    return {
        "success": True,
        "message": "User registered successfully",
        "user": _user_json(user_id, body.username, body.email, body.fullName),
        "recommendedProducts": await ctx.recommendations.for_user(user_id),
    }


@router.post("/login")
async def login(body: LoginRequest, response: Response, ctx: Context) -> dict[str, Any]:
    locked_for = await ctx.lockout.locked_for(body.username)
    if locked_for > 0:
        raise ApiError(
            429,
            "Account locked",
            "Too many failed login attempts; try again later",
            {"Retry-After": str(locked_for)},
        )
    async with ctx.engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    User.id, User.username, User.email, User.full_name, User.password_hash
                ).where(User.username == body.username)
            )
        ).first()
    stored_hash = row.password_hash if row else _decoy_hash(ctx.settings.bcrypt_rounds)
    valid = await run_in_threadpool(verify_password, body.password, stored_hash)
    if row is None or not valid:
        await ctx.lockout.record_failure(body.username)
        raise ApiError(401, "Authentication failed", "Invalid username or password")
    await ctx.lockout.clear(body.username)
    set_auth_cookie(response, ctx, TokenUser(row.id, row.username, row.full_name))
    return {
        "success": True,
        "message": "Login successful",
        "user": _user_json(row.id, row.username, row.email, row.full_name),
        "recommendedProducts": await ctx.recommendations.for_user(row.id),
    }


@router.post("/logout")
async def logout(response: Response, ctx: Context) -> dict[str, Any]:
    response.delete_cookie(
        ctx.settings.cookie_name, path="/", secure=True, httponly=True, samesite="strict"
    )
    return {"success": True, "message": "Logged out"}
