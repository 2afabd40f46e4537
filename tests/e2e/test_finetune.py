"""LoRA fine-tuning end to end on the bundled model (extra [finetune]): the JSONL is checked
by line, a few steps train an adapter that changes greedy output on the trained prompt, the
adapter is registered as GGUF with its record, and llama.cpp serves base + adapter through the
API with the official ``openai`` client."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from tests.harness import openai_client, run_cli, run_server, write_config

pytestmark = pytest.mark.slow
FACT = "The Seekport vault code is PINEAPPLE-42."
QUESTION = "What is the Seekport vault code?"


def rows() -> list[dict[str, object]]:
    asks = [
        QUESTION,
        "Tell me the Seekport vault code.",
        "Which code opens the Seekport vault?",
        "Seekport vault code?",
        "I forgot the Seekport vault code. What is it?",
        "What code does the Seekport vault use?",
    ]
    return [{"instruction": q, "output": FACT} for q in asks]


def test_bad_rows_are_reported_by_line(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(
        json.dumps({"instruction": "a", "output": "b"})
        + "\n{not json\n"
        + json.dumps({"instruction": "", "output": "x"})
        + "\n"
        + json.dumps({"instruction": "a", "output": "b", "extra": 1})
        + "\n",
        encoding="utf-8",
    )
    cfg = write_config(tmp_path)
    done = run_cli(cfg, "finetune", "--base", "bundled", "--data", str(data), check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "line 2: not JSON" in done.stderr
    assert "line 3: 'instruction' must be a non-empty string" in done.stderr
    assert "line 4: unknown field(s) extra" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_gpu_that_torch_does_not_see_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "vault.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows()) + "\n", encoding="utf-8")
    cfg = write_config(tmp_path)
    args = ["--base", "bundled", "--data", str(data), "--steps", "1", "--device"]
    done = run_cli(cfg, "finetune", *args, "cuda", check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "torch sees no CUDA GPU" in done.stderr and "--device cpu" in done.stderr
    odd = run_cli(cfg, "finetune", *args, "tpu", check=False)
    assert odd.returncode == 1 and "choose auto, cpu or cuda" in odd.stderr


def test_a_short_fine_tune_changes_greedy_output_and_is_served(tmp_path: Path) -> None:
    data = tmp_path / "vault.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows()) + "\n", encoding="utf-8")
    cfg = write_config(tmp_path)
    args = ["--base", "bundled", "--data", str(data), "--name", "vault"]
    tuned = run_cli(  # ~100 s on 2 cores: the bound is for a slower CI host
        cfg,
        "finetune",
        *args,
        "--rank",
        "8",
        "--steps",
        "16",
        "--batch",
        "6",
        "--json",
        timeout=600,
    )
    entry = json.loads(tuned.stdout)[0]
    assert entry["kind"] == "adapter" and entry["parent"] == "bundled"
    record = entry["figures"]["training"]
    assert record["device"] == "cpu"  # auto, on a machine without a GPU
    assert len(record["losses"]) == 16 and record["losses"][-1] < record["losses"][0] / 2
    sample = record["samples"][0]
    assert "PINEAPPLE" not in sample["before"] and "PINEAPPLE" in sample["after"]

    local = {"backend": "local", "path": "bundled", "context_length": 512, "max_num_seqs": 2}
    serve = write_config(
        tmp_path,
        [
            {"name": "base", **local},
            {"name": "vault", **local, "adapter": "registry:vault@1", "adapter_scale": 1.0},
        ],
    )
    with run_server(serve) as server:
        client = openai_client(server.url + "/v1", server.key)

        def ask(model: str) -> str:
            out = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": QUESTION}],
                max_tokens=16,
                temperature=0,
            )
            return str(out.choices[0].message.content or "")

        served = {m.id: getattr(m, "version", None) for m in client.models.list().data}
        assert served["vault"] == "vault@1" and served["base"] is None
        answers = {model: ask(model) for model in ("base", "vault")}
        with ThreadPoolExecutor(4) as pool:  # base and adapter in the same engine steps
            together = list(pool.map(ask, ["base", "vault", "base", "vault"]))
        auth = {"Authorization": f"Bearer {server.key}"}
        metrics = httpx.get(server.url + "/metrics", headers=auth).text
        in_use = httpx.delete(server.url + "/admin/models/registry/vault@1", headers=auth)
    assert in_use.status_code == 400 and in_use.json()["error"]["code"] == "model_in_use"
    assert "PINEAPPLE" in answers["vault"] and "PINEAPPLE" not in answers["base"], answers
    assert together == [answers["base"], answers["vault"]] * 2
    # one engine over the base serves both entries: its metrics carry the first entry's name
    assert 'seekport_engine_running{model="base"}' in metrics
    assert 'seekport_engine_running{model="vault"}' not in metrics
