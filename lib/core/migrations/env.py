"""Alembic environment: runs migrations on the engine handed over by lib.core.db.migrate."""

from alembic import context

from lib.core.tables import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=engine.dialect.name == "sqlite"
    )
    context.run_migrations()
