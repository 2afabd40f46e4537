"""Settings: defaults, YAML, env and CLI priority, and start-up errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from seekport.config import load_settings
from seekport.config.settings import BUNDLED_MODEL_NAME, usable_cores
from seekport.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("SEEKPORT_"):
            monkeypatch.delenv(k)


def test_no_config_means_the_bundled_model_on_loopback() -> None:
    s = load_settings()
    assert s.host == "127.0.0.1" and s.port == 8000
    assert [m.name for m in s.models] == [BUNDLED_MODEL_NAME]
    assert s.models[0].backend == "local" and s.models[0].path == "bundled"
    assert s.max_body_bytes == 1 << 20
    assert s.resolved_database_url.startswith("sqlite+aiosqlite:///")


def test_default_threads_never_exceed_free_cores() -> None:
    n = load_settings().models[0].n_threads
    assert 1 <= n <= max(1, usable_cores() - 1)


def test_priority_cli_over_env_over_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 9001\nhost: 127.0.0.2\nlog_level: debug\n")
    monkeypatch.setenv("SEEKPORT_PORT", "9002")
    monkeypatch.setenv("SEEKPORT_HOST", "127.0.0.3")
    s = load_settings(cfg, {"port": 9003})
    assert s.port == 9003  # CLI
    assert s.host == "127.0.0.3"  # env over YAML
    assert s.log_level == "debug"  # YAML over default


def test_models_from_yaml_keep_the_contract_names(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "models:\n"
        "  - name: deepseek-reasoner\n    backend: openai\n"
        "    base_url: https://api.deepseek.com/\n    api_key_env: DEEPSEEK_API_KEY\n"
        "    upstream_model: deepseek-reasoner\n    reasoning: deepseek-r1\n"
        "    pricing: {input_per_1m: 0.55, output_per_1m: 2.19}\n"
    )
    m = load_settings(cfg).models[0]
    assert m.base_url == "https://api.deepseek.com"
    assert m.reasoning == "deepseek-r1" and m.pricing.output_per_1m == 2.19


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("port: 70000\n", "port"),
        ("prot: 80\n", "prot"),
        ("models:\n  - name: x\n    backend: openai\n", "base_url"),
        ("models:\n  - name: x\n    backend: gpu\n", "models.0.backend"),
        ("models:\n  - name: x\n    backend: vllm\n", "command"),
        ("models: []\n", "at least one model"),
        ("- just\n- a list\n", "mapping"),
        ("port: [\n", "not valid YAML"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, yaml_text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    assert needle in exc.value.message


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml")


def test_env_var_names_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 8123\n")
    monkeypatch.setenv("SEEKPORT_CONFIG", str(cfg))
    assert load_settings().port == 8123


def test_configuration_doc_is_generated_from_the_current_settings() -> None:
    import runpy

    gen = runpy.run_path(
        str(Path(__file__).resolve().parents[2] / "scripts" / "gen_config_docs.py")
    )
    assert gen["DOC"].read_text(encoding="utf-8") == gen["render"](), (
        "run: python scripts/gen_config_docs.py"
    )


def test_head_revision_constant_matches_the_migrations() -> None:
    from alembic.script import ScriptDirectory

    from seekport.store.sql.db import HEAD_REVISION, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION
