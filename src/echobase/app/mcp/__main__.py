"""``python -m echobase.app.mcp``: serve the recommendations service with uvicorn."""

from echobase.app.core.imports import leave_out_console_libraries

leave_out_console_libraries()
from echobase.app.core.config import mcp_settings  # noqa: E402 (after the line above)
from echobase.app.core.serve import serve  # noqa: E402 (after the line above)

if __name__ == "__main__":
    serve("echobase.app.mcp.server:create_app", mcp_settings())
