"""SQLAlchemy 2 async models and repositories; SQLite (WAL) by default, PostgreSQL by URL."""

from seekport.store.sql.db import Database
from seekport.store.sql.repositories import (
    KeyRepository,
    TenantRepository,
    UsageRepository,
    UserRepository,
)

__all__ = ["Database", "KeyRepository", "TenantRepository", "UsageRepository", "UserRepository"]
