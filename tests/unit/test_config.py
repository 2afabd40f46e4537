"""Settings: defaults, YAML, env and CLI priority, and start-up errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seekport.config import (
    LocalModelConfig,
    ManagedModelConfig,
    OpenAIModelConfig,
    load_settings,
)
from seekport.config.models import BUNDLED_MODEL_NAME, usable_cores
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
    assert [m.name for m in s.models] == [BUNDLED_MODEL_NAME, "multilingual-e5-small"]
    assert [m.kind for m in s.models] == ["chat", "embedding"]
    assert s.models[0].backend == "local" and s.models[0].path == "bundled"
    assert s.knowledge_embedder() is s.models[1]
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
        ("models: []\n", "at least one chat model"),
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


MODELS = {
    "local": {"name": "m", "backend": "local"},
    "openai": {"name": "m", "backend": "openai", "base_url": "http://127.0.0.1:1"},
    "vllm": {"name": "m", "backend": "vllm", "command": ["vllm", "serve", "--port", "{port}"]},
    "sglang": {"name": "m", "backend": "sglang", "command": ["python", "-m", "sglang"]},
    "llama-server": {"name": "m", "backend": "llama-server", "command": ["llama-server"]},
}


def write_models(tmp_path: Path, *entries: dict[str, object]) -> Path:
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"models": list(entries)}))
    return cfg


@pytest.mark.parametrize(
    ("backend", "cls"),
    [
        ("local", LocalModelConfig),
        ("openai", OpenAIModelConfig),
        ("vllm", ManagedModelConfig),
        ("sglang", ManagedModelConfig),
        ("llama-server", ManagedModelConfig),
    ],
)
def test_each_backend_gets_its_own_config_class(
    tmp_path: Path, backend: str, cls: type[object]
) -> None:
    m = load_settings(write_models(tmp_path, MODELS[backend])).models[0]
    assert type(m) is cls and m.backend == backend


def test_an_entry_without_backend_is_local(tmp_path: Path) -> None:
    m = load_settings(write_models(tmp_path, {"name": "m", "n_threads": 2})).models[0]
    assert isinstance(m, LocalModelConfig) and m.n_threads == 2


@pytest.mark.parametrize(
    ("backend", "field", "value"),
    [
        ("local", "base_url", "https://api.deepseek.com"),
        ("local", "command", ["vllm"]),
        ("openai", "n_threads", 2),
        ("openai", "health_path", "/health"),
        ("vllm", "path", "bundled"),
        ("vllm", "base_url", "https://api.deepseek.com"),
        ("sglang", "tool_parser", "hermes"),
        ("llama-server", "max_num_seqs", 8),
    ],
)
def test_a_field_of_another_backend_names_the_field_and_the_backend(
    tmp_path: Path, backend: str, field: str, value: object
) -> None:
    cfg = write_models(tmp_path, {**MODELS[backend], field: value})
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    assert f"`{field}` does not apply to backend '{backend}'" in exc.value.message


def test_a_misspelt_field_is_still_an_unknown_field(tmp_path: Path) -> None:
    cfg = write_models(tmp_path, {**MODELS["openai"], "base_ulr": "x"})
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    assert "base_ulr" in exc.value.message and "unknown field" in exc.value.message


def test_managed_command_placeholders_are_checked_at_load(tmp_path: Path) -> None:
    cfg = write_models(tmp_path, {**MODELS["vllm"], "command": ["vllm", "--port", "{prot}"]})
    with pytest.raises(ConfigError, match=r"placeholders \{port\} and \{host\}"):
        load_settings(cfg)
    ok = load_settings(write_models(tmp_path, MODELS["vllm"])).models[0]
    assert isinstance(ok, ManagedModelConfig)
    assert ok.argv(8123, "127.0.0.1") == ["vllm", "serve", "--port", "8123"]


def test_local_output_cap_never_exceeds_the_context(tmp_path: Path) -> None:
    cfg = write_models(tmp_path, {"name": "m", "context_length": 1024})
    assert load_settings(cfg).models[0].max_output_tokens == 1024


def test_nested_env_var_changes_one_field_of_the_default_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEEKPORT_MODELS__0__N_THREADS", "3")
    monkeypatch.setenv("SEEKPORT_MODELS__0__PRICING__INPUT_PER_1M", "0.27")
    m, e5 = load_settings().models
    assert isinstance(m, LocalModelConfig) and e5.kind == "embedding"
    assert m.name == BUNDLED_MODEL_NAME and m.path == "bundled"
    assert m.n_threads == 3 and m.pricing.input_per_1m == 0.27


def test_nested_env_var_beats_the_yaml_entry_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_models(tmp_path, {"name": "a", "n_threads": 1}, {**MODELS["vllm"], "name": "b"})
    monkeypatch.setenv("SEEKPORT_MODELS__0__N_THREADS", "2")
    monkeypatch.setenv("SEEKPORT_MODELS__1__COMMAND", '["sglang", "--port", "{port}"]')
    monkeypatch.setenv("SEEKPORT_MODELS__1__STARTUP_TIMEOUT_S", "30")
    a, b = load_settings(cfg).models
    assert isinstance(a, LocalModelConfig) and a.name == "a" and a.n_threads == 2
    assert isinstance(b, ManagedModelConfig) and b.name == "b"
    assert b.command == ["sglang", "--port", "{port}"] and b.startup_timeout_s == 30


def test_nested_env_var_is_checked_like_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEEKPORT_MODELS__0__BASE_URL", "https://api.deepseek.com")
    with pytest.raises(ConfigError, match="`base_url` does not apply to backend 'local'"):
        load_settings()
    monkeypatch.delenv("SEEKPORT_MODELS__0__BASE_URL")
    monkeypatch.setenv("SEEKPORT_MODELS__5__N_THREADS", "2")
    with pytest.raises(ConfigError, match="no entry 5"):
        load_settings()


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


@pytest.mark.parametrize(
    ("entries", "knowledge", "message"),
    [
        ([{"name": "e", "kind": "embedding", "tool_parser": "hermes"}], None, "`tool_parser`"),
        ([{"name": "e", "kind": "embedding", "path": "/m.gguf"}], None, "path: bundled"),
        ([{**MODELS["vllm"], "kind": "embedding"}], None, "managed engine serves chat"),
        ([{"name": "x"}, {"name": "x", "kind": "embedding"}], None, "both a chat and"),
        ([], {"embedding_model": "m"}, "not an embedding model"),
    ],
)
def test_embedding_entries_are_checked(
    tmp_path: Path,
    entries: list[dict[str, object]],
    knowledge: dict[str, object] | None,
    message: str,
) -> None:
    cfg = tmp_path / "c.yaml"
    data: dict[str, object] = {"models": [{"name": "m"}, *entries]}
    if knowledge is not None:
        data["knowledge"] = knowledge
    cfg.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg)


def test_an_embedding_model_is_not_a_chat_deployment(tmp_path: Path) -> None:
    cfg = write_models(
        tmp_path,
        {"name": "m"},
        {"name": "emb", "kind": "embedding", "backend": "openai", "base_url": "http://x"},
    )
    s = load_settings(cfg)
    assert [m.name for m in s.chat_models()] == ["m"]
    assert [m.name for m in s.embedding_models()] == ["emb"]
    assert s.knowledge_embedder() is not None and s.knowledge_embedder().name == "emb"  # type: ignore[union-attr]


def test_the_knowledge_store_url_must_be_postgresql(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"knowledge": {"database_url": "mysql://x/y"}}))
    with pytest.raises(ConfigError, match="postgresql://"):
        load_settings(cfg)
