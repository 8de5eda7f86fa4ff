"""Structured JSON logs. No code logs credentials, and the SDK loggers that would are muted."""

from __future__ import annotations

import logging
import os
import sys

import structlog

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


def configure_logging(service: str, colour: str, level: str = "info") -> None:
    logging.basicConfig(format="%(message)s", stream=_Stdout(), level=level.upper())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=_Stdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service, colour=colour)
