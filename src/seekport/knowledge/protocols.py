"""What the knowledge layer needs from outside it: an embedder. ``api/app.py`` (or the CLI)
wires the gateway's embedding backend in; the knowledge layer never imports the engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from seekport.protocol.embeddings import InputType


class Embedder(Protocol):
    """A text embedder, blocking (the knowledge layer calls it from worker threads)."""

    model: str

    @property
    def max_tokens(self) -> int:
        """The most tokens one text may have, prefix and special tokens included."""

    def token_ids(self, text: str) -> list[int]:
        """The text's tokens without prefix or special tokens (chunk sizes count these)."""

    def embed_texts(self, texts: Sequence[str], input_type: InputType) -> npt.NDArray[np.float32]:
        """One L2-normalised row per text."""
