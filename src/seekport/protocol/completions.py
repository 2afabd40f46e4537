"""Legacy text completions and FIM (``/completions``, ``/beta/completions``), §6.1 and §9.1."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from seekport.protocol.common import LAX, WIRE, GenerationRequest, ResponseEnvelope


class CompletionRequest(GenerationRequest):
    """Body of ``POST /completions``. ``prompt`` must be one string here."""

    model_config = WIRE

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    suffix: str | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: bool | None = False
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    seed: int | None = None
    user: str | None = None

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


# ---- responses


class CompletionLogprobs(BaseModel):
    model_config = LAX
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    model_config = LAX
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class Completion(ResponseEnvelope):
    """Body of a ``/completions`` answer, and (with ``finish_reason`` null) of each chunk."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
