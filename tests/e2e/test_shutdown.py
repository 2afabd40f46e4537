"""SIGTERM with streams open: an answer that can finish within ``shutdown_grace_s`` finishes
([DONE]); one that cannot ends with an in-band 503 instead of a cut connection; each leaves
exactly one usage record; the process exits 0 in bounded time. Local engine and remote
upstream alike."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.harness import BUNDLED, Server, run_chaos, run_server, write_config

GRACE_S = 2.0


class Stream(threading.Thread):
    """One streamed chat request read to its end in the background."""

    def __init__(self, server: Server, model: str, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.server, self.model, self.max_tokens = server, model, max_tokens
        self.rid = "sd-" + uuid.uuid4().hex
        self.events: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Count slowly."}],
            "max_tokens": self.max_tokens,
            "stream": True,
        }
        if self.model == BUNDLED:
            body["logit_bias"] = {"2": -100}  # no early end of turn: it runs to max_tokens
        headers = {"Authorization": f"Bearer {self.server.key}", "X-Request-ID": self.rid}
        try:
            with httpx.stream(
                "POST",
                self.server.url + "/v1/chat/completions",
                json=body,
                headers=headers,
                timeout=60,
            ) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line[6:])
        except BaseException as exc:  # reported by the test
            self.error = exc

    def wait_for_events(self, n: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.events) < n:
            assert time.monotonic() < deadline, f"{self.model}: only {len(self.events)} events"
            assert self.is_alive(), f"{self.model} ended early: {self.events[-2:]}"
            time.sleep(0.05)


def rows(db: Path) -> dict[str, list[Any]]:
    con = sqlite3.connect(db)
    try:
        out: dict[str, list[Any]] = {}
        for rid, status, code in con.execute(
            "SELECT client_request_id, status, error_code FROM usage_records "
            "WHERE client_request_id LIKE 'sd-%'"
        ):
            out.setdefault(rid, []).append((status, code))
        return out
    finally:
        con.close()


@pytest.mark.slow
def test_sigterm_lets_short_answers_finish_and_ends_long_ones_with_a_503(tmp_path: Path) -> None:
    with run_chaos(tmp_path, "--drip-ms", "100", "--tokens", "400", name="drip") as chaos:
        models = [
            {"name": BUNDLED, "backend": "local", "n_threads": 1, "context_length": 2048},
            {"name": "remote", "backend": "openai", "base_url": chaos.url},
        ]
        config = write_config(tmp_path, models, shutdown_grace_s=GRACE_S)
        with run_server(config) as server:
            local_long = Stream(server, BUNDLED, 1500)  # far longer than the grace
            remote_long = Stream(server, "remote", 400)  # 40 s of drip
            remote_short = Stream(server, "remote", 5)  # 0.5 s: within the grace
            for s in (local_long, remote_long):
                s.start()
                s.wait_for_events(3)
            remote_short.start()
            remote_short.wait_for_events(1)
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            # uvicorn re-raises the signal once it has shut down gracefully
            assert server.proc.wait(timeout=GRACE_S + 30) in (0, -signal.SIGTERM)
            exited_after = time.monotonic() - t0
            for s in (local_long, remote_long, remote_short):
                s.join(10)
                assert not s.is_alive() and s.error is None, (s.model, s.error)
        assert exited_after < GRACE_S + 15

        assert remote_short.events[-1] == "[DONE]"
        for s in (local_long, remote_long):
            assert "[DONE]" not in s.events, s.model
            err = orjson.loads(s.events[-1])["error"]
            assert err["code"] == "server_overloaded", (s.model, err)
            assert len(s.events) > 3  # it had been answering: cut, not refused
        # one record each, committed before the process exited
        recorded = rows(tmp_path / "data" / "seekport.db")
        assert recorded == {
            remote_short.rid: [(200, None)],
            local_long.rid: [(503, "server_overloaded")],
            remote_long.rid: [(503, "server_overloaded")],
        }
