"""The Anthropic Messages API (``/anthropic``), end to end: the real server in front of the
suite's upstream (remote) and the bundled model (local), driven by the official ``anthropic``
package and by raw httpx where the bytes matter. What reaches the upstream is read back from
its ``/__requests`` record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import remote_models
from tests.e2e.test_remote_upstream import ANSWER, forwarded, usage_row
from tests.harness import BUNDLED, Chaos, Server, run_server, write_config

REMOTE = "deepseek-chat"


def client(server: Server, **kw: Any) -> anthropic.Anthropic:
    """The SDK as Claude Code configures it: base URL ``…/anthropic``; ``x-api-key`` auth."""
    return anthropic.Anthropic(
        base_url=server.url + "/anthropic",
        api_key=kw.pop("api_key", server.key),
        max_retries=0,
        timeout=120,
        **kw,
    )


def rid() -> str:
    return "test-" + uuid.uuid4().hex


def sse_events(r: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each SSE event of a response body."""
    out = []
    for raw in r.text.split("\n\n"):
        if not raw.strip():
            continue
        lines = dict(line.split(": ", 1) for line in raw.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def assert_anthropic_error(r: httpx.Response, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind
    assert body["error"]["message"]
    return str(body["error"]["message"])


# ---------------------------------------------------------------- remote upstream


def test_remote_text_answer_and_usage(server: Server, fresh_chaos: Chaos) -> None:
    """Non-stream: one text block with the upstream's answer, end_turn, Anthropic usage from the
    upstream's (3 prompt words + the system prompt's 2); the request went upstream as a chat
    request with the system prompt first; one usage record under the Anthropic route."""
    my_id = rid()
    with client(server) as c:
        msg = c.messages.create(
            model=REMOTE,
            max_tokens=100,
            system="be kind",
            messages=[{"role": "user", "content": "say something nice"}],
            extra_headers={"X-Request-ID": my_id, "anthropic-beta": "whatever-2025-01-01"},
        )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert msg.model == REMOTE
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == ANSWER  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.input_tokens == 5 and msg.usage.output_tokens == 16
    up = forwarded(fresh_chaos, server, my_id)
    sent = json.loads(up["body"])
    assert sent["messages"] == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "say something nice"},
    ]
    assert sent["max_tokens"] == 100 and sent["stream"] is False
    row = usage_row(server, my_id)
    assert row["route"] == "anthropic.messages" and row["status"] == 200
    assert row["model"] == REMOTE and row["completion_tokens"] == 16


def test_remote_stream_event_order(server: Server, fresh_chaos: Chaos) -> None:
    """Streaming: message_start, one text block (start, deltas, stop), message_delta with
    end_turn and usage, message_stop; no [DONE]; the SDK's accumulated message matches."""
    with httpx.stream(
        "POST",
        server.url + "/anthropic/v1/messages?beta=true",
        json={
            "model": REMOTE,
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "say something nice"}],
        },
        headers={"x-api-key": server.key, "anthropic-version": "2023-06-01"},
        timeout=30,
    ) as r:
        r.read()
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in r.text
    events = sse_events(r)
    names = [n for n, _ in events]
    assert all(n == d["type"] for n, d in events)
    assert names[0] == "message_start"
    assert names[1] == "content_block_start"
    assert set(names[2:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == ANSWER
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 16 and delta["usage"]["input_tokens"] == 3

    with (
        client(server) as c,
        c.messages.stream(
            model=REMOTE, max_tokens=64, messages=[{"role": "user", "content": "hi there"}]
        ) as s,
    ):
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    assert streamed == ANSWER
    assert final.content[0].text == ANSWER  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 16


async def test_async_client_create_and_stream(server: Server, fresh_chaos: Chaos) -> None:
    """The async client: create, and create(stream=True) iterated as raw events."""
    async with anthropic.AsyncAnthropic(
        base_url=server.url + "/anthropic", api_key=server.key, max_retries=0, timeout=30
    ) as c:
        msg = await c.messages.create(
            model=REMOTE, max_tokens=64, messages=[{"role": "user", "content": "hello"}]
        )
        stream = await c.messages.create(
            model=REMOTE,
            max_tokens=64,
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
        )
        kinds = []
        text = []
        async for ev in stream:
            kinds.append(ev.type)
            if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
                text.append(ev.delta.text)
    assert msg.content[0].text == ANSWER  # type: ignore[union-attr]
    assert "".join(text) == ANSWER
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]


def test_remote_max_tokens_stop_reason(server: Server, fresh_chaos: Chaos) -> None:
    with client(server) as c:
        msg = c.messages.create(
            model=REMOTE, max_tokens=4, messages=[{"role": "user", "content": "hello"}]
        )
        events = list(
            c.messages.create(
                model=REMOTE,
                max_tokens=4,
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
            )
        )
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 4
    last_delta = [e for e in events if e.type == "message_delta"][-1]
    assert last_delta.delta.stop_reason == "max_tokens"  # type: ignore[union-attr]
    assert events[-1].type == "message_stop"


def test_tool_use_round_trip_is_translated(server: Server, fresh_chaos: Chaos) -> None:
    """A multi-turn request with tools, a mid-conversation system message, thinking, tool_use
    and tool_result blocks reaches the upstream as the equivalent chat request."""
    my_id = rid()
    tools = [
        {
            "name": "get_weather",
            "description": "Weather of a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
        }
    ]
    messages: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "use the tool", "signature": "s1"},
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21 C"},
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]
    with client(server) as c:
        msg = c.messages.create(
            model=REMOTE,
            max_tokens=50,
            system=[{"type": "text", "text": "You are terse."}],
            messages=messages,
            tools=tools,  # type: ignore[arg-type]
            tool_choice={"type": "auto"},  # a forced choice while thinking is refused (below)
            stop_sequences=["END"],
            thinking={"type": "enabled", "budget_tokens": 1024},
            metadata={"user_id": '{"device_id":"abc","session":"x"}'},
            extra_headers={"X-Request-ID": my_id},
            # sampling fields are no longer in this SDK's signature: they travel as extra fields
            extra_body={
                "temperature": 0.5,
                "top_p": 0.9,
                "top_k": 40,
                "context_management": {"edits": []},
            },
        )
    assert msg.content[0].type == "text"
    sent = json.loads(forwarded(fresh_chaos, server, my_id)["body"])
    assert sent["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "reasoning_content": "use the tool",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 21 C"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": tools[0]["input_schema"],
            },
        }
    ]
    assert sent["tool_choice"] == "auto"
    assert sent["stop"] == ["END"]
    assert (sent["temperature"], sent["top_p"], sent["top_k"]) == (0.5, 0.9, 40)
    assert sent["thinking"] == {"type": "enabled"}
    assert sent["user_id"].startswith("u_") and len(sent["user_id"]) == 34
    assert "context_management" not in sent and "metadata" not in sent
    # forcing a tool while thinking is refused, as DeepSeek (and Anthropic) refuse it
    with pytest.raises(anthropic.BadRequestError, match="tool_choice"):
        client(server).messages.create(
            model=REMOTE,
            max_tokens=50,
            messages=[{"role": "user", "content": "weather in Paris?"}],
            tools=tools,  # type: ignore[arg-type]
            tool_choice={"type": "any"},
            thinking={"type": "enabled", "budget_tokens": 1024},
        )


