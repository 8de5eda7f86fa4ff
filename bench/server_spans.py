"""CPU per request of the gateway's tracing, in process, without the network or the rest of
the system (issue 19, point 6): what ``bench/tracing.py`` sees through the LB, taken apart.

    .venv/bin/python bench/server_spans.py [--requests 2000] [--rounds 7]

One FastAPI app shaped like the gateway's intake (an APIRouter with a prefix, a dozen
routes, a validated JSON body, the request metrics middleware, a producer span per order
like the publisher's) is called straight through ASGI, each mode in a process of its own
(a tracer provider is set once per process):

- ``untraced``: no tracer provider (what ``OTEL_SDK_DISABLED=true`` leaves);
- ``producer``: the SDK on, spans to echobase's trace store, but no server span;
- ``server``: the same plus echobase's server span (core/http_tracing), as deployed.

Prints the median CPU time per request of each mode (the process's, so the export thread's
JSON encoding is in it) over ``--rounds`` rounds, and each mode's extra over ``untraced``.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint's body model from its
# annotation, which must be the class itself, not a string naming a function's local.
import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("untraced", "producer", "server")
WARM_UP = 500
HEADERS = [
    (b"host", b"localhost:8443"),
    (b"user-agent", b"wrk"),
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer abc.def.ghi"),
    (b"x-forwarded-for", b"127.0.0.1"),
    (b"x-forwarded-proto", b"https"),
    (b"connection", b"keep-alive"),
]
BODY = json.dumps({"productId": 2, "quantity": 1}).encode()


def intake_app(mode: str, store: Path):  # type: ignore[no-untyped-def]
    from fastapi import APIRouter, FastAPI
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from pydantic import BaseModel

    from echobase.app.core.http_metrics import HttpMetricsMiddleware
    from echobase.app.core.http_tracing import ServerSpanMiddleware
    from echobase.app.core.telemetry import FASTAPI_TELEMETRY_OFF, OtlpJsonFiles, tracer

    if mode != "untraced":
        provider = TracerProvider()
        store_bytes = 1 << 30
        exporter = OtlpJsonFiles(store, "bench", store_bytes, store_bytes)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        trace.set_tracer_provider(provider)

    class Order(BaseModel):
        productId: int
        quantity: int

    app = FastAPI(telemetry=FASTAPI_TELEMETRY_OFF, docs_url=None, redoc_url=None)
    api = APIRouter(prefix="/api/v1")
    for n in range(12):
        api.add_api_route(f"/things{n}/{{thing_id}}", lambda thing_id: {}, methods=["GET"])

    @api.post("/orders", status_code=201)
    async def orders(order: Order) -> dict[str, bool]:
        with tracer().start_as_current_span("send orders", kind=trace.SpanKind.PRODUCER) as span:
            span.set_attribute("messaging.system", "aws_sqs")
        return {"success": True}

    app.include_router(api)
    app.add_middleware(HttpMetricsMiddleware)
    if mode == "server":
        app.add_middleware(ServerSpanMiddleware, excluded_paths=("/health", "/metrics"))
    return app


async def one_request(app) -> None:  # type: ignore[no-untyped-def]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/orders",
        "raw_path": b"/api/v1/orders",
        "query_string": b"",
        "root_path": "",
        "headers": [*HEADERS, (b"content-length", str(len(BODY)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    received = False
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal received
        if received:  # the app never asks twice for a complete body
            raise RuntimeError("receive called after the whole body")
        received = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if sent[0]["status"] != 201:
        raise RuntimeError(f"the intake answered {sent[0]}")


def measure(mode: str, requests: int, rounds: int) -> list[float]:
    """CPU microseconds per request, per round, in this process."""
    with tempfile.TemporaryDirectory() as store:
        app = intake_app(mode, Path(store))

        async def run() -> list[float]:
            for _ in range(WARM_UP):
                await one_request(app)
            per_round = []
            for _ in range(rounds):
                started = time.process_time()
                for _ in range(requests):
                    await one_request(app)
                per_round.append((time.process_time() - started) / requests * 1e6)
            return per_round

        return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one child's mode
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.requests, args.rounds)))
        return
    medians: dict[str, float] = {}
    for mode in MODES:
        command = [sys.executable, __file__, "--mode", mode]
        command += ["--requests", str(args.requests), "--rounds", str(args.rounds)]
        child = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=True,
        )
        rounds = json.loads(child.stdout)
        medians[mode] = statistics.median(rounds)
        print(
            f"{mode:<9} {medians[mode]:7.1f} us CPU per request (median of {args.rounds} rounds"
            f" of {args.requests}; rounds {', '.join(f'{r:.0f}' for r in rounds)})"
        )
    base = medians["untraced"]
    print(
        f"extra over untraced: producer span {medians['producer'] - base:+.1f} us,"
        f" producer and server span {medians['server'] - base:+.1f} us;"
        f" the server span alone {medians['server'] - medians['producer']:+.1f} us"
    )


if __name__ == "__main__":
    main()
