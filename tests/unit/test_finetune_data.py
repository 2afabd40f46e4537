"""The fine-tuning data checks (engine/finetune/data.py): every bad line named at once, the
held-out rows chosen as documented; and the GGUF adapter's tensor names and row order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seekport.engine.finetune.data import DataError, load_examples, split
from seekport.engine.finetune.export import lora_tensors, permute_rows


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row(**fields: object) -> str:
    return json.dumps({"instruction": "q", "output": "a", **fields}, ensure_ascii=False)


def test_every_bad_line_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            row(),
            "{not json",
            json.dumps({"instruction": "", "output": "x"}),
            row(extra=1),
            "[1, 2]",
            row(input=3),
            row(heldout="yes"),
            "",
            json.dumps({"instruction": "问题", "output": "答案"}, ensure_ascii=False),
        ],
    )
    with pytest.raises(DataError) as err:
        load_examples(path)
    message = err.value.message
    assert "6 problem(s)" in message
    for expected in (
        "line 2: not JSON",
        "line 3: 'instruction' must be a non-empty string",
        "line 4: unknown field(s) extra",
        "line 5: a JSON object is expected, not list",
        "line 6: 'input' must be a string",
        "line 7: 'heldout' must be true or false",
    ):
        assert expected in message
    assert "line 1" not in message and "line 9" not in message


def test_held_out_rows_marked_split_or_the_training_prompts(tmp_path: Path) -> None:
    marked = load_examples(write(tmp_path, [row(), row(heldout=True), row(input="ctx")]))
    train, check = split(marked)
    assert [e.line for e in train] == [1, 3] and [e.line for e in check] == [2]
    assert train[1].prompt == "q\n\nctx"
    many = load_examples(write(tmp_path, [row(instruction=f"q{i}") for i in range(25)]))
    train, check = split(many)
    assert len(train) == 23 and [e.line for e in check] == [10, 20]
    few = load_examples(write(tmp_path, [row(instruction=f"q{i}") for i in range(5)]))
    train, check = split(few)
    assert len(train) == 5 and check == few[:3]
    with pytest.raises(DataError, match="no rows to train on"):
        load_examples(write(tmp_path, [row(heldout=True)]))


def test_adapter_tensors_get_llama_cpp_names_and_the_query_key_row_order() -> None:
    rng = np.random.default_rng(0)
    q_b = rng.standard_normal((8, 2)).astype(np.float32)  # 2 heads of 4 rows
    state = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.ones((2, 8)),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": q_b,
        "base_model.model.model.layers.3.mlp.down_proj.lora_B.weight": np.ones((8, 2)),
        "base_model.model.model.layers.3.mlp.unknown.lora_B.weight": np.ones((8, 2)),
    }
    out = lora_tensors(state, n_head=2, n_head_kv=1)
    assert sorted(out) == [
        "blk.0.attn_q.weight.lora_a",
        "blk.0.attn_q.weight.lora_b",
        "blk.3.ffn_down.weight.lora_b",
    ]
    # per head, the rotary halves interleaved: rows 0,2,1,3 then 4,6,5,7
    assert np.array_equal(out["blk.0.attn_q.weight.lora_b"], q_b[[0, 2, 1, 3, 4, 6, 5, 7]])
    assert np.array_equal(permute_rows(np.arange(4.0).reshape(4, 1), 1)[:, 0], [0, 2, 1, 3])
    with pytest.raises(ValueError, match="no LoRA weights"):
        lora_tensors({"x.weight": np.ones(2)}, 1, 1)
