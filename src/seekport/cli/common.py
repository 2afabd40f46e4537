"""What the CLI's commands share: the common options, settings, running a database task with
its errors as one line each, and the options of limits and budgets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from seekport.config import Settings, load_settings
from seekport.errors import ConfigError, SeekportError

T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory.")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy async URL.")]


def load(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc


def run(factory: Callable[[], Awaitable[T]]) -> T:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return asyncio.run(factory())  # type: ignore[arg-type]
    except SeekportError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except (OSError, SQLAlchemyError) as exc:
        typer.echo(
            f"error: cannot use the database ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "check database_url / --database-url and that the server is running",
            err=True,
        )
        raise typer.Exit(1) from exc


async def with_keys(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    from seekport.gateway.auth import KeyService
    from seekport.store.sql import Database, KeyRepository

    db = Database(settings.resolved_database_url)
    await db.open()
    try:
        return await fn(KeyService(KeyRepository(db)))
    finally:
        await db.close()


async def with_directory(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(directory)`` over the configured database (the CLI acts as a superadmin)."""
    from seekport.gateway.audit import AuditLog
    from seekport.gateway.auth import KeyService
    from seekport.gateway.directory import Directory
    from seekport.store.sql import (
        AuditRepository,
        Database,
        KeyRepository,
        TenantRepository,
        UserRepository,
    )
    from seekport.telemetry.audit_stream import AuditStream

    db = Database(settings.resolved_database_url)
    await db.open()
    # the console's changes are audited too, and streamed as the server's are
    audit = AuditLog(AuditRepository(db), AuditStream.of(settings.audit_stream))
    try:
        keys = KeyService(KeyRepository(db))
        return await fn(Directory(TenantRepository(db), UserRepository(db), keys, audit))
    finally:
        await audit.stop()
        await db.close()


def budget_of(amount: str | None, period: str) -> Any:
    """``--budget AMOUNT --budget-period P`` as a Budget (None without an amount)."""
    from seekport.protocol.keys import Budget

    if amount is None:
        return None
    try:
        return Budget.model_validate({"amount": amount, "period": period})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "--budget" if err["loc"][0] == "amount" else "--budget-period"
        typer.echo(f"error: {where}: {err['msg']} (got {err.get('input')!r})", err=True)
        raise typer.Exit(2) from exc


BudgetOpt = Annotated[
    str | None,
    typer.Option(help="Money it may spend per period, in pricing.currency (e.g. 25.00)."),
]
PeriodOpt = Annotated[
    str, typer.Option(help="When the budget starts over: daily, weekly, monthly or total.")
]


def limits_of(
    rpm: int | None, tpm: int | None, max_concurrent: int | None, budget: Any = None
) -> Any:
    from seekport.protocol.keys import Limits

    try:
        return Limits(rpm=rpm, tpm=tpm, max_concurrent=max_concurrent, budget=budget)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "--" + str(err["loc"][0]).replace("_", "-")
        typer.echo(f"error: {where}: {err['msg']} (got {err.get('input')!r})", err=True)
        raise typer.Exit(2) from exc
