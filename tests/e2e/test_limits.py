"""Limits and refusals: what a client controls is bounded, what the engine cannot do is refused."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import BUNDLED, SEEKPORT, Chaos, Server, run_server, write_config


def post(server: Server, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        server.url + path, json=body, timeout=60, headers={"Authorization": f"Bearer {server.key}"}
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/v1/completions", {"prompt": "hi", "echo": True}, "echo"),
        ("/v1/completions", {"prompt": "hi", "best_of": 3}, "best_of"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}], "modalities": ["text", "audio"]},
            "modalities",
        ),
        (  # chat prefix completion, outside /beta
            "/v1/chat/completions",
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "```", "prefix": True},
                ]
            },
            "messages",
        ),
        (  # tools are answered through a grammar, so a response_format cannot join them
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "response_format": {"type": "json_object"},
            },
            "response_format",
        ),
        (
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        (  # a tool whose parameters cannot become a grammar
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"type": "array", "maxItems": 100000},
                        },
                    }
                ],
            },
            "tools",
        ),
        (
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "hi"}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "array", "maxItems": 100000}},
                },
            },
            "response_format",
        ),
    ],
)
def test_local_engine_refuses_what_it_cannot_honour(
    server: Server, path: str, extra: dict[str, object], param: str
) -> None:
    r = post(server, path, {"model": BUNDLED, "max_tokens": 4, **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.slow
def test_json_schema_response_format_is_followed(server: Server) -> None:
    import json

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    r = post(
        server,
        "/v1/chat/completions",
        {
            "model": BUNDLED,
            "max_tokens": 60,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Invent a person"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "p", "schema": schema},
            },
        },
    )
    assert r.status_code == 200, r.text
    obj = json.loads(r.json()["choices"][0]["message"]["content"])
    assert set(obj) == {"name", "age"} and isinstance(obj["age"], int)


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory, chaos: Chaos) -> Iterator[Server]:
    """A remote model allowed one call in flight and no waiting line."""
    tmp: Path = tmp_path_factory.mktemp("narrow")
    config = write_config(
        tmp,
        [
            {
                "name": "narrow",
                "backend": "openai",
                "base_url": chaos.url,
                "upstream_model": "deepseek-chat",
                "max_connections": 1,
                "max_waiting": 0,
            }
        ],
    )
    with run_server(config) as s:
        yield s


def test_remote_calls_beyond_the_bound_get_503_with_retry_after(
    narrow: Server, fresh_chaos: Chaos
) -> None:
    fresh_chaos.control(latency_ms=300)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as ac:
            return await asyncio.gather(
                *(
                    ac.post(
                        narrow.url + "/v1/chat/completions",
                        headers={"Authorization": f"Bearer {narrow.key}"},
                        json={"model": "narrow", "messages": [{"role": "user", "content": f"{i}"}]},
                    )
                    for i in range(4)
                )
            )

    statuses = sorted(r.status_code for r in asyncio.run(run()))
    assert statuses[0] == 200 and 503 in statuses
    refused = [r for r in asyncio.run(run()) if r.status_code == 503]
    assert refused and all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert refused[0].json()["error"]["code"] == "server_overloaded"


def test_beta_routes_go_to_the_upstreams_beta_path(narrow: Server, fresh_chaos: Chaos) -> None:
    # chaos serves no completions at all: its 404 names the path seekport called
    r = post(narrow, "/beta/completions", {"model": "narrow", "prompt": "def f(", "suffix": "x"})
    assert r.status_code == 404
    assert "/beta/completions" in r.json()["error"]["message"]
    plain = post(narrow, "/v1/completions", {"model": "narrow", "prompt": "def f("})
    assert "/beta" not in plain.json()["error"]["message"]


def test_bad_model_path_and_database_url_stop_the_start_with_the_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: {tmp_path}\nmodels:\n  - name: m\n    path: /nope.gguf\n")
    r = subprocess.run(
        [*SEEKPORT, "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "/nope.gguf" in r.stderr and "Traceback" not in r.stderr
    r2 = subprocess.run(
        [*SEEKPORT, "serve", "--config", str(cfg), "--database-url", "mysql://db/x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r2.returncode == 2 and "postgresql+asyncpg" in r2.stderr
