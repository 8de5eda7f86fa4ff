"""Names of the secrets every part agrees on; a light module, so importing a name costs
nothing (the CLI's start-up is part of how fast a switch is)."""

DEFAULT_DB_SECRET = "echobase/database/credentials"  # noqa: S105 - a name, not a value
DEFAULT_JWT_SECRET = "echobase/api-gateway/jwt"  # noqa: S105 - a name, not a value
