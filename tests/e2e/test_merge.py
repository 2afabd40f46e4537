"""A LoRA adapter merged into its base: registered with `seekport models add --base`, merged
with `seekport models merge` to F16 and Q8_0 (a 4-bit target is refused: the rounding would
erase it), the merged file holds exactly base + scale × alpha/rank × B·A, and the merged
models answer as base + adapter does, through a real server and the official client."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seekport.engine.merge import merge_to_f16, read_adapter
from seekport.engine.runners.llamacpp import bundled_model_path
from tests.harness import openai_client, run_cli, run_server, write_config
from tests.lora import synthetic_adapter

pytestmark = pytest.mark.slow
PROMPTS = ("Name three colours.", "What is the capital of France?")


def test_the_merged_file_is_base_plus_the_scaled_delta(tmp_path: Path) -> None:
    import gguf
    from gguf.quants import dequantize

    base = bundled_model_path()
    adapter = synthetic_adapter(tmp_path / "a.gguf", base, seed=3, rank=2)
    out = tmp_path / "merged.gguf"
    assert merge_to_f16(base, adapter, out, scale=0.5) == 30
    pairs, alpha = read_adapter(adapter)
    src = {t.name: t for t in gguf.GGUFReader(base).tensors}
    merged = gguf.GGUFReader(out)
    assert merged.fields["general.file_type"].contents() == 1  # MOSTLY_F16
    assert merged.fields["tokenizer.chat_template"].contents() == (
        gguf.GGUFReader(base).fields["tokenizer.chat_template"].contents()
    )
    checked = [t for t in merged.tensors if t.name in pairs or t.name.startswith("blk.0.")]
    assert len(checked) > len(pairs)  # every adapted tensor, and untouched ones beside them
    for t in checked:
        want = dequantize(src[t.name].data, src[t.name].tensor_type)
        if t.name in pairs:
            a, b = pairs[t.name]
            want = want + 0.5 * alpha / a.shape[0] * (b @ a)
        got = np.asarray(t.data, dtype=np.float32)
        assert t.tensor_type.name == ("F16" if want.ndim > 1 else "F32"), t.name
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4, err_msg=t.name)


def test_merge_to_f16_and_q8_0_is_served_and_four_bits_are_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    adapter = synthetic_adapter(tmp_path / "synth.gguf", bundled_model_path(), seed=1)
    no_base = run_cli(cfg, "models", "add", str(adapter), "--name", "synth", check=False)
    assert no_base.returncode == 1 and "--base" in no_base.stderr
    added = run_cli(cfg, "models", "add", str(adapter), "--name", "synth", "--base", "bundled")
    assert "added synth@1" in added.stdout

    refused = run_cli(cfg, "models", "merge", "synth", "--to", "q4_0", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "erases the adapter" in refused.stderr and "f16 or q8_0" in refused.stderr

    entries = {}
    for target in ("f16", "q8_0"):
        done = run_cli(cfg, "models", "merge", "synth", "--to", target, "--no-measure", "--json")
        entry = json.loads(done.stdout)[0]
        assert (entry["name"], entry["version"], entry["kind"]) == ("synth-merged", target, "model")
        assert entry["parent"] == "synth@1" and entry["quantization"] == target.upper()
        assert entry["figures"]["merged"] == {"adapter": "synth@1", "scale": 1.0, "tensors": 30}
        entries[target] = entry
    assert "Q8_0" in entries["q8_0"]["figures"]["tensor_mix"]

    local = {"backend": "local", "context_length": 512, "max_num_seqs": 2}
    serve = write_config(
        tmp_path,
        [
            {"name": "base", **local},
            {"name": "adapter", **local, "adapter": "registry:synth@1"},
            {"name": "f16", **local, "path": "registry:synth-merged@f16"},
            {"name": "q8", **local, "path": "registry:synth-merged@q8_0"},
        ],
    )
    with run_server(serve) as server:
        client = openai_client(server.url + "/v1", server.key)
        answers = {
            (model, prompt): client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=24,
                temperature=0,
            )
            .choices[0]
            .message.content
            or ""
            for model in ("base", "adapter", "f16", "q8")
            for prompt in PROMPTS
        }
    for prompt in PROMPTS:
        tuned = answers[("adapter", prompt)]
        assert tuned != answers[("base", prompt)]
        for merged in ("f16", "q8"):
            # the same answer as base + adapter, up to where rounding (F16 weights against a
            # Q4_1 base with an F32 delta) tips a near tie: the first words agree
            text = answers[(merged, prompt)]
            assert text.split()[:4] == tuned.split()[:4], (merged, text, tuned)
            assert text != answers[("base", prompt)]
