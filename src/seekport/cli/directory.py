"""``seekport tenants create|list``, ``seekport users create|list`` and ``seekport usage``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from seekport.cli.client import JsonOpt
from seekport.cli.common import (
    BudgetOpt,
    ConfigOpt,
    DataDirOpt,
    DbOpt,
    PeriodOpt,
    budget_of,
    limits_of,
    load,
    run,
    with_directory,
)

tenants_app = typer.Typer(no_args_is_help=True, help="Manage tenants.")
users_app = typer.Typer(no_args_is_help=True, help="Manage users (a tenant's people or apps).")


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Option(help="A unique name.")],
    rpm: Annotated[int | None, typer.Option(help="Requests per minute, all keys.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute, all keys.")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="Calls at once, all keys.")] = None,
    budget: BudgetOpt = None,
    budget_period: PeriodOpt = "monthly",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create a tenant; its id is the last line."""
    from seekport.gateway.directory import CLI_ACTOR

    limits = limits_of(rpm, tpm, max_concurrent, budget_of(budget, budget_period))
    settings = load(config, data_dir=data_dir, database_url=database_url)
    made = run(lambda: with_directory(settings, lambda d: d.create_tenant(CLI_ACTOR, name, limits)))
    typer.echo(f"created tenant {made.name}")
    typer.echo(made.id)


@tenants_app.command("list")
def tenants_list(
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """List tenants (--json: one object per line)."""
    from seekport.gateway.directory import CLI_ACTOR

    settings = load(config, data_dir=data_dir, database_url=database_url)
    rows = run(lambda: with_directory(settings, lambda d: d.list_tenants(CLI_ACTOR)))
    if as_json:
        for t in rows:
            state = "disabled" if t.disabled_at else "active"
            typer.echo(json.dumps({"id": t.id, "name": t.name, "state": state}, ensure_ascii=False))
        return
    typer.echo(f"{'id':22} {'name':24} state")
    for t in rows:
        typer.echo(f"{t.id:22} {t.name[:24]:24} {'disabled' if t.disabled_at else 'active'}")


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Option(help="Unique within its tenant.")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant id or name (default: the default tenant).")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute, all its keys.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute, all its keys.")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="Calls at once, all keys.")] = None,
    budget: BudgetOpt = None,
    budget_period: PeriodOpt = "monthly",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create a user; its id is the last line."""
    from seekport.gateway.directory import CLI_ACTOR

    limits = limits_of(rpm, tpm, max_concurrent, budget_of(budget, budget_period))
    settings = load(config, data_dir=data_dir, database_url=database_url)
    made = run(
        lambda: with_directory(
            settings, lambda d: d.create_user(CLI_ACTOR, name, tenant_id=tenant, limits=limits)
        )
    )
    typer.echo(f"created user {made.name} in tenant {made.tenant_id}")
    typer.echo(made.id)


@users_app.command("list")
def users_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's (id or name).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """List users (--json: one object per line)."""
    from seekport.gateway.directory import CLI_ACTOR

    settings = load(config, data_dir=data_dir, database_url=database_url)
    rows = run(lambda: with_directory(settings, lambda d: d.list_users(CLI_ACTOR, tenant)))
    if as_json:
        for u in rows:
            state = "disabled" if u.disabled_at else "active"
            line = {"id": u.id, "name": u.name, "tenant_id": u.tenant_id, "state": state}
            typer.echo(json.dumps(line, ensure_ascii=False))
        return
    typer.echo(f"{'id':22} {'name':24} {'tenant':22} state")
    for u in rows:
        state = "disabled" if u.disabled_at else "active"
        typer.echo(f"{u.id:22} {u.name[:24]:24} {u.tenant_id:22} {state}")


def usage(
    *,
    group_by: str | None,
    since: str | None,
    until: str | None,
    tenant: str | None,
    user: str | None,
    key: str | None,
    model: str | None,
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Requests, tokens and cost from the usage records (what GET /admin/usage answers), read
    from the database; ``seekport usage`` (main.py) holds the options."""
    from seekport.config.pricing import decimal_string
    from seekport.store.protocols import UsageQuery
    from seekport.store.sql import Database, UsageTotals

    if group_by not in (None, "day", "model", "key"):
        typer.echo("error: --group-by: day, model or key", err=True)
        raise typer.Exit(2)
    settings = load(config, data_dir=data_dir, database_url=database_url)
    q = UsageQuery(
        tenant_id=tenant,
        user_id=user,
        key_id=key,
        model=model,
        since=_time_option(since, "--since"),
        until=_time_option(until, "--until"),
        group_by=group_by,
    )

    async def read() -> list[dict[str, Any]]:
        db = Database(settings.resolved_database_url)
        await db.open()
        try:
            return await UsageTotals(db).totals(q)
        finally:
            await db.close()

    rows = run(read)
    head = group_by or "all"
    typer.echo(f"{head:24} {'requests':>9} {'prompt':>10} {'completion':>10} {'cost':>14} cur")
    for r in rows:
        name = str(r.get({"key": "key_id"}.get(head, head), "") or "-") if group_by else "all"
        cost = decimal_string(int(r["cost_nanos"] or 0), 6) if r["currency"] else "-"
        typer.echo(
            f"{name[:24]:24} {r['requests']:>9} {r['prompt_tokens'] or 0:>10} "
            f"{r['completion_tokens'] or 0:>10} {cost:>14} {r['currency'] or ''}"
        )


def _time_option(text: str | None, flag: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        typer.echo(f"error: {flag}: not an ISO 8601 time: {text!r}", err=True)
        raise typer.Exit(2) from exc
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
