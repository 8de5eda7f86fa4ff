"""The durable recommendations service: a Model Context Protocol server that the colours'
gateways (and any MCP client holding the API key) ask for products to recommend."""
