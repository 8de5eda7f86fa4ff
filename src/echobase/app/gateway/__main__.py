"""``python -m echobase.app.gateway``: serve the gateway with uvicorn."""

from echobase.app.core.config import gateway_settings
from echobase.app.core.serve import serve

if __name__ == "__main__":
    settings = gateway_settings()
    serve("echobase.app.gateway.main:create_app", settings, workers=settings.workers)
