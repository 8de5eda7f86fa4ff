from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from echobase.app.db.models import Base

config = context.config
url = config.attributes["url"]

engine = create_engine(url, connect_args={"init_command": "SET time_zone = '+00:00'"})
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
