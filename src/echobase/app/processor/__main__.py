"""``python -m echobase.app.processor``: run the consumer with its health endpoint."""

from echobase.app.core.imports import leave_out_console_libraries

leave_out_console_libraries()
from echobase.app.core.config import processor_settings  # noqa: E402 (after the line above)
from echobase.app.core.serve import serve  # noqa: E402 (after the line above)

if __name__ == "__main__":
    settings = processor_settings()
    # SIGTERM: stop polling and finish the batch in hand, within one visibility timeout.
    serve(
        "echobase.app.processor.main:create_app",
        settings,
        grace=settings.visibility_timeout_seconds,
    )
