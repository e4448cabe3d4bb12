"""Persistence: SQLAlchemy Core tables, Alembic migrations, the Store façade.

Other layers import `Store` and `open_store` from here, never the tables.
"""

from controller.store.db import Store, open_store

__all__ = ["Store", "open_store"]
