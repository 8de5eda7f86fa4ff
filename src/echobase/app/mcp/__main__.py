"""``python -m echobase.app.mcp``: serve the recommendations service with uvicorn."""

from echobase.app.core.config import mcp_settings
from echobase.app.core.serve import serve

if __name__ == "__main__":
    serve("echobase.app.mcp.server:create_app", mcp_settings())
