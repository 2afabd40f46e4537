"""Waiting for the local engine on the real model: SSE keep-alives while queued, and the
queue-wait limit (503 for a body, an in-band error in a stream), after which the request has
left the line."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import BUNDLED, Server, run_server, write_config

pytestmark = pytest.mark.slow

MAX_WAIT_S = 1.5


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("queueing")
    model = {
        "name": BUNDLED,
        "backend": "local",
        "n_threads": 1,
        "context_length": 4096,
        "max_num_seqs": 1,
        "max_waiting": 4,
        "keepalive_interval_s": 0.2,
        "max_queue_wait_s": MAX_WAIT_S,
    }
    with run_server(write_config(tmp, [model])) as s:
        yield s


def body(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": BUNDLED, "messages": [{"role": "user", "content": content}], **extra}


class Blocker:
    """A long stream that holds the only slot until ``release()``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.started = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        req = body("Count upwards from one.", max_tokens=3000, logit_bias={"2": -100})
        with httpx.stream(
            "POST",
            self.server.url + "/v1/chat/completions",
            json={**req, "stream": True},
            headers={"Authorization": f"Bearer {self.server.key}"},
            timeout=120,
        ) as r:
            for line in r.iter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    self.started.set()
                if self.stop.is_set():
                    return  # hang up: the engine aborts the sequence

    def __enter__(self) -> Blocker:
        self.thread.start()
        assert self.started.wait(60), "the blocking stream never started"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def test_a_queued_stream_gets_keepalives_then_an_overloaded_error(one_slot: Server) -> None:
    with Blocker(one_slot):
        t0 = time.perf_counter()
        events: list[tuple[float, str]] = []
        with httpx.stream(
            "POST",
            one_slot.url + "/v1/chat/completions",
            json={**body("Hello", max_tokens=8), "stream": True},
            headers={"Authorization": f"Bearer {one_slot.key}"},
            timeout=60,
        ) as r:
            assert r.status_code == 200
            events = [(time.perf_counter() - t0, line) for line in r.iter_lines() if line]
    keepalives = [t for t, line in events if line == ": keep-alive"]
    assert len(keepalives) >= 4  # every 0.2 s while it waited
    assert all(t < MAX_WAIT_S + 0.5 for t in keepalives)
    data = [json.loads(line[6:]) for _, line in events if line.startswith("data: {")]
    assert not any(
        c["choices"] and c["choices"][0]["delta"].get("content") for c in data if "choices" in c
    )  # it never ran
    errors = [d["error"] for d in data if "error" in d]
    assert len(errors) == 1 and errors[0]["code"] == "server_overloaded"
    assert "waited 1.5 s" in errors[0]["message"]
    assert events[-1][1] != "data: [DONE]"
    assert events[-1][0] >= MAX_WAIT_S


def waiting(server: Server) -> float:
    text = httpx.get(
        server.url + "/metrics", timeout=10, headers={"Authorization": f"Bearer {server.key}"}
    ).text
    line = next(x for x in text.splitlines() if x.startswith("seekport_engine_waiting{"))
    return float(line.rsplit(" ", 1)[1])


def test_a_queued_body_request_gets_503_after_the_wait_limit(one_slot: Server) -> None:
    with Blocker(one_slot):
        t0 = time.perf_counter()
        r = httpx.post(
            one_slot.url + "/v1/chat/completions",
            json=body("Hello", max_tokens=8),
            headers={"Authorization": f"Bearer {one_slot.key}"},
            timeout=60,
        )
        waited = time.perf_counter() - t0
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "server_overloaded"
        assert waited >= MAX_WAIT_S
        # the expired request left the line at the engine's next step (the blocker runs on)
        for _ in range(50):
            if waiting(one_slot) == 0:
                break
            time.sleep(0.1)
        assert waiting(one_slot) == 0
    ok = httpx.post(
        one_slot.url + "/v1/chat/completions",
        json=body("Hello", max_tokens=4),
        headers={"Authorization": f"Bearer {one_slot.key}"},
        timeout=60,
    )
    assert ok.status_code == 200
    assert ok.json()["usage"]["completion_tokens"] >= 1
