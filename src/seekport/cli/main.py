"""The ``seekport`` command. The client commands (``ask``, ``chat``, ``models list``, ``usage``
over the API) need only the base install; the server's (``serve``, ``keys``, ``tenants``,
``users``, ``kb``) come from ``server.py`` when the ``[server]`` extra is installed, and
otherwise answer with the line that installs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from seekport.cli.client import (
    ApiKeyOpt,
    BaseUrlOpt,
    JsonOpt,
    ask,
    chat,
    fail,
    models_app,
    needs_server,
    usage_over_api,
)

SERVER_COMMANDS = ("serve", "keys", "tenants", "users", "kb", "backup", "restore")
usage_db: Callable[..., None] | None

try:
    from seekport.cli.server import app
    from seekport.cli.server import usage_db as _usage_db

    usage_db = _usage_db
except ImportError as exc:  # a client-only install: no pydantic-settings, SQLAlchemy, …
    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        help="seekport: an OpenAI/DeepSeek-compatible gateway for DeepSeek models.",
    )
    usage_db = None
    for _name in SERVER_COMMANDS:
        app.command(
            _name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
        )(needs_server(_name, exc.name))

app.command("ask")(ask)
app.command("chat")(chat)
app.add_typer(models_app, name="models")


@app.command("usage")
def usage(
    group_by: Annotated[str | None, typer.Option(help="day, model or key.")] = None,
    since: Annotated[str | None, typer.Option(help="From (ISO 8601, UTC if no zone).")] = None,
    until: Annotated[str | None, typer.Option(help="Until (exclusive).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (id).")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user (usr_…).")] = None,
    key: Annotated[str | None, typer.Option(help="Only this key (key_…).")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    json_out: JsonOpt = False,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Read the database of this config.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data directory.")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy async URL.")
    ] = None,
) -> None:
    """Requests, tokens and cost by day, model or key: from the server's usage API (an admin
    or auditor key), or straight from the database with --config/--data-dir/--database-url."""
    if config is None and data_dir is None and database_url is None:
        usage_over_api(
            group_by, since, until, tenant, user, key, model, json_out, base_url, api_key
        )
        return
    if usage_db is None:
        raise fail(
            "reading the database needs the server's dependencies: pip install 'seekport[server]'"
            " (or leave out --config/--data-dir/--database-url to ask the server)",
            2,
        )
    if json_out:
        raise fail("--json is for the API's answer; leave out --config to use it", 2)
    usage_db(
        group_by=group_by,
        since=since,
        until=until,
        tenant=tenant,
        user=user,
        key=key,
        model=model,
        config=config,
        data_dir=data_dir,
        database_url=database_url,
    )


def main() -> None:
    app()
