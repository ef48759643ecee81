"""Alembic environment: runs migrations on the engine handed over by the caller."""
from __future__ import annotations

from alembic import context

from release_server import models_registry  # noqa: F401  - imports every model
from release_server.db import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                      compare_type=True)
    context.run_migrations()
