"""LoRA fine-tuning of a GGUF chat model on the CPU (extra ``[finetune]``: torch, transformers,
peft).

transformers loads the GGUF dequantised to float32 (the architecture and the tokenizer, chat
template included, come from the file); peft adds rank-r adapters to every linear projection
of the attention and the MLP; a plain AdamW loop trains them on the answers only (the prompt's
tokens are masked out of the loss). Every ``checkpoint_every`` steps the adapter and the
optimiser are saved in the work directory, and a run given the same work directory carries on
from there. The result is written as a GGUF adapter (``export.py``) with its training record:
the losses, the speed, and the held-out check before and after (the mean loss on the held-out
answers, and greedy answers to a few held-out prompts).

``device``: ``auto`` (the default) trains on a CUDA GPU when torch sees one, else on the CPU;
the model, the batches and the optimiser's state all live on that device, and the record
says which it was. A GPU changes the speed (s/step), not the recipe or the result's format.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from seekport.engine.finetune.data import Example
from seekport.engine.finetune.export import TENSORS, lora_tensors, write_adapter
from seekport.errors import ConfigError

INSTALL = "pip install 'seekport[finetune]' (torch, transformers, peft)"


class FinetuneUnavailable(RuntimeError):
    """The [finetune] extra is not installed."""


@dataclass(frozen=True)
class TrainConfig:
    rank: int = 16
    alpha: float = 32.0
    steps: int = 40
    lr: float = 1e-3
    batch: int = 8
    max_len: int = 256
    seed: int = 0
    checkpoint_every: int = 10


@dataclass
class Step:
    step: int
    steps: int
    loss: float
    s_per_step: float

    @property
    def eta_s(self) -> float:
        return (self.steps - self.step) * self.s_per_step


@dataclass
class TrainRecord:
    config: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_at: int = 0
    device: str = "cpu"
    heldout_loss_before: float | None = None
    heldout_loss_after: float | None = None
    samples: list[dict[str, str]] = field(default_factory=list)


def _imports() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise FinetuneUnavailable(f"fine-tuning needs {INSTALL}") from exc
    return torch, transformers, peft


class _Data:
    """Tokenised examples: the prompt through the chat template, the answer as the
    assistant's turn; labels only on the answer."""

    def __init__(self, tok: Any, examples: list[Example], max_len: int) -> None:
        self.tok = tok
        self.rows = [self._encode(e, max_len) for e in examples]

    def _ids(self, messages: list[dict[str, str]], generation: bool) -> list[int]:
        ids = self.tok.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=generation, return_dict=False
        )
        return list(ids)

    def _encode(self, e: Example, max_len: int) -> tuple[list[int], list[int]]:
        user = [{"role": "user", "content": e.prompt}]
        prompt = self._ids(user, True)
        full = self._ids([*user, {"role": "assistant", "content": e.output}], False)
        if full[: len(prompt)] != prompt:  # a template that rewrites the prompt: append
            full = prompt + self.tok.encode(e.output, add_special_tokens=False)
            full.append(self.tok.eos_token_id)
        labels = [-100] * len(prompt) + full[len(prompt) :]
        return full[:max_len], labels[:max_len]

    def prompt_ids(self, e: Example) -> list[int]:
        return self._ids([{"role": "user", "content": e.prompt}], True)


def pick_device(torch: Any, device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one fails."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda: torch sees no CUDA GPU (a CPU build of torch, or no driver); "
            "use --device cpu"
        )
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device}: choose auto, cpu or cuda")
    return device


def _batch(
    torch: Any, rows: list[tuple[list[int], list[int]]], pad: int, device: str = "cpu"
) -> dict[str, Any]:
    width = max(len(ids) for ids, _ in rows)
    ids = [r[0] + [pad] * (width - len(r[0])) for r in rows]
    labels = [r[1] + [-100] * (width - len(r[1])) for r in rows]
    mask = [[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows]
    return {
        "input_ids": torch.tensor(ids, device=device),
        "attention_mask": torch.tensor(mask, device=device),
        "labels": torch.tensor(labels, device=device),
    }


def _mean_loss(torch: Any, model: Any, data: _Data, rows: list[Any], pad: int) -> float:
    device = str(model.device)
    with torch.no_grad():
        losses = [float(model(**_batch(torch, [r], pad, device)).loss) for r in rows]
    return sum(losses) / len(losses)


def _greedy(torch: Any, model: Any, data: _Data, e: Example, pad: int) -> str:
    ids = torch.tensor([data.prompt_ids(e)], device=model.device)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=32,
            do_sample=False,
            pad_token_id=pad,
        )
    return str(data.tok.decode(out[0][ids.shape[1] :], skip_special_tokens=True)).strip()


