"""What chat and text completions share: strict wire config, stop sequences, stream options."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOP_SEQUENCES = 16
MAX_STOP_CHARS = 256

# Wire models are strict (a string "1.3" is not a temperature) and keep unknown fields, which
# are logged and forwarded to remote upstreams.
WIRE = ConfigDict(extra="allow", strict=True)

StopItem = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]


class StreamOptions(BaseModel):
    model_config = WIRE
    include_usage: bool | None = False


MAX_CHOICES = 16  # ``n``: choices one request may ask for (each is a full generation)


class GenerationRequest(BaseModel):
    """Fields and helpers common to ``/chat/completions`` and ``/completions``."""

    model_config = WIRE

    model: Annotated[str, Field(min_length=1, max_length=256)]
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = None
    stop: StopItem | Annotated[list[StopItem], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _no_empty_stop(cls, v: object) -> object:
        items = v if isinstance(v, list) else [v]
        if any(s == "" for s in items):
            raise ValueError("stop sequences must not be empty strings")
        return v

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def choices(self) -> int:
        """How many choices the answer has (``n``, default 1)."""
        return self.n or 1

    @property
    def wants_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# ---- responses (lax: they are also read from upstreams, whose extra fields are kept)

LAX = ConfigDict(extra="allow")
Count = Annotated[int, Field(ge=0)]


class PromptTokensDetails(BaseModel):
    model_config = LAX
    cached_tokens: Count = 0


class CompletionTokensDetails(BaseModel):
    model_config = LAX
    reasoning_tokens: Count = 0


class Usage(BaseModel):
    """Token usage, OpenAI's fields plus DeepSeek's cache-hit split."""

    model_config = LAX
    prompt_tokens: Count = 0
    completion_tokens: Count = 0
    total_tokens: Count = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    prompt_cache_hit_tokens: Count | None = None
    prompt_cache_miss_tokens: Count | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        if self.prompt_cache_hit_tokens is not None:
            return self.prompt_cache_hit_tokens
        return self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0

    @classmethod
    def of(cls, prompt: int, completion: int, cached: int, reasoning: int | None) -> Usage:
        """Our own usage (local engine): both the OpenAI and the DeepSeek cache fields."""
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
            prompt_cache_hit_tokens=cached,
            prompt_cache_miss_tokens=prompt - cached,
            completion_tokens_details=(
                None if reasoning is None else CompletionTokensDetails(reasoning_tokens=reasoning)
            ),
        )


class ResponseEnvelope(BaseModel):
    """What every completion body and chunk carries around its choices."""

    model_config = LAX
    id: str
    created: int
    model: str
    system_fingerprint: str | None = None
    usage: Usage | None = None