def test_auth_by_bearer_and_x_api_key_and_401_shape(server: Server, fresh_chaos: Chaos) -> None:
    payload = {"model": REMOTE, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    url = server.url + "/anthropic/messages"
    ok = httpx.post(url, json=payload, headers={"Authorization": f"Bearer {server.key}"})
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    ok = httpx.post(url, json=payload, headers={"x-api-key": server.key})
    assert ok.status_code == 200
    assert_anthropic_error(httpx.post(url, json=payload), 401, "authentication_error")
    bad = httpx.post(url, json=payload, headers={"x-api-key": "sk-wrong"})
    assert_anthropic_error(bad, 401, "authentication_error")
    with client(server, api_key="sk-wrong") as c, pytest.raises(anthropic.AuthenticationError):
        c.messages.create(model=REMOTE, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    # Authorization wins when both are sent (DeepSeek's rule)
    both = httpx.post(
        url, json=payload, headers={"x-api-key": server.key, "Authorization": "Bearer sk-wrong"}
    )
    assert_anthropic_error(both, 401, "authentication_error")
    with anthropic.Anthropic(
        base_url=server.url + "/anthropic", auth_token=server.key, max_retries=0
    ) as c:  # Claude Code's ANTHROPIC_AUTH_TOKEN: Authorization: Bearer
        assert c.messages.create(
            model=REMOTE, max_tokens=8, messages=[{"role": "user", "content": "x"}]
        ).content


def test_errors_in_anthropic_shape(server: Server, fresh_chaos: Chaos) -> None:
    """Unknown model 404 not_found_error (the SDK raises NotFoundError); a missing max_tokens,
    a bad block and bad JSON 400 invalid_request_error; an upstream 429 keeps its status as
    rate_limit_error; an in-band error after the first byte is an ``error`` event."""
    url = server.url + "/anthropic/v1/messages"
    h = {"x-api-key": server.key}
    msgs = [{"role": "user", "content": "hi"}]
    r = httpx.post(url, json={"model": "gpt-9", "max_tokens": 8, "messages": msgs}, headers=h)
    assert "gpt-9" in assert_anthropic_error(r, 404, "not_found_error")
    with client(server) as c, pytest.raises(anthropic.NotFoundError):
        c.messages.create(model="no-such", max_tokens=8, messages=msgs)  # type: ignore[arg-type]
    r = httpx.post(url, json={"model": REMOTE, "messages": msgs}, headers=h)
    assert "max_tokens" in assert_anthropic_error(r, 400, "invalid_request_error")
    bad_block = [{"role": "user", "content": [{"type": "video", "url": "x"}]}]
    r = httpx.post(url, json={"model": REMOTE, "max_tokens": 8, "messages": bad_block}, headers=h)
    assert_anthropic_error(r, 400, "invalid_request_error")
    r = httpx.post(url, content=b"{not json", headers=h)
    assert_anthropic_error(r, 400, "invalid_request_error")
    payload = {"model": REMOTE, "max_tokens": 8, "messages": msgs}
    big = {
        "model": REMOTE,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "x" * 70_000}],
    }
    r = httpx.post(url, json=big, headers=h)  # the edge's body limit (65536 in conftest)
    assert_anthropic_error(r, 413, "request_too_large")
    fresh_chaos.control(script="error:429")
    assert_anthropic_error(httpx.post(url, json=payload, headers=h), 429, "rate_limit_error")
    fresh_chaos.control(script="error:503")
    r = httpx.post(url, json={**payload, "stream": True}, headers=h)
    assert_anthropic_error(r, 503, "overloaded_error")


def raw_stream(server: Server) -> list[tuple[str, dict[str, Any]]]:
    with httpx.stream(
        "POST",
        server.url + "/anthropic/v1/messages",
        json={
            "model": REMOTE,
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-api-key": server.key},
        timeout=30,
    ) as r:
        r.read()
    assert r.status_code == 200, r.text
    return sse_events(r)


def test_stream_ping_and_in_band_error(server: Server, fresh_chaos: Chaos) -> None:
    """Upstream keep-alives become ``ping`` events after ``message_start``; an upstream cut
    mid-stream ends the stream with an ``error`` event (no message_stop)."""
    fresh_chaos.control(keepalives=2, keepalive_ms=10)
    names = [n for n, _ in raw_stream(server)]
    assert names[0] == "message_start" and names[1] == "ping"
    assert names[-1] == "message_stop"
    fresh_chaos.control(reset=True)
    fresh_chaos.control(script="reset", stall_after_chunks=3)
    events = raw_stream(server)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and "content_block_delta" in names
    assert names[-1] == "error" and "message_stop" not in names
    assert events[-1][1]["type"] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"


def test_count_tokens(server: Server) -> None:
    with client(server) as c:
        short = c.messages.count_tokens(model=REMOTE, messages=[{"role": "user", "content": "hi"}])
        long = c.messages.count_tokens(
            model="claude-sonnet-5",
            system="a system prompt " * 20,
            messages=[{"role": "user", "content": "hi " * 200}],
        )
    assert 0 < short.input_tokens < long.input_tokens
    r = httpx.post(
        server.url + "/anthropic/v1/messages/count_tokens",
        json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": server.key},
    )
    assert_anthropic_error(r, 404, "not_found_error")


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory, chaos: Chaos) -> Iterator[Server]:
    """A remote-only server whose claude-* names map by config."""
    tmp: Path = tmp_path_factory.mktemp("anthropic-map")
    config = write_config(
        tmp,
        remote_models(chaos),
        anthropic_model_map={"claude-opus*": "renamed", "claude*": REMOTE},
    )
    with run_server(config, extra_env={"CHAOS_UPSTREAM_KEY": "sk-upstream-secret"}) as s:
        yield s


