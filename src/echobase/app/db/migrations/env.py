from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from echobase.app.db.models import Base

config = context.config
url = config.attributes["url"]

if context.is_offline_mode():
    # --sql mode: the dialect comes from the URL alone (no connection), so the SQL shown
    # for review is MariaDB's, and values are rendered inline as the server would get them.
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, connect_args={"init_command": "SET time_zone = '+00:00'"})
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
