"""A LoRA adapter (peft's weights for a Llama-architecture model) written as a GGUF adapter
that llama.cpp loads beside its base (``llama_adapter_lora_init``).

For each adapted projection, ``<base tensor>.lora_a`` (rank × in) and ``.lora_b`` (out × rank),
float32, under llama.cpp's tensor names; ``adapter.lora.alpha`` carries alpha (llama.cpp
scales the product by scale × alpha / rank). llama.cpp stores the query and key projections
with their rows permuted (the rotary halves interleaved, as the GGUF converter does): the
delta B·A of those two is permuted the same way by permuting the rows of B.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# peft module → llama.cpp tensor, per layer
TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_KEY = re.compile(r"layers\.(\d+)\.(.+)\.lora_([AB])(?:\.default)?\.weight$")


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """The GGUF converter's row order for a query or key projection's output rows."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def lora_tensors(state: Mapping[str, Any], n_head: int, n_head_kv: int) -> dict[str, np.ndarray]:
    """peft's state dict (tensors or arrays) → ``{gguf name: array}``."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        m = _KEY.search(key)
        if m is None or m[2] not in TENSORS:
            continue
        array = np.asarray(
            value.detach().float().cpu().numpy() if hasattr(value, "detach") else value,
            dtype=np.float32,
        )
        base = f"blk.{m[1]}.{TENSORS[m[2]]}.weight"
        if m[3] == "B" and m[2] == "self_attn.q_proj":
            array = permute_rows(array, n_head)
        elif m[3] == "B" and m[2] == "self_attn.k_proj":
            array = permute_rows(array, n_head_kv)
        out[f"{base}.lora_{m[3].lower()}"] = np.ascontiguousarray(array)
    if not out:
        raise ValueError("no LoRA weights of a known projection in the adapter")
    return out


def write_adapter(path: Path, tensors: Mapping[str, np.ndarray], alpha: float, name: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.General.NAME, name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for tensor_name in sorted(tensors):
        writer.add_tensor(tensor_name, tensors[tensor_name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
