"""The web console in a real headless Chromium (Debian's ``chromium``, driven by Python
``playwright`` with ``executable_path``: test tools cannot download browsers), against one real
seekport for the module: the bundled model, the local embedder, and a remote model in front of
the suite's chaos upstream (``reasoning_content`` before each answer).

Debian's ``chromium`` and ``fonts-noto-cjk`` (the CJK glyphs the Chinese pages need) are
installed with apt-get when missing and this runs as root, as CI does; elsewhere the tests skip
with the reason. Screenshots of each page go to ``test-artifacts/console/`` (and to
``docs/console/`` with ``SEEKPORT_DOCS_SCREENSHOTS=1``, those docs/console.md shows)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.harness import BUNDLED, REPO, Chaos, Server, run_chaos, run_server, write_config

CHROMIUM = "/usr/bin/chromium"
CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "console"
DOCS_SHOTS = REPO / "docs" / "console"
REASONER = "reasoner"  # the remote model: the chaos upstream, reasoning before answering


def _chromium() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def _install() -> None:
    """apt-get install chromium fonts-noto-cjk, when root (as CI is) and apt-get is here."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "fonts-noto-cjk"]
    if subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False).returncode:
        subprocess.run(
            ["apt-get", "update"], env=env, capture_output=True, timeout=600, check=False
        )
        subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)


def _missing() -> str | None:
    if _chromium() is None:
        return "chromium"
    if not CJK_FONT.exists():
        return "fonts-noto-cjk"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser binary, installed from Debian's packages when missing and possible."""
    if _missing() is not None:
        _install()
    missing = _missing()
    if missing is not None:
        message = f"{missing} not found and not installable here (apt-get install {missing})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    found = _chromium()
    assert found is not None
    return found


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, as the axe-playwright-python wheel ships it (offline)."""
    import axe_playwright_python as axe  # a dev dependency: missing is an error, not a skip

    return (Path(axe.__file__).parent / "axe.min.js").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("console-chaos"), name="console") as chaos:
        chaos.control(tokens=12, reasoning_tokens=6, drip_ms=10)
        yield chaos


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstream: Chaos, models_dir: Path
) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("console")
    models = [
        {
            "name": BUNDLED,
            "backend": "local",
            "path": "bundled",
            "n_threads": 1,
            "context_length": 2048,
            "max_num_seqs": 2,
        },
        {
            "name": REASONER,
            "backend": "openai",
            "base_url": upstream.url,
            "upstream_model": "deepseek-reasoner",
        },
        {"name": "e5", "kind": "embedding", "path": "bundled"},
    ]

    def price(model: str) -> dict[str, str]:
        return {
            "model": model,
            "currency": "USD",
            "input_cache_hit": "0.1",
            "input_cache_miss": "1",
            "output": "2",
        }

    config = write_config(
        tmp,
        models,
        log_level="warning",
        models_dir=str(models_dir),
        pricing={"currency": "USD", "models": [price(BUNDLED), price(REASONER)]},
        auth_failures_per_minute=100_000,
    )
    with run_server(config) as s:
        yield s


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Watched:
    """A page and what went wrong in it: console errors and uncaught exceptions."""

    page: Any
    errors: list[str] = field(default_factory=list)
    may_401: set[str] = field(default_factory=lambda: {"/console/session"})

    def on_console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        url = str(msg.location.get("url", ""))
        # expected failures: logging in with a bad key answers 401 at /console/session,
        # which Chromium logs as a failed load (and a test that ends a session on purpose
        # names the path it expects to be refused)
        if "status of 401" in msg.text and urlsplit(url).path in self.may_401:
            return
        self.errors.append(f"console error: {msg.text} ({url})")

    def on_error(self, exc: Any) -> None:
        self.errors.append(f"page error: {exc}")


@pytest.fixture
def open_page(browser: Any, server: Server) -> Iterator[Any]:
    """open_page() → a fresh context's page (its own cookies: its own session), watched for
    console errors; every page's errors are asserted empty when the test ends."""
    made: list[tuple[Any, Watched]] = []

    def make(lang: str = "en") -> Any:
        context = browser.new_context(
            viewport={"width": 1280, "height": 860},
            locale="zh-CN" if lang == "zh" else "en-US",
            permissions=["clipboard-read", "clipboard-write"],
            accept_downloads=True,
        )
        context.set_default_timeout(20_000)
        page = context.new_page()
        watched = Watched(page)
        page.on("console", watched.on_console)
        page.on("pageerror", watched.on_error)
        made.append((context, watched))
        page.watched = watched
        return page

    yield make
    errors = [e for _, w in made for e in w.errors]
    for context, _ in made:
        context.close()
    assert not errors, "\n".join(errors)


def _shown_in_docs(name: str) -> bool:
    """docs/console.md embeds it (only those are kept in the repository)."""
    return f"(console/{name})" in (REPO / "docs" / "console.md").read_text(encoding="utf-8")


def screenshot(page: Any, name: str) -> Path:
    """Save a PNG of the page as a test artefact (and for the docs when asked)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SEEKPORT_DOCS_SCREENSHOTS") == "1" and _shown_in_docs(path.name):
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SHOTS / path.name)
    return path
