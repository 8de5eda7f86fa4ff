"""The ephemeral layer: two colours, each a queue server, order processor and gateway."""
