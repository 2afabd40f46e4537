"""SQLAlchemy 2 async models and repositories; SQLite (WAL) by default, PostgreSQL by URL."""

from seekport.store.sql.db import Database
from seekport.store.sql.repositories import ApiKeyRecord, KeyRepository, UsageRepository

__all__ = ["ApiKeyRecord", "Database", "KeyRepository", "UsageRepository"]
