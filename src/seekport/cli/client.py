"""The CLI's client commands: ``ask``, ``chat``, ``models list`` and ``usage`` over the API.

They talk to a running server through the SDK (``SEEKPORT_BASE_URL``, ``SEEKPORT_API_KEY``, or
``--base-url`` / ``--api-key``) and import nothing of the server, so they work from a
client-only install. Errors are one line on stderr with the fix, never a traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from seekport.errors import AuthenticationError, PermissionDeniedError, SeekportError

if TYPE_CHECKING:  # imported when a client command runs: the server's commands start faster
    from seekport.sdk import Client

BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="The server (default: $SEEKPORT_BASE_URL or 127.0.0.1:8000)."),
]
ApiKeyOpt = Annotated[
    str | None, typer.Option("--api-key", help="An API key (default: $SEEKPORT_API_KEY).")
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="The model (default: the server's first).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]

models_app = typer.Typer(no_args_is_help=True, help="The server's models.")


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def connect(base_url: str | None, api_key: str | None) -> Iterator[Client]:
    """A client whose errors leave as one readable line (exit 1)."""
    from seekport.sdk import APIConnectionError, Client

    try:
        client = Client(base_url=base_url, api_key=api_key, max_retries=2, timeout=600)
    except ValueError as exc:
        raise fail(str(exc), 2) from exc
    try:
        yield client
    except APIConnectionError as exc:
        raise fail(
            f"cannot reach the server at {client.base_url} ({exc.message}); is `seekport "
            "serve` running there? Set SEEKPORT_BASE_URL or pass --base-url"
        ) from exc
    except AuthenticationError as exc:
        hint = "" if client.aio.api_key else " (no key given)"
        raise fail(
            f"{exc.message}{hint}; set SEEKPORT_API_KEY or pass --api-key "
            "(make one with `seekport keys create`)"
        ) from exc
    except PermissionDeniedError as exc:
        raise fail(f"{exc.message}; ask an admin for a key with that role") from exc
    except SeekportError as exc:
        rid = f" (request id {exc.request_id})" if exc.request_id else ""
        raise fail(f"{exc.message}{rid}") from exc
    finally:
        client.close()


def _model(client: Client, model: str | None) -> str:
    if model:
        return model
    served = client.models.list().data
    if not served:
        raise fail("the server serves no model")
    return served[0].id


def _prompt(prompt: str | None) -> str:
    """The argument, with piped stdin after it (``cat notes.txt | seekport ask "sum up"``)."""
    piped = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    parts = [p for p in (prompt, piped.strip()) if p]
    if not parts:
        raise fail('nothing to ask: give a prompt (seekport ask "...") or pipe text in', 2)
    return "\n\n".join(parts)


def _dim(text: str) -> str:
    return typer.style(text, dim=True) if sys.stderr.isatty() else text


def ask(
    prompt: Annotated[
        str | None, typer.Argument(help="The question; piped stdin is added.")
    ] = None,
    model: ModelOpt = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="A system prompt.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens to answer with.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    json_out: JsonOpt = False,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """One question, the answer streamed to stdout (reasoning to stderr, dimmed)."""
    text = _prompt(prompt)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    params: dict[str, Any] = {
        k: v
        for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items()
        if v is not None
    }
    with connect(base_url, api_key) as client:
        name = _model(client, model)
        if json_out:
            answer = client.chat.completions.create(model=name, messages=messages, **params)
            typer.echo(answer.model_dump_json(exclude_none=True))
            return
        stream = client.chat.completions.create(
            model=name, messages=messages, stream=True, **params
        )
        _print_stream(stream)


def _print_stream(stream: Any) -> None:
    reasoning = False
    for delta in stream:
        if delta.reasoning_content:
            reasoning = True
            sys.stderr.write(_dim(delta.reasoning_content))
            sys.stderr.flush()
        if delta.content:
            if reasoning:
                sys.stderr.write("\n")
                reasoning = False
            sys.stdout.write(delta.content)
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


CHAT_HELP = """commands: /model NAME (switch model), /system TEXT (set the system prompt),
/reset (forget the conversation), /history (show it), /exit (or Ctrl-D)"""


def chat(
    model: ModelOpt = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="A system prompt.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens per answer.")] = None,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """An interactive chat: answers stream in, reasoning dimmed apart; /help for commands."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history for input()

    with connect(base_url, api_key) as client:
        name = _model(client, model)
        history: list[dict[str, str]] = []
        typer.echo(f"seekport chat with {name}. {CHAT_HELP}")
        while True:
            try:
                line = input("> ")
            except (EOFError, KeyboardInterrupt):
                typer.echo("")
                return
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                command, _, arg = line.partition(" ")
                if command in ("/exit", "/quit"):
                    return
                if command == "/model" and arg.strip():
                    name = arg.strip()
                    typer.echo(f"model: {name}")
                elif command == "/system":
                    system = arg.strip() or None
                    typer.echo(f"system prompt: {system or '(none)'}")
                elif command == "/reset":
                    history.clear()
                    typer.echo("conversation cleared")
                elif command == "/history":
                    for m in history:
                        typer.echo(f"{m['role']}: {m['content']}")
                else:
                    typer.echo(CHAT_HELP)
                continue
            history.append({"role": "user", "content": line})
            messages = ([{"role": "system", "content": system}] if system else []) + history
            params = {"max_tokens": max_tokens} if max_tokens else {}
            try:
                stream = client.chat.completions.create(
                    model=name, messages=messages, stream=True, **params
                )
                _print_stream(stream)
            except KeyboardInterrupt:
                typer.echo("\n(stopped)")
                history.pop()
                continue
            except SeekportError as exc:
                history.pop()
                rid = f" (request id {exc.request_id})" if exc.request_id else ""
                typer.echo(f"error: {exc.message}{rid}", err=True)
                continue
            history.append({"role": "assistant", "content": stream.content})


