"""SQLite inserts on the calling thread (the event loop), for the one-commit-per-request path.

A usage record is a commit per request when requests do not overlap enough to be grouped.
Through ``asyncio.to_thread`` and SQLAlchemy's execution path a one-row commit cost ~0.45 ms of
CPU (the thread hop, the GIL handoffs, the execution context); on the DBAPI connection itself
it costs ~0.03 ms, a write into the WAL (``synchronous=NORMAL``: no fsync at commit).

So the statement is still SQLAlchemy's: compiled once per set of columns by the engine's
dialect, its values put through the column types' bind processors (what is stored is what
SQLAlchemy would store), and only the ``executemany`` and the commit run here. Two things would
block the loop and are kept off it:

* a write lock held by another connection or process: the connection's busy timeout is 0, so
  ``insert`` raises ``Busy`` at once, with nothing written, and the caller takes the thread
  path, which waits;
* WAL checkpoints (they fsync): this connection's autocheckpoint is off and ``checkpoint`` is
  run by the caller in a thread every ``CHECKPOINT_EVERY`` commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, insert, text
from sqlalchemy.engine import Engine

CHECKPOINT_EVERY = 256  # commits between two passive checkpoints (~5 pages a commit)
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_Statement = tuple[str, list[str], list[Callable[[Any], Any] | None]]


class Busy(Exception):
    """The database is locked by another writer: nothing was written."""


class InlineWriter:
    """Inserts into one table over a connection of its own, detached from the engine's pool
    (its pragmas differ from the pool's)."""

    def __init__(self, engine: Engine, table: Table) -> None:
        self._engine = engine
        self._table = table
        self._conn: Any = None
        # per set of columns: the SQL, its parameters' names in order, their bind processors
        self._statements: dict[tuple[str, ...], _Statement] = {}
        self.commits = 0

    def _connection(self) -> Any:
        if self._conn is None:
            conn = self._engine.raw_connection()
            conn.detach()  # never handed back to the pool with these pragmas
            cur = conn.cursor()
            cur.execute("PRAGMA busy_timeout=0")
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()
            self._conn = conn
        return self._conn

    def _statement(self, keys: tuple[str, ...]) -> _Statement:
        found = self._statements.get(keys)
        if found is None:
            dialect = self._engine.dialect
            compiled = insert(self._table).compile(dialect=dialect, column_keys=list(keys))
            order = list(compiled.positiontup or [])
            missing = set(order).difference(keys)  # columns with a default, not given
            if missing:
                raise ValueError(f"InlineWriter needs every column given: {sorted(missing)}")
            processors: list[Callable[[Any], Any] | None] = [
                self._table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in order
            ]
            found = (str(compiled), order, processors)
            self._statements[keys] = found
        return found

    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Commit ``rows`` (all with the same keys) in one transaction. Raises ``Busy`` when
        another writer holds the lock, ``sqlite3.IntegrityError`` for a duplicate; either
        way nothing is written."""
        if not rows:
            return
        keys = tuple(rows[0])
        sql, order, processors = self._statement(keys)
        params = [
            tuple(
                p(row[name]) if p is not None else row[name]
                for name, p in zip(order, processors, strict=True)
            )
            for row in rows
        ]
        conn = self._connection()
        try:
            cur = conn.cursor()
            try:
                cur.executemany(sql, params)
            finally:
                cur.close()
            conn.commit()
        except sqlite3.OperationalError as exc:
            conn.rollback()
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
                raise Busy(str(exc)) from exc
            raise
        except BaseException:
            conn.rollback()
            raise
        self.commits += 1

    def due_checkpoint(self) -> bool:
        return self.commits > 0 and self.commits % CHECKPOINT_EVERY == 0

    def checkpoint(self) -> None:
        """A passive checkpoint over a pool connection (blocking: run it in a thread)."""
        with self._engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
