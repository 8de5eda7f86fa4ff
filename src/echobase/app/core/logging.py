"""Structured JSON logs: one object per line with time, level, service, colour, release and,
inside a traced request or message, its trace_id and span_id (what `echobase logs --trace`
finds). The standard library's records (uvicorn's, the SDKs') go through the same renderer.
No code logs credentials, and the SDK loggers that would are muted."""

from __future__ import annotations

import logging
import os
import sys

import structlog
from structlog.typing import EventDict, WrappedLogger

from echobase.app.core.telemetry import span_ids

# SDK wire logs print whole responses, GetSecretValue's included: never below WARNING.
# The MCP SDK and its HTTP client log a line per request at INFO.
_QUIET_LOGGERS = (
    "botocore",
    "aiobotocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "aiohttp",
    "httpx2",
    "mcp",
)


class _Stdout:
    """sys.stdout that outlives its reader. supervisord reads each service's stdout through
    a pipe; when supervisord is SIGKILLed the service lives on (until `echobase up` replaces
    it) but every write then fails with EPIPE, and structlog raises that into the code that
    logged: measured as HTTP 500s from the gateway and a processor that stopped consuming.
    On the first broken pipe, stdout and stderr go to /dev/null (nobody is reading them)."""

    def write(self, text: str) -> int:
        try:
            return sys.stdout.write(text)
        except BrokenPipeError:
            _silence()
            return len(text)

    def flush(self) -> None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _silence()


def _silence() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def add_trace_ids(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    for key, value in span_ids().items():
        event.setdefault(key, value)
    return event


def configure_logging(service: str, colour: str, level: str = "info", release: str = "") -> None:
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        add_trace_ids,
    ]
    handler = logging.StreamHandler(_Stdout())  # type: ignore[arg-type]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn installs its own plain-text handlers; its records go through ours instead.
    # (Its access log stays off: the services log what matters about a request themselves.)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=_Stdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service, colour=colour, release=release)
