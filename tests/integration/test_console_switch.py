"""``console.enabled: false``: no page, no assets, no sessions; a cookie then authenticates
nothing (bearer keys only), and the API is unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from seekport.api import create_app
from seekport.config import load_settings
from tests.harness import Chaos


@pytest.fixture
async def off(tmp_path: Path, chaos: Chaos) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    settings = load_settings(
        overrides={
            "data_dir": tmp_path / "data",
            "models": [{"name": "deepseek-chat", "backend": "openai", "base_url": chaos.url}],
            "console": {"enabled": False},
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        _record, key = await app.state.services.keys.create("integration", "superadmin")
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, key


async def test_a_console_switched_off_serves_nothing(off: tuple[httpx.AsyncClient, str]) -> None:
    client, key = off
    for path in ("/console", "/console/assets/app.js", "/console/assets/index.html"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"
    login = await client.post("/console/session", json={"key": key})
    assert login.status_code == 404 and "set-cookie" not in login.headers
    # a cookie is not a key here: 401 as with no key at all
    r = await client.get("/v1/models", headers={"Cookie": "seekport_session=anything"})
    assert r.status_code == 401 and r.json()["error"]["code"] != "session_expired"
    ok = await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200
