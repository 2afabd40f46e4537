"""The server's commands: ``seekport serve`` and ``seekport keys create|list|revoke|rotate``
(tenants, users and usage are in ``directory.py``, knowledge bases in ``knowledge.py``). They
work on the database directly, as a superadmin, and need the ``[server]`` extra; ``main.py``
puts them beside the client commands."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from seekport.cli import lifecycle as _lifecycle  # registers `seekport models …`
from seekport.cli.backup import backup, restore
from seekport.cli.client import JsonOpt
from seekport.cli.common import (
    BudgetOpt,
    ConfigOpt,
    DataDirOpt,
    DbOpt,
    PeriodOpt,
    budget_of,
    load,
    run,
    with_directory,
    with_keys,
)
from seekport.cli.directory import tenants_app, users_app
from seekport.cli.directory import usage as usage_db
from seekport.cli.knowledge import kb_app
from seekport.config import Settings, load_settings
from seekport.errors import SeekportError
from seekport.protocol.keys import KeyPolicy

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="seekport: an OpenAI/DeepSeek-compatible gateway for DeepSeek models.",
)
keys_app = typer.Typer(no_args_is_help=True, help="Manage API keys (stored hashed).")
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
app.add_typer(users_app, name="users")
app.add_typer(kb_app, name="kb")
app.command("finetune")(_lifecycle.finetune)
app.command("backup")(backup)
app.command("restore")(restore)


def _check_models(settings: Settings) -> None:
    """Fail before binding the port, with the fix, when a local model file is missing."""
    from seekport.config import LocalModelConfig
    from seekport.gateway.backends.local import check_model_file
    from seekport.gateway.lifecycle import resolve_adapter, resolve_path
    from seekport.store.registry import Registry

    registry = Registry(settings.resolved_models_dir)
    for m in settings.models:
        if isinstance(m, LocalModelConfig):
            try:
                path, _ = resolve_path(m.path, registry)
                adapter = resolve_adapter(m.adapter, registry)
                check_model_file(m.model_copy(update={"path": path, "adapter": adapter}))
            except SeekportError as exc:  # a ConfigError, or a registry reference's error
                typer.echo(f"error: model '{m.name}': {exc.message}", err=True)
                raise typer.Exit(2) from exc


def _check_port(host: str, port: int) -> None:
    """Fail before anything else (the one-time admin key included) when the port is taken."""
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            typer.echo(
                f"error: cannot listen on {host}:{port}: {exc.strerror or exc}; another server "
                "may be running there: stop it, or choose another port with --port",
                err=True,
            )
            raise typer.Exit(2) from exc


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000).")] = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
) -> None:
    """Start the API server (the bundled model when no config is given)."""
    import uvicorn

    from seekport.api import create_app
    from seekport.telemetry.logging import configure_logging

    settings = load(
        config,
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        log_level=log_level,
    )
    configure_logging(settings.log_level)
    _check_port(settings.host, settings.port)
    _check_models(settings)
    if settings.bootstrap_admin_key:
        from seekport.gateway.directory import CLI_ACTOR

        async def bootstrap(d: Any) -> str | None:
            if await d.keys.count_all() > 0:
                return None
            _record, secret = await d.create_key(CLI_ACTOR, "bootstrap-admin", "superadmin")
            return str(secret)

        secret = run(lambda: with_directory(settings, bootstrap))
        if secret:
            typer.echo("Created the first superadmin API key. It is shown only this once:")
            typer.echo(f"  {secret}")
    base = f"http://{settings.host}:{settings.port}"
    typer.echo(f"seekport serving {', '.join(settings.model_names())} on {base}/v1")
    if settings.console.enabled:
        typer.echo(f"Web console: {base}/console (log in with an API key)")
    typer.echo("Get another key: seekport keys create --name NAME --role user")
    sys.stdout.flush()

    def reread() -> Settings:  # a hot reload reads the same sources again
        return load_settings(
            config,
            {
                "host": host,
                "port": port,
                "data_dir": data_dir,
                "database_url": database_url,
                "log_level": log_level,
            },
        )

    app = create_app(settings, reread)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            begin = getattr(app.state, "begin_shutdown", None)
            if begin is not None:
                begin()  # open answers get shutdown_grace_s, then end with a 503

    Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=settings.access_log,
            timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 10,
        )
    ).run()


def _policy(
    models: str | None,
    ip_allow: str | None,
    rpm: int | None,
    tpm: int | None,
    max_concurrent: int | None,
    max_tokens: int | None,
    budget: Any = None,
    cache: bool | None = None,
    guard: str | None = None,
    semantic_cache: bool | None = None,
) -> KeyPolicy:
    def items(text: str | None) -> list[str]:
        return [x.strip() for x in (text or "").split(",") if x.strip()]

    try:
        return KeyPolicy(
            models=tuple(items(models)),
            ip_allow=tuple(items(ip_allow)),  # pydantic parses the CIDRs
            rpm=rpm,
            tpm=tpm,
            max_concurrent=max_concurrent,
            max_tokens=max_tokens,
            budget=budget,
            cache=cache,
            guard=guard,
            semantic_cache=semantic_cache,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "--" + str(err["loc"][0]).replace("_", "-")
        typer.echo(f"error: {where}: {err['msg']} (got {err.get('input')!r})", err=True)
        raise typer.Exit(2) from exc


def _when(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        typer.echo(f"error: --expires: not an ISO 8601 time: {text!r}", err=True)
        raise typer.Exit(2) from exc


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key.")],
    role: Annotated[str, typer.Option(help="superadmin, admin, user, auditor or viewer.")] = "user",
    tenant: Annotated[
        str | None, typer.Option(help="Tenant id or name (default: the default tenant).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="The user (usr_…) it belongs to.")] = None,
    models: Annotated[
        str | None, typer.Option(help="Models (or aliases) it may call, comma-separated.")
    ] = None,
    ip_allow: Annotated[
        str | None, typer.Option(help="Client address ranges it may call from (CIDR, ...).")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute at most.")] = None,
    tpm: Annotated[
        int | None, typer.Option(help="Tokens (prompt + completion) per minute at most.")
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="Requests under way at once at most.")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Output tokens per call at most (a cap on max_tokens).")
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="When it stops working, ISO 8601 with a zone.")
    ] = None,
    budget: BudgetOpt = None,
    budget_period: PeriodOpt = "monthly",
    cache: Annotated[
        bool | None,
        typer.Option(
            "--cache/--no-cache", help="Cache this key's calls (any model) or never; unset: config."
        ),
    ] = None,
    guard: Annotated[
        str | None, typer.Option(help="A guard policy named in guard.policies, or off.")
    ] = None,
    semantic_cache: Annotated[
        bool | None,
        typer.Option(
            "--semantic-cache/--no-semantic-cache",
            help="Reuse answers to rephrased questions for this key or never; unset: config.",
        ),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create a key; its secret is printed alone on the last line (shown once)."""
    policy = _policy(
        models,
        ip_allow,
        rpm,
        tpm,
        max_concurrent,
        max_tokens,
        budget_of(budget, budget_period),
        cache,
        guard,
        semantic_cache,
    )
    expires_at = _when(expires)
    settings = load(config, data_dir=data_dir, database_url=database_url)
    from seekport.gateway.directory import CLI_ACTOR

    record, secret = run(
        lambda: with_directory(
            settings,
            lambda d: d.create_key(
                CLI_ACTOR,
                name,
                role,
                tenant_id=tenant,
                user_id=user,
                expires_at=expires_at,
                policy=policy,
            ),
        )
    )
    terms = [
        f"{k} {','.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in policy.stored().items()
        if k != "budget"
    ]
    if policy.budget is not None:
        terms.append(f"budget {policy.budget.amount} {policy.budget.period}")
    if record.expires_at:
        terms.append(f"expires {record.expires_at:%Y-%m-%d %H:%M:%S} UTC")
    who = [record.name, record.role, f"tenant {record.tenant_id}"]
    if record.user_id:
        who.append(f"user {record.user_id}")
    typer.echo(f"created key {record.id} ({', '.join([*who, *terms])})")
    typer.echo(secret)


