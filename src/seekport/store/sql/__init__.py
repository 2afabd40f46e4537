"""SQLAlchemy 2 async models and repositories; SQLite (WAL) by default, PostgreSQL by URL."""

from seekport.store.sql.db import Database
from seekport.store.sql.repositories import KeyRepository, UsageRepository

__all__ = ["Database", "KeyRepository", "UsageRepository"]
