"""Engine creation and migrations. SQLite gets WAL; migrations run at start-up (Alembic)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from seekport.store.sql.inline import InlineWriter

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions (a unit test keeps the two in step). A database
# already at HEAD starts without importing Alembic at all, which keeps ~10 MB off every worker.
HEAD_REVISION = "0008"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _current_revision(sync_conn: Connection) -> str | None:
    try:
        return sync_conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None  # a new database: no alembic_version table yet


def _upgrade(sync_conn: Connection) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


class Database:
    """Owns the engines. ``open()`` creates the SQLite directory and migrates to head.

    SQLite also gets a plain (sync) engine for the write-heavy usage path: aiosqlite pays a
    thread hop per statement; the usage records' group commits run on the event loop through an
    ``InlineWriter`` (``inline.py``), and in one ``asyncio.to_thread`` call when it is busy.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._engine: AsyncEngine | None = None
        self._sync: Engine | None = None
        self._writers: dict[str, InlineWriter] = {}

    @property
    def sync_engine(self) -> Engine | None:
        """SQLite only: a sync engine over the same file; None on PostgreSQL."""
        return self._sync

    def inline_writer(self, table: Table) -> InlineWriter | None:
        """SQLite only: the table's writer on the event loop; None on PostgreSQL."""
        if self._sync is None:
            return None
        writer = self._writers.get(table.name)
        if writer is None:
            writer = self._writers[table.name] = InlineWriter(self._sync, table)
        return writer

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database.open() was not called")
        return self._engine

    async def open(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            path = self.url.split(":///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        engine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            self._sync = create_engine(self.url.replace("+aiosqlite", "", 1))
            event.listen(self._sync, "connect", _sqlite_pragmas)
        self._engine = engine
        async with engine.connect() as conn:
            current = await conn.run_sync(_current_revision)
        if current != HEAD_REVISION:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)

    async def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        if self._sync is not None:
            self._sync.dispose()
            self._sync = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
