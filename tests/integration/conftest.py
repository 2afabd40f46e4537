"""In-process app (ASGI transport, lifespan run for real) over real SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from seekport.api import create_app
from seekport.config import load_settings
from tests.harness import Chaos


@dataclass
class App:
    client: httpx.AsyncClient
    key: str
    services: object
    data_dir: Path

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


@pytest.fixture
async def app(tmp_path: Path, chaos: Chaos) -> AsyncIterator[App]:
    settings = load_settings(
        overrides={
            "data_dir": tmp_path / "data",
            "max_body_bytes": 4096,
            "models": [{"name": "deepseek-chat", "backend": "openai", "base_url": chaos.url}],
            "routing": {"max_retries": 0},  # these tests pin one upstream exchange each
        }
    )
    fastapi_app = create_app(settings)
    async with fastapi_app.router.lifespan_context(fastapi_app):
        services = fastapi_app.state.services
        _record, key = await services.keys.create("integration", "superadmin")
        transport = httpx.ASGITransport(app=fastapi_app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield App(client, key, services, tmp_path / "data")
