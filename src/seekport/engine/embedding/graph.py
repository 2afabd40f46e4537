"""multilingual-e5-small as an ONNX graph, built from the packed weights, then quantised to int8.

The graph is the BERT encoder of ``e5.c``'s ``forward_batch`` with batching and padding added:

    input_ids, attention_mask   int64 [B, S]
    embeddings  word + position (from 0, as BertModel) + token type 0 -> LayerNorm
    12 x        x = LN(x + Wo·attn(x)); x = LN(x + W2·gelu(W1·x))   (post-norm BERT, erf GELU)
    embedding   float32 [B, 384]: mean over unmasked tokens (specials included), L2-normalised

Attention is ONNX Runtime's ``MultiHeadAttention`` contrib op (heads split, padding keys masked,
no [B, heads, S, S] bias tensor): written out as MatMul/Softmax it took half the time. The rest is
standard ops that the runtime fuses itself (SkipLayerNormalization, BiasGelu, MatMul + bias).

The word embedding stays in its 4-bit form, losslessly: int8 codes -8..7 and one scale per block
of 32, dequantised after the Gather (only the rows looked up), 108 MB instead of 384 MB of fp32.
Only the dense MatMuls are quantised: dynamic int8, signed weights per output channel. On a 2-core
AVX512-VNNI machine that ran ~1.6x fp32; unsigned weights and ``MatMulNBits`` (the packed 4-bit
weights as they are, exact to ``e5.c``) were both slower. Dynamic quantisation scales activations
per tensor, so a text's vector moves slightly with its batch (cosine > 0.99).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from seekport.engine.embedding.packed import QK, PackedModel

OPSET = 17  # LayerNormalization
MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib ops: MultiHeadAttention
IR_VERSION = 8
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
OUTPUT = "embedding"


class _Builder:
    """Appends nodes and initialisers straight into one ModelProto; ``op`` returns the output.

    Building lists and handing them to ``helper.make_graph``/``make_model`` copies every weight
    twice more (protobuf copies on insert): writing in place keeps the peak near one copy.
    """

    def __init__(self) -> None:
        self.model = onnx.ModelProto()
        self.graph = self.model.graph
        self._n = 0

    def const(self, name: str, value: npt.ArrayLike, dtype: type = np.float32) -> str:
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        self._n += 1
        out = f"{op_type.lower()}_{self._n}"
        self.graph.node.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def linear(
        self, x: str, weight: npt.NDArray[np.float32], bias: npt.NDArray[np.float32], name: str
    ) -> str:
        # weight is [out, in] as stored; MatMul wants [in, out]
        w = self.const(f"{name}.weight", np.ascontiguousarray(weight.T))
        return self.op("Add", self.op("MatMul", x, w), self.const(f"{name}.bias", bias))


def build_fp32(packed: PackedModel) -> onnx.ModelProto:
    """The float32 model (word embedding excepted, see the module docstring)."""
    cfg = packed.config
    hidden, heads = cfg.hidden, cfg.heads
    b = _Builder()

    word = packed.q4("emb.word", hidden)
    codes = b.const("word.codes", word.codes, np.int8)
    scales = b.const("word.scales", word.scales)
    del word
    # token type 0 is the only one used: fold it into the position table
    pos = packed.f32("emb.pos").reshape(cfg.max_positions, hidden)
    pos_type = b.const("pos_type", pos + packed.f32("emb.type")[:hidden])

    ids = INPUT_IDS
    blocks = b.op(
        "Reshape",
        b.op("Cast", b.op("Gather", codes, ids), to=TensorProto.FLOAT),
        b.const("shape.blocks", [0, 0, hidden // QK, QK], np.int64),
    )
    block_scales = b.op(
        "Unsqueeze", b.op("Gather", scales, ids), b.const("axis.last", [-1], np.int64)
    )
    x = b.op(
        "Reshape",
        b.op("Mul", blocks, block_scales),
        b.const("shape.hidden", [0, 0, hidden], np.int64),
    )
    seq = b.op("Gather", b.op("Shape", ids), b.const("one", 1, np.int64), axis=0)
    positions = b.op("Range", b.const("zero", 0, np.int64), seq, b.const("step", 1, np.int64))
    x = b.op("Add", x, b.op("Gather", pos_type, positions))
    x = _layer_norm(b, x, packed, "emb.ln", cfg.eps)

    mask = b.op("Cast", ATTENTION_MASK, to=TensorProto.FLOAT)  # [B, S]
    key_mask = b.op("Cast", ATTENTION_MASK, to=TensorProto.INT32)  # [B, S] 1 = attend
    b.const("f.one", 1.0)
    b.const("f.sqrt2", math.sqrt(2.0))
    b.const("f.half", 0.5)

    for layer in range(cfg.layers):
        p = f"l{layer}."
        q = b.linear(x, _w(packed, p + "q.w", hidden), packed.f32(p + "q.b"), p + "q")
        k = b.linear(x, _w(packed, p + "k.w", hidden), packed.f32(p + "k.b"), p + "k")
        v = b.linear(x, _w(packed, p + "v.w", hidden), packed.f32(p + "v.b"), p + "v")
        # [B, S, H] in and out; ORT's fused kernel splits heads and masks padding keys
        ctx = b.op("MultiHeadAttention", q, k, v, "", key_mask, domain=MS_DOMAIN, num_heads=heads)
        attn = b.linear(ctx, _w(packed, p + "ao.w", hidden), packed.f32(p + "ao.b"), p + "ao")
        x = _layer_norm(b, b.op("Add", x, attn), packed, p + "aln", cfg.eps)

        mid = b.linear(x, _w(packed, p + "fi.w", hidden), packed.f32(p + "fi.b"), p + "fi")
        mid = _gelu(b, mid)
        out = b.linear(mid, _w(packed, p + "fo.w", cfg.ffn), packed.f32(p + "fo.b"), p + "fo")
        x = _layer_norm(b, b.op("Add", x, out), packed, p + "oln", cfg.eps)

    # mean over attended tokens, then L2 norm (e5.c clamps the squared norm at 1e-12)
    mask3 = b.op("Unsqueeze", mask, "axis.last")  # [B, S, 1]
    axis1 = b.const("axes.seq", [1], np.int64)
    summed = b.op("ReduceSum", b.op("Mul", x, mask3), axis1, keepdims=0)  # [B, H]
    count = b.op("Max", b.op("ReduceSum", mask3, axis1, keepdims=0), "f.one")  # [B, 1]
    mean = b.op("Div", summed, count)
    norm = b.op("Max", b.op("ReduceL2", mean, axes=[-1], keepdims=1), b.const("f.eps", 1e-6))
    b.graph.node.append(helper.make_node("Div", [mean, norm], [OUTPUT]))

    b.graph.name = "multilingual-e5-small"
    b.graph.input.extend(
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in (INPUT_IDS, ATTENTION_MASK)
    )
    b.graph.output.append(
        helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", hidden])
    )
    b.model.ir_version = IR_VERSION
    b.model.opset_import.extend([helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
    return b.model


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic int8 quantisation of the dense MatMuls, per output channel."""
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        QuantType,
        quantize_dynamic,
    )

    # The quantiser advises pre-processing through the root logger (logging.warning), which
    # would also install a default handler on a process without one: hold both back.
    root = logging.getLogger()
    quiet, drop = logging.NullHandler(), _DropQuantizerAdvice()
    root.addHandler(quiet)
    root.addFilter(drop)
    try:
        quantize_dynamic(
            fp32_path,
            int8_path,
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT},
        )
    finally:
        root.removeFilter(drop)
        root.removeHandler(quiet)


class _DropQuantizerAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _w(packed: PackedModel, name: str, cols: int) -> npt.NDArray[np.float32]:
    return packed.q4(name, cols).dequantize()


def _layer_norm(b: _Builder, x: str, packed: PackedModel, name: str, eps: float) -> str:
    w = b.const(f"{name}.w", packed.f32(f"{name}.w"))
    bias = b.const(f"{name}.b", packed.f32(f"{name}.b"))
    return b.op("LayerNormalization", x, w, bias, axis=-1, epsilon=eps)


def _gelu(b: _Builder, x: str) -> str:
    # exact erf GELU as e5.c; ORT fuses this pattern (with the preceding bias) into BiasGelu
    erf = b.op("Erf", b.op("Div", x, "f.sqrt2"))
    return b.op("Mul", b.op("Mul", x, b.op("Add", erf, "f.one")), "f.half")
