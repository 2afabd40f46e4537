"""``GET /models`` response (§3)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    version: str | None = None  # a local model served from the registry: NAME@VERSION
    kind: Literal["embedding"] | None = None  # only on embedding models (/v1/embeddings)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
