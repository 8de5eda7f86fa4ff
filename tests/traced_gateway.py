"""The real gateway behind what OpenTelemetry's ASGI instrumentation does outermost: a server
span per request, continuing the caller's ``traceparent`` (sampled or not). For the tests of
exemplars across uvicorn workers: ``python -m traced_gateway`` with this directory on
PYTHONPATH (the spawned workers import it by name)."""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider

from echobase.app.core.config import gateway_settings
from echobase.app.core.serve import serve
from echobase.app.gateway.main import create_app as create_gateway


def create_app() -> Any:
    # The default sampler follows the caller's sampled flag: a traceparent ending -00 makes
    # an unsampled span, -01 a sampled one. No exporter: the spans only need to exist.
    return OpenTelemetryMiddleware(create_gateway(), tracer_provider=TracerProvider())


if __name__ == "__main__":
    settings = gateway_settings()
    serve("traced_gateway:create_app", settings, workers=settings.workers)