def train(
    base: Path,
    train_rows: list[Example],
    heldout: list[Example],
    work: Path,
    cfg: TrainConfig,
    *,
    name: str,
    device: str = "auto",
    progress: Callable[[Step], None] | None = None,
) -> tuple[Path, TrainRecord]:
    """Train an adapter for the GGUF ``base``; (the adapter's GGUF in ``work``, its record)."""
    torch, transformers, peft = _imports()
    device = pick_device(torch, device)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    tok = transformers.AutoTokenizer.from_pretrained(str(base.parent), gguf_file=base.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(base.parent), gguf_file=base.name, dtype=torch.float32
    ).to(device)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    data = _Data(tok, train_rows, cfg.max_len)
    check = _Data(tok, heldout, cfg.max_len)
    record = TrainRecord(config=asdict(cfg), device=device)
    record.heldout_loss_before = _mean_loss(torch, model, check, check.rows, pad)
    before = [(e, _greedy(torch, model, check, e, pad)) for e in heldout[:3]]

    lora = peft.LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=0.0,
        target_modules=sorted({k.split(".")[-1] for k in TENSORS}),
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr)
    start = _resume(torch, peft, model, optim, work, cfg, record)
    order = list(range(len(data.rows)))
    random.Random(cfg.seed).shuffle(order)  # noqa: S311 - an order of rows, not a secret
    model.train()
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        picks = [data.rows[order[(step * cfg.batch + i) % len(order)]] for i in range(cfg.batch)]
        loss = model(**_batch(torch, picks, pad, device)).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        record.losses.append(round(float(loss.detach()), 4))
        spent = time.perf_counter() - t0
        if progress is not None:
            progress(Step(step + 1, cfg.steps, record.losses[-1], spent / (step + 1 - start)))
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            _save(torch, peft, model, optim, work, cfg, step + 1, record)
    record.seconds = round(time.perf_counter() - t0, 1)
    model.eval()
    record.heldout_loss_after = _mean_loss(torch, model, check, check.rows, pad)
    record.samples = [
        {"prompt": e.prompt, "before": b, "after": _greedy(torch, model, check, e, pad)}
        for e, b in before
    ]
    config = model.base_model.model.config
    tensors = lora_tensors(
        peft.get_peft_model_state_dict(model),
        config.num_attention_heads,
        config.num_key_value_heads,
    )
    out = work / f"{name}.lora.gguf"
    write_adapter(out, tensors, cfg.alpha, name)
    (work / "checkpoint.pt").unlink(missing_ok=True)
    return out, record


def _save(
    torch: Any,
    peft: Any,
    model: Any,
    optim: Any,
    work: Path,
    cfg: TrainConfig,
    step: int,
    record: TrainRecord,
) -> None:
    state = {
        "step": step,
        "config": asdict(cfg),
        "lora": peft.get_peft_model_state_dict(model),
        "optim": optim.state_dict(),
        "losses": record.losses,
    }
    tmp = work / "checkpoint.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(work / "checkpoint.pt")


def _resume(
    torch: Any,
    peft: Any,
    model: Any,
    optim: Any,
    work: Path,
    cfg: TrainConfig,
    record: TrainRecord,
) -> int:
    """The step to start from: a checkpoint of the same configuration, or 0."""
    path = work / "checkpoint.pt"
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=True, map_location=model.device)
    if state.get("config") != asdict(cfg):
        return 0
    peft.set_peft_model_state_dict(model, state["lora"])
    optim.load_state_dict(state["optim"])
    record.losses = list(state["losses"])
    record.resumed_at = int(state["step"])
    return record.resumed_at
