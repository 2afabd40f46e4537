"""A remote OpenAI-compatible ``/embeddings`` upstream (``backend: openai``, ``kind: embedding``).

The client's body goes upstream with the upstream's model name and ``encoding_format: base64``
(a quarter of the bytes of floats, and no float parsing here); the vectors come back as
float32 and the edge encodes them as the client asked. Upstream errors keep their status, as
chat calls' do.
"""

from __future__ import annotations

import base64
import binascii

import aiohttp
import numpy as np
import orjson

from seekport.config import OpenAIModelConfig
from seekport.errors import OverloadedError, UpstreamError, UpstreamTimeoutError
from seekport.gateway.backends.openai_compat import _read_body, _status_error
from seekport.gateway.embeddings import Embedded, EmbeddingCall
from seekport.telemetry.metrics import Metrics

_MAX_BODY = 256 << 20  # 2,048 inputs of 3,072 floats as JSON numbers fit
_MAX_ERROR_BODY = 64 << 10


class RemoteEmbeddingBackend:
    kind = "openai"

    def __init__(
        self, cfg: OpenAIModelConfig, metrics: Metrics, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.model = cfg.name
        self.dim: int | None = None
        self._cfg = cfg
        self._metrics = metrics
        self._upstream_model = cfg.upstream_model or cfg.name
        self._url = cfg.base_url + "/embeddings"
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(
            total=cfg.total_timeout_s,
            connect=cfg.pool_timeout_s,
            sock_connect=cfg.connect_timeout_s,
            sock_read=cfg.read_timeout_s,
        )
        key = cfg.upstream_api_key()
        self._headers = {"content-type": "application/json"}
        if key:
            self._headers["authorization"] = f"Bearer {key}"
        self._in_flight = 0
        self._max_in_flight = cfg.max_connections + cfg.max_waiting

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._cfg.max_connections),
                timeout=self._timeout,
            )

    async def aclose(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def ready(self) -> bool:
        return True

    def _fail(self, reason: str) -> None:
        self._metrics.upstream_errors.labels(self.kind, reason).inc()

    async def embed(self, call: EmbeddingCall) -> Embedded:
        if self._session is None:
            raise OverloadedError("the server is starting or stopping; retry", retry_after=1)
        if self._in_flight >= self._max_in_flight:
            self._fail("overloaded")
            raise OverloadedError(
                f"model '{self.model}' is overloaded: {self._in_flight} calls are in flight; "
                "retry later",
                retry_after=1,
            )
        self._in_flight += 1
        try:
            return await self._call(call)
        finally:
            self._in_flight -= 1

    async def _call(self, call: EmbeddingCall) -> Embedded:
        assert self._session is not None
        body = {**call.body, "model": self._upstream_model, "encoding_format": "base64"}
        try:
            async with self._session.post(
                self._url,
                data=orjson.dumps(body),
                headers={**self._headers, "x-request-id": call.request_id},
                allow_redirects=False,
                timeout=self._timeout,
            ) as resp:
                if resp.status >= 400:
                    self._fail(f"http_{resp.status}")
                    err = await _read_body(resp, _MAX_ERROR_BODY, truncate=True)
                    raise _status_error(resp.status, resp.headers, err)
                data = await _read_body(resp, _MAX_BODY, truncate=False)
        except TimeoutError as exc:
            self._fail("timeout")
            raise UpstreamTimeoutError(
                f"upstream for '{self.model}' did not answer in time"
            ) from exc
        except aiohttp.ClientError as exc:
            self._fail("connect")
            raise UpstreamError(
                f"upstream for '{self.model}' is unreachable: {type(exc).__name__}"
            ) from exc
        return self._parse(data, call)

    def _parse(self, data: bytes, call: EmbeddingCall) -> Embedded:
        n = len(call.texts if call.texts is not None else call.tokens or ())
        try:
            parsed = orjson.loads(data)
            items = sorted(parsed["data"], key=lambda d: int(d["index"]))
            rows = [_vector(d["embedding"]) for d in items]
            usage = parsed.get("usage") or {}
            tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self._fail("malformed")
            raise UpstreamError(f"upstream for '{self.model}' sent a malformed answer") from exc
        if len(rows) != n or len({len(r) for r in rows}) > 1:
            self._fail("malformed")
            raise UpstreamError(
                f"upstream for '{self.model}' sent {len(rows)} embeddings for {n} inputs"
            )
        vectors = np.stack(rows).astype(np.float32, copy=False)
        self.dim = int(vectors.shape[1])
        return Embedded(vectors, tokens)


def _vector(value: object) -> np.ndarray:
    """One embedding as the upstream sent it: base64 of float32, or (an upstream that ignores
    ``encoding_format``) a list of numbers."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError("bad base64") from exc
        if len(raw) % 4:
            raise ValueError("not float32")
        return np.frombuffer(raw, dtype="<f4")
    if isinstance(value, list) and value and all(isinstance(x, int | float) for x in value):
        return np.asarray(value, dtype=np.float32)
    raise ValueError("not an embedding")
