"""Upstream shapes chaos_upstream does not produce, played by a tiny stdlib server:

* recent vLLM's reasoning field (``reasoning``, not ``reasoning_content``, as
  ``vllm serve ... --reasoning-parser deepseek_r1`` sends since late 2025): seekport hands it
  to clients as DeepSeek's ``reasoning_content``, streamed and not;
* DeepSeek's ``: keep-alive`` comments while a request is queued: passed on as they come.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import Server, openai_client, run_server, write_config

THINK = ["The user greets me", ", so I greet back."]
ANSWER = ["Hello", "!"]
QUEUED_KEEPALIVES = 3
KEEPALIVE_GAP_S = 0.4


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-vllm",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "r1-distill",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class VllmLike(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if req.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            if req["messages"][0]["content"] == "queued":
                for _ in range(QUEUED_KEEPALIVES):  # DeepSeek while the request waits
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    time.sleep(KEEPALIVE_GAP_S)
            self.wfile.write(chunk({"role": "assistant", "content": ""}))
            for piece in THINK:
                self.wfile.write(chunk({"reasoning": piece}))
            for piece in ANSWER:
                self.wfile.write(chunk({"content": piece}))
            self.wfile.write(chunk({}, "stop"))
            usage = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
            last = {"id": "chatcmpl-vllm", "object": "chat.completion.chunk", "created": 1}
            last |= {"model": "r1-distill", "choices": [], "usage": usage}
            self.wfile.write(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
            return
        body = json.dumps(
            {
                "id": "chatcmpl-vllm",
                "object": "chat.completion",
                "created": 1,
                "model": "r1-distill",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "".join(ANSWER),
                            "reasoning": "".join(THINK),
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def vllm_like() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), VllmLike)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    thread.join(10)
    httpd.server_close()


@pytest.fixture(scope="module")
def gateway(vllm_like: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("reasoning-upstream")
    models = [
        {"name": "r1", "backend": "openai", "base_url": vllm_like, "upstream_model": "r1-distill"}
    ]
    # one exchange per request: keep-alives pass through as they come only when no retry
    # could follow (a retry holds them until the first content)
    with run_server(write_config(tmp, models, routing={"max_retries": 0})) as s:
        yield s


def test_non_stream_reasoning_becomes_reasoning_content(gateway: Server) -> None:
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway.key}"},
        json={"model": "r1", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert r.status_code == 200
    message = r.json()["choices"][0]["message"]
    assert message["reasoning_content"] == "".join(THINK)
    assert "reasoning" not in message
    assert message["content"] == "".join(ANSWER)
    assert r.json()["model"] == "r1"


def test_streamed_reasoning_becomes_reasoning_content(gateway: Server) -> None:
    client = openai_client(gateway.url + "/v1", gateway.key)
    reasoning, content = [], []
    for ev in client.chat.completions.create(
        model="r1", messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        if not ev.choices:
            continue
        delta = ev.choices[0].delta.model_dump()
        assert "reasoning" not in delta or delta["reasoning"] is None
        if delta.get("reasoning_content"):
            reasoning.append(delta["reasoning_content"])
        if delta.get("content"):
            content.append(delta["content"])
    assert reasoning == THINK
    assert content == ANSWER


def test_upstream_keepalives_while_queued_reach_the_client_as_they_come(gateway: Server) -> None:
    t0 = time.perf_counter()
    lines: list[tuple[float, str]] = []
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway.key}"},
        json={"model": "r1", "messages": [{"role": "user", "content": "queued"}], "stream": True},
        timeout=30,
    ) as r:
        assert r.status_code == 200
        lines = [(time.perf_counter() - t0, line) for line in r.iter_lines() if line]
    first_data = next(t for t, line in lines if line.startswith("data: "))
    keepalives = [t for t, line in lines if line == ": keep-alive"]
    assert len(keepalives) == QUEUED_KEEPALIVES
    # each arrived when the upstream sent it, not batched with the first data event
    assert keepalives[0] < first_data - KEEPALIVE_GAP_S
    assert lines[-1][1] == "data: [DONE]"
