"""``python -m echobase.app.gateway``: serve the gateway with uvicorn."""

from echobase.app.core.imports import leave_out_console_libraries

leave_out_console_libraries()
from echobase.app.core.config import gateway_settings  # noqa: E402 (after the line above)
from echobase.app.core.serve import serve  # noqa: E402 (after the line above)

if __name__ == "__main__":
    settings = gateway_settings()
    serve("echobase.app.gateway.main:create_app", settings, workers=settings.workers)