@keys_app.command("list")
def keys_list(
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """List keys (id, name, role, prefix, state); secrets are never shown again."""
    settings = load(config, data_dir=data_dir, database_url=database_url)
    rows = run(lambda: with_keys(settings, lambda k: k.list()))
    if as_json:
        for r in rows:
            state = "revoked" if r.revoked_at else "active"
            line = {"id": r.id, "name": r.name, "role": r.role, "tenant_id": r.tenant_id}
            line |= {"user_id": r.user_id, "prefix": r.prefix, "state": state}
            typer.echo(json.dumps(line, ensure_ascii=False))
        return
    typer.echo(f"{'id':22} {'name':20} {'role':10} {'tenant':20} {'prefix':12} state")
    for r in rows:
        state = "revoked" if r.revoked_at else "active"
        typer.echo(
            f"{r.id:22} {r.name[:20]:20} {r.role:10} {r.tenant_id:20} {r.prefix + '…':12} {state}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (key_…).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Revoke a key; servers stop accepting it within the auth cache TTL (1 s)."""
    from seekport.gateway.directory import CLI_ACTOR

    settings = load(config, data_dir=data_dir, database_url=database_url)

    async def revoke(d: Any) -> bool:
        found = await d.key(CLI_ACTOR, key_id)
        if found.revoked_at is not None:
            return False
        await d.revoke_key(CLI_ACTOR, key_id)
        return True

    if not run(lambda: with_directory(settings, revoke)):
        typer.echo(f"error: no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key id (key_…).")],
    grace: Annotated[float, typer.Option(help="Seconds the previous secret keeps working.")] = 3600,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """A new secret for the key (same id and terms); the new secret is the last line."""
    from seekport.gateway.directory import CLI_ACTOR

    settings = load(config, data_dir=data_dir, database_url=database_url)
    record, secret = run(
        lambda: with_directory(settings, lambda d: d.rotate_key(CLI_ACTOR, key_id, grace_s=grace))
    )
    typer.echo(f"rotated key {record.id}; the previous secret works for {grace:g} s more")
    typer.echo(secret)


__all__ = ["app", "usage_db"]