@models_app.command("list")
def models_list(
    json_out: JsonOpt = False,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    local: Annotated[
        bool, typer.Option("--local", help="This machine's model registry instead.")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="With --local: its settings file.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="With --local: its data directory.")
    ] = None,
) -> None:
    """The models the server serves (GET /v1/models); with --local, the versions in this
    machine's registry and their measured figures."""
    if local:
        try:
            from seekport.cli.lifecycle import list_local
        except ImportError as exc:
            raise fail(
                "--local needs the server's dependencies: pip install 'seekport[server]'", 2
            ) from exc
        list_local(config, data_dir, json_out)
        return
    with connect(base_url, api_key) as client:
        found = client.models.list()
    if json_out:
        typer.echo(found.model_dump_json())
        return
    _table(["model", "owned by"], [[m.id, m.owned_by] for m in found.data])


@models_app.command("use")
def models_use(
    model: Annotated[str, typer.Argument(help="A local model the server serves.")],
    version: Annotated[str, typer.Argument(help="NAME@VERSION from `models list --local`.")],
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Switch a served local model to a registry version: loaded and warmed up first, calls
    under way finish on the old one (a superadmin key). Held until the server restarts."""
    with connect(base_url, api_key) as client:
        done = client.admin.models.use(model, version)
    typer.echo(f"{model}: serving {done['serving']} (was {done['previous']})")


@models_app.command("rollback")
def models_rollback(
    model: Annotated[str, typer.Argument(help="A local model the server serves.")],
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Switch a served local model back to what it served before its last `models use`."""
    with connect(base_url, api_key) as client:
        done = client.admin.models.rollback(model)
    typer.echo(f"{model}: serving {done['serving']} (was {done['previous']})")


def usage_over_api(
    group_by: str | None,
    since: str | None,
    until: str | None,
    tenant: str | None,
    user: str | None,
    key: str | None,
    model: str | None,
    json_out: bool,
    base_url: str | None,
    api_key: str | None,
) -> None:
    """``seekport usage`` against a running server (GET /admin/usage)."""
    if group_by not in (None, "day", "model", "key"):
        raise fail("--group-by: day, model or key", 2)
    with connect(base_url, api_key) as client:
        report = client.usage(
            group_by=group_by,
            since=since,
            until=until,
            tenant_id=tenant,
            user_id=user,
            key_id=key,
            model=model,
        )
    if json_out:
        typer.echo(report.model_dump_json())
        return
    rows = [
        [
            g.group or "all",
            str(g.requests),
            str(g.prompt_tokens),
            str(g.completion_tokens),
            str(g.cached_tokens),
            f"{g.cost} {g.currency}" if g.currency else "-",
        ]
        for g in report.data
    ]
    head = group_by or "all"
    _table([head, "requests", "prompt", "completion", "cached", "cost"], rows)
    for t in report.totals:
        typer.echo(
            f"total: {t.requests} requests, {t.prompt_tokens + t.completion_tokens} tokens, "
            f"{t.cost} {t.currency or ''}".rstrip()
        )


def _table(header: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal; tab-separated lines when piped."""
    if not sys.stdout.isatty():
        for row in [header, *rows]:
            typer.echo("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def needs_server(command: str, missing: str | None) -> Callable[..., None]:
    """A stand-in for a server command when the server's dependencies are not installed."""

    def stand_in(ctx: typer.Context) -> None:
        raise fail(
            f"`seekport {command}` needs the server's dependencies ({missing or 'missing'} is "
            "not installed): pip install 'seekport[server]' (and '[local]' for local models)",
            2,
        )

    stand_in.__doc__ = f"(needs pip install 'seekport[server]') the server's `{command}`."
    return stand_in
