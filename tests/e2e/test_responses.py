"""The Responses API (``/v1/responses``), end to end: the real server in front of the suite's
upstream (remote) and the bundled model (local), driven by the official ``openai`` package and
by raw httpx where the bytes matter. What reaches the upstream is read back from its
``/__requests`` record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.test_remote_upstream import ANSWER, assert_error_body, forwarded, usage_row
from tests.harness import BUNDLED, Chaos, Server

REMOTE = "deepseek-chat"


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=120
    )


def rid() -> str:
    return "test-" + uuid.uuid4().hex


def sse_events(r: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each SSE event of a response body; comments skipped."""
    out = []
    for raw in r.text.split("\n\n"):
        if not raw.strip() or raw.startswith(":"):
            continue
        lines = dict(line.split(": ", 1) for line in raw.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def sent(chaos: Chaos, server: Server, my_id: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(forwarded(chaos, server, my_id)["body"])
    return body


# ---------------------------------------------------------------- remote upstream


def test_string_input_with_instructions(server: Server, fresh_chaos: Chaos) -> None:
    """Non-stream: one message item with the upstream's answer as output_text, status completed,
    Responses usage; the upstream got a chat request (instructions → system message first,
    max_output_tokens → max_tokens, reasoning.effort none → thinking disabled, text.format
    json_schema → response_format); one usage record under the responses route."""
    my_id = rid()
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    with client(server) as c:
        r = c.responses.create(
            model=REMOTE,
            instructions="be kind",
            input="say something nice",
            max_output_tokens=100,
            temperature=0.5,
            reasoning={"effort": "none"},
            text={"format": {"type": "json_schema", "name": "out", "schema": schema}},
            store=True,  # accepted, ignored
            extra_headers={"X-Request-ID": my_id},
            extra_body={"some_future_field": 1},
        )
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.status == "completed" and r.model == REMOTE and r.incomplete_details is None
    assert [item.type for item in r.output] == ["message"]
    assert r.output_text == ANSWER
    assert r.usage is not None
    assert r.usage.input_tokens == 5 and r.usage.output_tokens == 16
    assert r.usage.total_tokens == 21 and r.usage.input_tokens_details.cached_tokens == 0
    up = sent(fresh_chaos, server, my_id)
    assert up["messages"] == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "say something nice"},
    ]
    assert up["max_tokens"] == 100 and up["stream"] is False and up["temperature"] == 0.5
    assert up["thinking"] == {"type": "disabled"}
    assert up["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema},
    }
    assert "some_future_field" not in up and "store" not in up and "input" not in up
    row = usage_row(server, my_id)
    assert row["route"] == "responses" and row["status"] == 200
    assert row["model"] == REMOTE and row["completion_tokens"] == 16


def test_function_call_round_trip_is_translated(server: Server, fresh_chaos: Chaos) -> None:
    """Items: a user message (input_text parts), a reasoning item, two function_call items and
    their function_call_output items reach the upstream as the equivalent chat conversation:
    one assistant message with both tool_calls (and the reasoning as reasoning_content), then
    the tool messages; flat function tools become chat tools, tool_choice and effort pass."""
    my_id = rid()
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    items: list[Any] = [
        {"role": "developer", "content": "You are terse."},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "weather?"}],
        },
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "use the tool"}],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {
            "type": "function_call",
            "call_id": "call_2",
            "name": "get_weather",
            "arguments": '{"city":"Rome"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": "rain"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    with client(server) as c:
        r = c.responses.create(
            model=REMOTE,
            input=items,
            tools=[
                {
                    "type": "function",
                    "name": "get_weather",
                    "description": "Weather of a city",
                    "parameters": params,
                    "strict": False,
                },
                {"type": "web_search"},  # a built-in tool: dropped
            ],
            tool_choice="auto",
            reasoning={"effort": "high"},
            extra_headers={"X-Request-ID": my_id},
        )
    assert r.output_text == ANSWER
    up = sent(fresh_chaos, server, my_id)
    calls = [
        {
            "id": cid,
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": json.dumps({"city": city}, separators=(",", ":")),
            },
        }
        for cid, city in (("call_1", "Paris"), ("call_2", "Rome"))
    ]
    assert up["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": calls,
            "reasoning_content": "use the tool",
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    assert up["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": params,
                "description": "Weather of a city",
                "strict": False,
            },
        }
    ]
    assert up["tool_choice"] == "auto" and up["reasoning_effort"] == "high"


