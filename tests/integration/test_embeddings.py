"""``/v1/embeddings`` from a remote OpenAI-compatible upstream (the suite's own), in-process:
the official ``openai`` package's default (base64) and floats, batches, errors, records."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from seekport.api import create_app
from seekport.config import load_settings
from tests.harness import Chaos
from tests.integration.conftest import App
from tests.integration.test_api_contract import assert_error, usage_rows

EMB = "/v1/embeddings"


def upstream_vector(text: str) -> list[float]:
    """What the suite's upstream answers for ``text`` (tests/upstream.py)."""
    raw = [b - 127.5 for b in hashlib.sha256(text.encode()).digest()[:8]]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


@pytest.fixture
async def emb_app(tmp_path: Path, chaos: Chaos) -> AsyncIterator[App]:
    settings = load_settings(
        overrides={
            "data_dir": tmp_path / "data",
            "models": [
                {"name": "deepseek-chat", "backend": "openai", "base_url": chaos.url},
                {
                    "name": "text-embedding-3-small",
                    "backend": "openai",
                    "kind": "embedding",
                    "base_url": chaos.url,
                    "upstream_model": "embed-up",
                },
            ],
        }
    )
    fastapi_app = create_app(settings)
    async with fastapi_app.router.lifespan_context(fastapi_app):
        services = fastapi_app.state.services
        _record, key = await services.keys.create("integration", "superadmin")
        transport = httpx.ASGITransport(app=fastapi_app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield App(client, key, services, tmp_path / "data")


async def test_openai_client_gets_vectors_in_input_order(emb_app: App, chaos: Chaos) -> None:
    texts = ["hello world", "你好，世界", "a third one"]
    client = openai.AsyncOpenAI(
        api_key=emb_app.key, base_url="http://test/v1", http_client=emb_app.client
    )
    r = await client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert [d.index for d in r.data] == [0, 1, 2]
    for d, text in zip(r.data, texts, strict=True):
        assert d.embedding == pytest.approx(upstream_vector(text), abs=1e-6)
    assert r.model == "text-embedding-3-small"
    assert r.usage.prompt_tokens == r.usage.total_tokens == 6  # the upstream's word count
    sent = json.loads(chaos.requests(1)[-1]["body"])
    assert sent["model"] == "embed-up" and sent["encoding_format"] == "base64"


async def test_float_and_base64_formats_carry_the_same_vector(emb_app: App) -> None:
    body = {"model": "text-embedding-3-small", "input": "same text"}
    floats = (await emb_app.client.post(EMB, json=body, headers=emb_app.auth())).json()
    b64 = await emb_app.client.post(
        EMB, json={**body, "encoding_format": "base64"}, headers=emb_app.auth()
    )
    assert b64.status_code == 200
    raw = base64.b64decode(b64.json()["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert floats["data"][0]["embedding"] == pytest.approx(list(decoded), abs=1e-7)
    assert floats["object"] == "list" and floats["data"][0]["object"] == "embedding"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "nope", "input": "x"}, 404, "model_not_found"),
        ({"model": "deepseek-chat", "input": "x"}, 400, "model_not_embedding"),
        ({"model": "text-embedding-3-small", "input": ""}, 400, None),
        ({"model": "text-embedding-3-small", "input": []}, 400, None),
        ({"model": "text-embedding-3-small", "input": ["a", ""]}, 400, None),
        ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"}, 400, None),
        ({"model": "text-embedding-3-small", "input": "x", "api_base": "http://e"}, 400, None),
        ({"model": "text-embedding-3-small", "input": ["x"] * 2049}, 400, None),
    ],
)
async def test_bad_requests_get_openai_errors(
    emb_app: App, body: dict[str, object], status: int, code: str | None
) -> None:
    r = await emb_app.client.post(EMB, json=body, headers=emb_app.auth())
    assert_error(r, status, code)


async def test_upstream_error_keeps_its_status_and_every_call_is_recorded(
    emb_app: App, chaos: Chaos
) -> None:
    body = {"model": "text-embedding-3-small", "input": ["one two", "three"]}
    ok = await emb_app.client.post(EMB, json=body, headers=emb_app.auth())
    assert ok.status_code == 200
    chaos.control(script=["error:503"])
    failed = await emb_app.client.post(EMB, json=body, headers=emb_app.auth())
    assert failed.status_code in (502, 503)
    rows = [r for r in usage_rows(emb_app) if r["route"] == "embeddings"]
    assert [r["status"] for r in rows] == [200, failed.status_code]
    assert rows[0]["prompt_tokens"] == 3 and rows[0]["completion_tokens"] == 0
    assert rows[0]["model"] == rows[0]["served_model"] == "text-embedding-3-small"
    assert rows[0]["backend"] == "openai"


async def test_models_lists_the_embedding_model(emb_app: App) -> None:
    r = await emb_app.client.get("/v1/models", headers=emb_app.auth())
    assert [m["id"] for m in r.json()["data"]] == ["deepseek-chat", "text-embedding-3-small"]
    # embedding models say so (the console's playground leaves them out); chat cards unchanged
    assert [m.get("kind") for m in r.json()["data"]] == [None, "embedding"]
    one = await emb_app.client.get("/v1/models/text-embedding-3-small", headers=emb_app.auth())
    assert one.status_code == 200 and one.json()["kind"] == "embedding"
