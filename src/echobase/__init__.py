"""echobase: blue-green order processing with a durable and an ephemeral layer."""

__version__ = "0.1.0"
