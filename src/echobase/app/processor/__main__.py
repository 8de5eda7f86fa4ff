"""``python -m echobase.app.processor``: run the consumer with its health endpoint."""

from __future__ import annotations

import uvicorn

from echobase.app.core.config import processor_settings


def main() -> None:
    settings = processor_settings()
    uvicorn.run(
        "echobase.app.processor.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        server_header=False,
        access_log=False,
        log_level=settings.log_level,
        # SIGTERM: stop polling, finish the batch in hand (bounded by the visibility timeout).
        timeout_graceful_shutdown=settings.visibility_timeout_seconds,
    )


if __name__ == "__main__":
    main()
