"""The settings the platform itself gives a gateway or an order processor: where it listens,
which colour and release it is, where its secrets store and its queues are. One function,
so a colour under supervisor, the development stack of the tests and ``echobase dev``, and
the renderings for other targets agree on every name. Plain values only: credentials are
read by the services from the secrets store, never passed in.

These are the names ``echobase.platform.stack.RESERVED_SETTINGS`` keeps ``echobase.toml``
from setting."""

from __future__ import annotations

from echobase.app.queues import QueueUrls


def platform_settings(
    *,
    colour: str,
    port: int,
    secrets_url: str,
    sqs_url: str,
    queues: QueueUrls,
    host: str | None = None,
    release: str | None = None,
    environment: str | None = None,
    traces_dir: str | None = None,
) -> dict[str, str]:
    """``ECHOBASE_*`` settings of one service; the optional ones are left to the service's
    defaults when not given (a bare development stack has no release or trace store)."""
    settings = {
        "ECHOBASE_COLOUR": colour,
        "ECHOBASE_PORT": str(port),
        "ECHOBASE_SECRETS_ENDPOINT_URL": secrets_url,
        "ECHOBASE_SQS_ENDPOINT_URL": sqs_url,
        "ECHOBASE_SQS_QUEUE_URL": queues.queue_url,
        "ECHOBASE_SQS_DLQ_URL": queues.dlq_url,
    }
    optional = {
        "ECHOBASE_HOST": host,
        "ECHOBASE_RELEASE": release,
        "ECHOBASE_ENVIRONMENT": environment,
        "ECHOBASE_TRACES_DIR": traces_dir,
    }
    settings.update({key: value for key, value in optional.items() if value is not None})
    return settings
