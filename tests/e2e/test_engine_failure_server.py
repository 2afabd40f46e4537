"""An engine failure on the real server: seekport's app under uvicorn, in this process, on
127.0.0.1 with the bundled model, and a fault injected into that model's runner (its
``execute`` raises once; its ``reset`` is held so the recovery window can be observed).
Real HTTP clients see: the open stream ends with an in-band ``engine_failed`` error, the
queued non-stream request gets 503, ``/health/ready`` is 503 until the engine is back, and the
restarted engine answers exactly as before (its KV cache was cleared, not left half-written).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from seekport.api import create_app
from seekport.config.loader import load_settings
from seekport.engine.runners.llamacpp import LlamaCppRunner
from seekport.engine.scheduler import StepPlan
from tests.harness import BUNDLED, free_port, run_cli, wait_http, write_config

pytestmark = pytest.mark.slow


class Fault:
    """Wraps a live runner: ``arm()`` makes its next step raise; ``reset`` waits for
    ``release`` so the test sees the engine while it recovers."""

    def __init__(self, runner: LlamaCppRunner) -> None:
        self.runner = runner
        self.armed = threading.Event()
        self.resetting = threading.Event()
        self.release = threading.Event()
        self._execute, self._reset = runner.execute, runner.reset
        runner.execute = self.execute  # type: ignore[method-assign]
        runner.reset = self.reset  # type: ignore[method-assign]

    def execute(self, plan: StepPlan) -> Any:
        if plan.work and self.armed.is_set():
            self.armed.clear()
            raise RuntimeError("injected llama.cpp failure")
        return self._execute(plan)

    def reset(self) -> None:
        self.resetting.set()
        self.release.wait(30)
        self._reset()


@contextlib.contextmanager
def in_process_server(tmp: Path) -> Iterator[tuple[str, str, Fault]]:
    model = {
        "name": BUNDLED,
        "backend": "local",
        "n_threads": 1,
        "context_length": 1024,
        "max_num_seqs": 1,
        "max_waiting": 4,
    }
    config = write_config(tmp, [model], log_level="warning")
    key = run_cli(config, "keys", "create", "--name", "t", "--role", "superadmin").stdout.split()[
        -1
    ]
    app = create_app(load_settings(config))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health/ready", timeout_s=60)
        backend = app.state.services.chat.deployment_for(BUNDLED).backend
        yield url, key, Fault(backend._runner)
    finally:
        server.should_exit = True
        thread.join(30)


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": BUNDLED, "messages": [{"role": "user", "content": content}], **extra}


def test_an_engine_failure_ends_streams_with_503_and_the_engine_serves_again(
    tmp_path: Path,
) -> None:
    with in_process_server(tmp_path) as (url, key, fault), ThreadPoolExecutor(2) as pool:
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        probe = chat("Name three colours", max_tokens=16, temperature=0)
        before = client.post("/v1/chat/completions", json=probe).json()
        reference = before["choices"][0]["message"]["content"]
        running = threading.Event()

        def long_stream() -> list[str]:
            body = chat("Count upwards", max_tokens=900, logit_bias={"2": -100}, stream=True)
            lines = []
            with client.stream("POST", "/v1/chat/completions", json=body) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    lines.append(line)
                    if '"content":"' in line and '"content":""' not in line:
                        running.set()
            return lines

        streamed = pool.submit(long_stream)
        assert running.wait(60)
        queued = pool.submit(client.post, "/v1/chat/completions", json=chat("Hi", max_tokens=4))
        fault.armed.set()
        lines = streamed.result(60)
        data = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
        errors = [d["error"] for d in data if "error" in d]
        assert len(errors) == 1 and errors[0]["code"] == "engine_failed", lines[-3:]
        assert lines[-1] != "data: [DONE]"
        refused = queued.result(60)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "engine_failed"
        assert refused.headers["retry-after"] == "1"

        assert fault.resetting.wait(10)  # the engine is recovering: not ready, new work 503
        assert httpx.get(f"{url}/health/ready", timeout=10).status_code == 503
        meanwhile = client.post("/v1/chat/completions", json=probe)
        assert meanwhile.status_code == 503
        assert meanwhile.json()["error"]["code"] == "engine_failed"
        fault.release.set()

        wait_http(f"{url}/health/ready", timeout_s=30)
        after = client.post("/v1/chat/completions", json=probe)
        assert after.status_code == 200, after.text
        assert after.json()["choices"][0]["message"]["content"] == reference
        client.close()
