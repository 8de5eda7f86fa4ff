"""``python -m echobase.app.gateway``: serve the gateway with uvicorn."""

from __future__ import annotations

import uvicorn

from echobase.app.core.config import gateway_settings


def main() -> None:
    settings = gateway_settings()
    uvicorn.run(
        "echobase.app.gateway.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        server_header=False,
        proxy_headers=False,  # the edge middleware decides whom to believe
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
