"""Serving a service's ASGI app with uvicorn, the same way for both services."""

from __future__ import annotations

import uvicorn

from echobase.app.core.config import ServiceSettings


def serve(factory: str, settings: ServiceSettings, workers: int = 1, grace: float = 10) -> None:
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        server_header=False,
        proxy_headers=False,  # the gateway's edge middleware decides whom to believe
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(grace),
    )
