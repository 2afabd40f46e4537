"""A fine-tune's checkpoint (engine/finetune/train.py) over a tiny real Llama made from a
config: what is saved is what a resumed run starts from — the step, the losses, the adapter's
weights and the optimiser's state — and a checkpoint of other settings is not used."""

from __future__ import annotations

from pathlib import Path

import peft
import pytest
import torch
import transformers

from seekport.engine.finetune.train import TrainConfig, TrainRecord, _resume, _save


def tiny() -> tuple[object, object]:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model = peft.get_peft_model(
        transformers.LlamaForCausalLM(config),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    return model, optim


def step(model: object, optim: object) -> float:
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    loss = model(input_ids=ids, labels=ids).loss  # type: ignore[operator]
    loss.backward()
    optim.step()  # type: ignore[attr-defined]
    optim.zero_grad()  # type: ignore[attr-defined]
    return float(loss.detach())


# peft calls a transformers method transformers has deprecated (theirs, not ours)
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_a_resumed_run_starts_where_the_checkpoint_was(tmp_path: Path) -> None:
    cfg = TrainConfig(rank=4, alpha=8, steps=6)
    model, optim = tiny()
    record = TrainRecord(config={})
    record.losses = [step(model, optim) for _ in range(3)]
    _save(torch, peft, model, optim, tmp_path, cfg, 3, record)
    saved = {k: v.clone() for k, v in peft.get_peft_model_state_dict(model).items()}
    going_on = [step(model, optim) for _ in range(2)]  # what the uninterrupted run does next

    fresh, fresh_optim = tiny()
    resumed = TrainRecord(config={})
    assert _resume(torch, peft, fresh, fresh_optim, tmp_path, cfg, resumed) == 3
    assert resumed.losses == record.losses[:3] and resumed.resumed_at == 3
    state = peft.get_peft_model_state_dict(fresh)
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    # the second loss follows the first update, which the optimiser's moments shape
    resumed_losses = [step(fresh, fresh_optim) for _ in range(2)]
    assert all(abs(a - b) < 1e-6 for a, b in zip(resumed_losses, going_on, strict=True))

    other, other_optim = tiny()
    changed = TrainConfig(rank=4, alpha=8, steps=6, lr=5e-4)
    assert _resume(torch, peft, other, other_optim, tmp_path, changed, TrainRecord({})) == 0