def test_claude_names_map_by_config(mapped: Server, fresh_chaos: Chaos) -> None:
    """claude-opus* → 'renamed', other claude* → deepseek-chat, a served name as is; the answer
    and the usage record name the served model."""
    with client(mapped) as c:
        for asked, served in (
            ("claude-opus-5", "renamed"),
            ("claude-sonnet-5", REMOTE),
            ("claude-haiku-5", REMOTE),
            ("renamed", "renamed"),
        ):
            my_id = rid()
            msg = c.messages.create(
                model=asked,
                max_tokens=8,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"X-Request-ID": my_id},
            )
            assert msg.model == served
            assert usage_row(mapped, my_id)["model"] == served


# ---------------------------------------------------------------- Claude Code

CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.197"  # pinned: the CLI's requests change often


@pytest.fixture(scope="session")
def claude_cli() -> Path:
    """Claude Code from npm, installed once into the user's cache (outside the work tree)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    prefix = cache / "seekport-tests" / CLAUDE_CODE.rsplit("@", 1)[1]
    cli = prefix / "node_modules" / ".bin" / "claude"
    if not cli.exists():
        subprocess.run(
            [
                npm,
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(prefix),
                CLAUDE_CODE,
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return cli


def test_claude_code_prints_the_answer(
    claude_cli: Path, mapped: Server, fresh_chaos: Chaos, tmp_path: Path
) -> None:
    """``claude -p`` with ANTHROPIC_BASE_URL at our /anthropic and the key as
    ANTHROPIC_AUTH_TOKEN prints the model's answer; its request (system prompt, tools,
    thinking) reached the upstream as a chat request with function tools."""
    fresh_chaos.control(record_body_bytes=1 << 20)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ANTHROPIC_BASE_URL": mapped.url + "/anthropic",
        "ANTHROPIC_AUTH_TOKEN": mapped.key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    p = subprocess.run(
        [str(claude_cli), "-p", "say hi"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ANSWER
    bodies = [json.loads(r["body"]) for r in fresh_chaos.requests(last=20) if r.get("body")]
    main = max(bodies, key=lambda b: len(b.get("tools") or []))
    assert main["stream"] is True
    assert main["messages"][0]["role"] == "system"
    assert "say hi" in json.dumps(main["messages"][1:])
    assert len(main["tools"]) > 5
    assert all(t["type"] == "function" and t["function"]["name"] for t in main["tools"])
    assert all(r["path"].endswith("/chat/completions") for r in fresh_chaos.requests(last=20))


# ---------------------------------------------------------------- bundled model


@pytest.mark.slow
def test_local_non_stream_and_stream(server: Server) -> None:
    """The bundled model answers through the Anthropic surface (a claude name maps to it, the
    first served model); stream and body agree on the shape; usage counts real tokens."""
    with client(server) as c:
        msg = c.messages.create(
            model="claude-sonnet-5",
            max_tokens=12,
            system="You are a helpful assistant.",
            messages=[{"role": "user", "content": "Say hello."}],
            extra_body={"temperature": 0},
        )
        assert msg.model == BUNDLED
        assert [b.type for b in msg.content] == ["text"] and msg.content[0].text  # type: ignore[union-attr]
        assert msg.stop_reason in ("end_turn", "max_tokens")
        assert msg.usage.input_tokens > 5 and 0 < msg.usage.output_tokens <= 12
        with c.messages.stream(
            model=BUNDLED,
            max_tokens=12,
            system="You are a helpful assistant.",
            messages=[{"role": "user", "content": "Say hello."}],
            extra_body={"temperature": 0},
        ) as s:
            kinds = [e.type for e in s]
            final = s.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "message_delta" in kinds
    assert final.content[0].text == msg.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == msg.usage.output_tokens


@pytest.mark.slow
def test_local_count_tokens_is_the_real_prompt_length(server: Server) -> None:
    """For the bundled model count_tokens is its tokenizer's count of the templated prompt:
    exactly the prompt tokens a real answer to the same request is billed for."""
    words = " ".join(f"w{uuid.uuid4().hex[:6]}" for _ in range(30))  # no cached prefix
    messages: Any = [{"role": "user", "content": f"Repeat: {words}"}]
    system = "You count things."
    with client(server) as c:
        counted = c.messages.count_tokens(model=BUNDLED, system=system, messages=messages)
        msg = c.messages.create(model=BUNDLED, max_tokens=1, system=system, messages=messages)
    billed = msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0)
    assert counted.input_tokens == billed > 30


@pytest.mark.slow
def test_local_refuses_images_clearly(server: Server) -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    r = httpx.post(
        server.url + "/anthropic/v1/messages",
        json={
            "model": BUNDLED,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": [image, {"type": "text", "text": "what?"}]}],
        },
        headers={"x-api-key": server.key},
    )
    assert "image" in assert_anthropic_error(r, 400, "invalid_request_error")


@pytest.mark.slow
def test_local_max_tokens_is_a_ceiling(server: Server) -> None:
    """Anthropic's max_tokens is required and clients size it by their own model tables
    (Claude Code asks 32000+): a local model answers within what it allows instead of
    refusing. The chat route keeps DeepSeek's 400 for a max_tokens beyond the model's."""
    with client(server) as c:
        msg = c.messages.create(
            model=BUNDLED,
            max_tokens=64000,
            stop_sequences=["."],
            messages=[{"role": "user", "content": "Say hello."}],
            extra_body={"temperature": 0},
        )
    assert msg.stop_reason in ("end_turn", "stop_sequence") and msg.content
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={
            "model": BUNDLED,
            "max_tokens": 64000,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"Authorization": f"Bearer {server.key}"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"


@pytest.mark.slow
def test_local_stop_sequence_is_reported(server: Server) -> None:
    """On the local engine the matched stop string is known: Anthropic's ``stop_reason`` is
    ``stop_sequence`` with that string, non-stream and stream; the string is not in the text."""
    kwargs: dict[str, Any] = {
        "model": BUNDLED,
        "max_tokens": 64,
        "stop_sequences": ["zzzq", " "],  # any answer of two words has a space
        "messages": [{"role": "user", "content": "Say hello to my friend Anna."}],
        "extra_body": {"temperature": 0},
    }
    with client(server) as c:
        msg = c.messages.create(**kwargs)
        assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", " ")
        assert all(" " not in b.text for b in msg.content if b.type == "text")
        with c.messages.stream(**kwargs) as stream:
            final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", " ")


@pytest.mark.slow
def test_claude_code_on_the_bundled_model(claude_cli: Path, server: Server, tmp_path: Path) -> None:
    """Claude Code against the bundled model (the first model, so claude-* names map to it).
    Its full request (tools and system prompt, ~21,000 tokens) cannot fit a 4K context: the
    documented small setup (no tools, a short system prompt, a short output ceiling) can."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ANTHROPIC_BASE_URL": server.url + "/anthropic",
        "ANTHROPIC_AUTH_TOKEN": server.key,
        # as the README's setup: room for a rambling small model (Claude Code fails an answer
        # that reaches its output ceiling)
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "256",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    args = ["-p", "--bare", "--tools", "", "--system-prompt", "Answer in one sentence."]
    for _ in range(3):  # a 135M model samples: now and then it rambles past the ceiling
        p = subprocess.run(
            [str(claude_cli), *args, "Say hello."],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if "output token maximum" not in p.stdout + p.stderr:
            break  # any other outcome is judged below
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() and "API Error" not in p.stdout