def test_custom_tool_round_trip_is_translated(server: Server, fresh_chaos: Chaos) -> None:
    """Codex's freeform apply_patch: the custom tool reaches the upstream as a function of one
    string ``input``, its earlier call and output as a tool call and a tool message."""
    my_id = rid()
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"
    r = httpx.post(
        server.url + "/v1/responses",
        json={
            "model": REMOTE,
            "tools": [
                {
                    "type": "custom",
                    "name": "apply_patch",
                    "description": "Edit files",
                    "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
                }
            ],
            "input": [
                {"role": "user", "content": "add a.txt"},
                {
                    "type": "custom_tool_call",
                    "call_id": "call_p",
                    "name": "apply_patch",
                    "input": patch,
                },
                {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Success."},
            ],
        },
        headers={"authorization": f"Bearer {server.key}", "X-Request-ID": my_id},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["output"][0]["content"][0]["text"] == ANSWER
    up = sent(fresh_chaos, server, my_id)
    fn = up["tools"][0]["function"]
    assert fn["name"] == "apply_patch" and fn["description"] == "Edit files"
    assert fn["parameters"]["properties"]["input"]["type"] == "string"
    call = up["messages"][1]["tool_calls"][0]
    assert call["id"] == "call_p" and json.loads(call["function"]["arguments"]) == {"input": patch}
    assert up["messages"][2] == {"role": "tool", "tool_call_id": "call_p", "content": "Success."}


def test_images_reach_remote_upstreams_only(server: Server, fresh_chaos: Chaos) -> None:
    """input_image parts go to a remote upstream as image_url chat parts; the bundled model
    (text only) refuses them with a clear 400."""
    my_id = rid()
    content: list[Any] = [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
    ]
    with client(server) as c:
        r = c.responses.create(
            model=REMOTE,
            input=[{"role": "user", "content": content}],
            extra_headers={"X-Request-ID": my_id},
        )
        assert r.output_text == ANSWER
        with pytest.raises(openai.BadRequestError) as refused:
            c.responses.create(model=BUNDLED, input=[{"role": "user", "content": content}])
    assert sent(fresh_chaos, server, my_id)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                },
            ],
        }
    ]
    assert "text only" in str(refused.value)


