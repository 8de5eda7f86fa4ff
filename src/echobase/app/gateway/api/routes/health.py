from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from echobase import __version__
from echobase.app.core.names import HEALTH_PATH
from echobase.app.gateway.api.deps import Context
from echobase.app.messages import utc_now_iso

router = APIRouter(tags=["health"])
PATH = HEALTH_PATH


@router.get(PATH)
async def health(ctx: Context) -> JSONResponse:
    checks = await ctx.health.checks()
    healthy = all(c["status"] == "healthy" for c in checks.values())
    body: dict[str, Any] = {
        "status": "healthy" if healthy else "degraded",
        "timestamp": utc_now_iso(),
        "version": ctx.settings.release or __version__,
        "colour": ctx.settings.colour,
        "checks": checks,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/api/v1/meta")
async def meta(ctx: Context) -> dict[str, str]:
    """Which colour and release answered; the frontend's footer shows it."""
    return {"colour": ctx.settings.colour, "release": ctx.settings.release, "version": __version__}
