"""Names of the secrets and paths every part agrees on; a light module, so importing a name costs
nothing (the CLI's start-up is part of how fast a switch is)."""

DEFAULT_DB_SECRET = "echobase/database/credentials"  # noqa: S105 - a name, not a value
DEFAULT_JWT_SECRET = "echobase/api-gateway/jwt"  # noqa: S105 - a name, not a value
DEFAULT_MCP_KEY_SECRET = "echobase/mcp/api-key"  # noqa: S105 - a name, not a value
# The recommendations service reads orders and products only: a user of its own.
DEFAULT_MCP_DB_SECRET = "echobase/database/mcp-readonly"  # noqa: S105 - a name, not a value
# Where the recommendations service answers MCP, on its own port and through the LB.
MCP_PATH = "/mcp"
# Every service's own health check and metrics (not users' requests: the canary analysis
# leaves them out).
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