def test_stream_events_and_final_response(server: Server, fresh_chaos: Chaos) -> None:
    """Raw bytes: the semantic events in order, named as their type, numbered in sequence, no
    [DONE]; the text deltas make the answer; response.completed (last) carries the output and
    usage. Then the SDK's ``responses.stream``: text deltas and the same final response."""
    with httpx.stream(
        "POST",
        server.url + "/responses",
        json={"model": REMOTE, "input": "say something nice", "stream": True},
        headers={"authorization": f"Bearer {server.key}"},
        timeout=30,
    ) as r:
        r.read()
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in r.text
    events = sse_events(r)
    names = [n for n, _ in events]
    assert all(n == d["type"] for n, d in events)
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert set(names[4:-4]) == {"response.output_text.delta"}
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    assert text == ANSWER
    final = events[-1][1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == ANSWER
    assert final["usage"]["output_tokens"] == 16 and final["usage"]["input_tokens"] == 3
    assert events[0][1]["response"]["status"] == "in_progress"

    with (
        client(server) as c,
        c.responses.stream(model=REMOTE, input="hi there") as s,
    ):
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        response = s.get_final_response()
    assert "".join(deltas) == ANSWER
    assert response.output_text == ANSWER and response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens == 16


def raw_stream(server: Server) -> httpx.Response:
    with httpx.stream(
        "POST",
        server.url + "/v1/responses",
        json={"model": REMOTE, "input": "hi", "stream": True},
        headers={"authorization": f"Bearer {server.key}"},
        timeout=30,
    ) as r:
        r.read()
    assert r.status_code == 200, r.text
    return r


def test_stream_keepalive_and_in_band_failure(server: Server, fresh_chaos: Chaos) -> None:
    """Upstream keep-alives are SSE comments the parsers skip; an upstream cut mid-stream ends
    the stream with response.failed (OpenAI's error code and message), never response.completed."""
    fresh_chaos.control(keepalives=2, keepalive_ms=10)
    r = raw_stream(server)
    assert r.text.count(": keep-alive\n\n") >= 1
    names = [n for n, _ in sse_events(r)]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    fresh_chaos.control(reset=True)
    fresh_chaos.control(script="reset", stall_after_chunks=3)
    events = sse_events(raw_stream(server))
    names = [n for n, _ in events]
    assert "response.output_text.delta" in names and "response.completed" not in names
    assert names[-1] == "response.failed"
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"]


def test_max_output_tokens_is_incomplete(server: Server, fresh_chaos: Chaos) -> None:
    """Cut at max_output_tokens: status incomplete with its reason, body and stream alike."""
    with client(server) as c:
        r = c.responses.create(model=REMOTE, input="hello", max_output_tokens=4)
        events = list(
            c.responses.create(model=REMOTE, input="hello", max_output_tokens=4, stream=True)
        )
    assert r.status == "incomplete"
    assert r.incomplete_details is not None and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage is not None and r.usage.output_tokens == 4
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"


def test_stateless_and_errors_in_openai_shape(server: Server, fresh_chaos: Chaos) -> None:
    """previous_response_id is a 400 that says why; a bad item, an unknown model and a missing
    key are OpenAI-shaped errors; the SDK raises on them as it does for chat."""
    url = server.url + "/v1/responses"
    auth = {"authorization": f"Bearer {server.key}"}
    r = httpx.post(
        url,
        json={"model": REMOTE, "input": "hi", "previous_response_id": "resp_1"},
        headers=auth,
    )
    err = assert_error_body(r, 400)
    assert err["param"] == "previous_response_id" and "stateless" in err["message"]
    r = httpx.post(
        url, json={"model": REMOTE, "input": [{"type": "image_generation_call"}]}, headers=auth
    )
    assert assert_error_body(r, 400)["param"] == "input.0.type"
    r = httpx.post(url, json={"model": "no-such-model", "input": "hi"}, headers=auth)
    assert assert_error_body(r, 404)["code"] == "model_not_found"
    assert_error_body(httpx.post(url, json={"model": REMOTE, "input": "hi"}), 401)
    with client(server) as c, pytest.raises(openai.BadRequestError):
        c.responses.create(model=REMOTE, input="hi", previous_response_id="resp_1")


# ---------------------------------------------------------------- the bundled model


@pytest.mark.slow
def test_local_create_and_stream(server: Server) -> None:
    """The bundled model answers through the Responses surface; stream and body agree; usage
    counts real tokens."""
    with client(server) as c:
        r = c.responses.create(
            model=BUNDLED,
            instructions="You are a helpful assistant.",
            input="Say hello.",
            max_output_tokens=12,
            temperature=0,
        )
        assert r.model == BUNDLED and r.output_text
        assert r.status in ("completed", "incomplete")
        assert r.usage is not None
        assert r.usage.input_tokens > 5 and 0 < r.usage.output_tokens <= 12
        with c.responses.stream(
            model=BUNDLED,
            instructions="You are a helpful assistant.",
            input="Say hello.",
            max_output_tokens=12,
            temperature=0,
        ) as s:
            events = list(s)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    last = events[-1]
    # the SDK's get_final_response() wants response.completed; a cut answer ends incomplete
    assert last.type in ("response.completed", "response.incomplete")
    final = last.response
    assert "response.output_text.delta" in kinds
    assert final.output_text == r.output_text
    assert final.usage is not None and final.usage.output_tokens == r.usage.output_tokens


# ---------------------------------------------------------------- Codex CLI

CODEX = "@openai/codex@0.171.0"  # pinned: the CLI's requests change often


@pytest.fixture(scope="session")
def codex_cli() -> Path:
    """Codex CLI from npm, installed once into the user's cache (outside the work tree)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    prefix = cache / "seekport-tests" / ("codex-" + CODEX.rsplit("@", 1)[1])
    cli = prefix / "node_modules" / ".bin" / "codex"
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
                CODEX,
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return cli


def test_codex_exec_prints_the_answer(
    codex_cli: Path, server: Server, fresh_chaos: Chaos, tmp_path: Path
) -> None:
    """One ``codex exec`` turn through a ``model_providers`` entry with ``wire_api =
    "responses"`` prints the model's answer; its Responses request (instructions, input items,
    tools) reached the upstream as a streamed chat request."""
    fresh_chaos.control(record_body_bytes=1 << 20)
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'model = "{REMOTE}"\n'
        'model_provider = "seekport"\n'
        "[model_providers.seekport]\n"
        'name = "seekport"\n'
        f'base_url = "{server.url}/v1"\n'
        'env_key = "SEEKPORT_TEST_KEY"\n'
        'wire_api = "responses"\n'
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "SEEKPORT_TEST_KEY": server.key,
    }
    last = tmp_path / "last.txt"
    p = subprocess.run(
        [
            str(codex_cli),
            "exec",
            "--skip-git-repo-check",
            "--output-last-message",
            str(last),
            "say hi",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert p.returncode == 0, p.stderr + p.stdout
    assert last.read_text().strip() == ANSWER
    bodies = [json.loads(r["body"]) for r in fresh_chaos.requests(last=20) if r.get("body")]
    assert len(bodies) == 1  # one turn, one upstream call
    main = bodies[0]
    assert main["stream"] is True
    assert main["messages"][0]["role"] == "system"
    assert "say hi" in json.dumps(main["messages"][1:])
    assert all(r["path"].endswith("/chat/completions") for r in fresh_chaos.requests(last=20))
    assert main["tool_choice"] == "auto"
    names = [t["function"]["name"] for t in main["tools"]]
    assert "exec_command" in names  # Codex's function tools, flat in its request
    assert all(t["type"] == "function" and t["function"]["parameters"] for t in main["tools"])
