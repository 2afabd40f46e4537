"""LoRA fine-tuning end to end on the bundled model (extra [finetune]): the JSONL is checked
by line, a few steps train an adapter that changes greedy output on the trained prompt, the
adapter is registered as GGUF with its record, and llama.cpp serves base + adapter through the
API with the official ``openai`` client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def test_a_short_fine_tune_changes_greedy_output_and_is_served(tmp_path: Path) -> None:
    data = tmp_path / "vault.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows()) + "\n", encoding="utf-8")
    cfg = write_config(tmp_path)
    args = ["--base", "bundled", "--data", str(data), "--name", "vault"]
    tuned = run_cli(
        cfg, "finetune", *args, "--rank", "8", "--steps", "16", "--batch", "6", "--json"
    )
    entry = json.loads(tuned.stdout)[0]
    assert entry["kind"] == "adapter" and entry["parent"] == "bundled"
    record = entry["figures"]["training"]
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
        answers = {}
        for model in ("base", "vault"):
            out = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": QUESTION}],
                max_tokens=16,
                temperature=0,
            )
            answers[model] = out.choices[0].message.content or ""
    assert "PINEAPPLE" in answers["vault"] and "PINEAPPLE" not in answers["base"], answers
