"""Structured JSON logs. No code logs credentials, and the SDK loggers that would are muted."""

from __future__ import annotations

import logging
import sys

import structlog

# SDK wire logs print whole responses, GetSecretValue's included: never below WARNING.
_QUIET_LOGGERS = ("botocore", "aiobotocore", "boto3", "urllib3", "s3transfer", "aiohttp")


def configure_logging(service: str, colour: str, level: str = "info") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level.upper())
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
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service, colour=colour)
