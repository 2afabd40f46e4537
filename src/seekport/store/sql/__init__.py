"""SQLAlchemy 2 async models and repositories; SQLite (WAL) by default, PostgreSQL by URL."""

from seekport.store.sql.db import Database
from seekport.store.sql.repositories import (
    ApiKeyRecord,
    DuplicateRecordError,
    KeyRepository,
    UsageRepository,
)

__all__ = [
    "ApiKeyRecord",
    "Database",
    "DuplicateRecordError",
    "KeyRepository",
    "UsageRepository",
]
