"""Chat completions: request and response models (see shared/docs/deepseek_api.md §4, and
deepseek_api_2026.md §2 for thinking, reasoning_effort, user_id and array content)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, model_validator

from seekport.errors import InvalidRequestError
from seekport.protocol.common import LAX, WIRE, GenerationRequest, ResponseEnvelope

MAX_TOOLS = 128

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra"]
# DeepSeek's effort levels and the aliases it maps to them (thinking guide, Oct/Nov 2026);
# "none" turns thinking off.
EFFORT_LEVELS: dict[str, Literal["low", "high", "max"]] = {
    "minimal": "low",
    "low": "low",
    "medium": "high",
    "high": "high",
    "xhigh": "high",
    "max": "max",
    "ultra": "max",
}
FORCED_TOOL_CHOICE_WHILE_THINKING = "Thinking mode does not support this tool_choice"


class TextPart(BaseModel):
    """One text part of an array ``content`` (OpenAI accepts these; we flatten them)."""

    model_config = WIRE
    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    model_config = WIRE
    url: Annotated[str, Field(min_length=1)]
    detail: str | None = None


class ImagePart(BaseModel):
    """An image of a user message (DeepSeek's vision models); remote upstreams only."""

    model_config = WIRE
    type: Literal["image_url"]
    image_url: ImageUrl


class FilePart(BaseModel):
    """A file of a user message: an uploaded ``file_id`` or inline ``file_data``."""

    model_config = WIRE
    type: Literal["file"]
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FilePart:
        if (self.file_id is None) == (self.file_data is None):
            raise ValueError("a file part needs exactly one of file_id and file_data")
        return self


ContentPart = Annotated[TextPart | ImagePart | FilePart, Field(discriminator="type")]


class Thinking(BaseModel):
    """DeepSeek's thinking switch: ``{"type": "enabled" | "disabled"}`` (default: the model's)."""

    model_config = WIRE
    type: Literal["enabled", "disabled"]


class FunctionCall(BaseModel):
    model_config = WIRE
    name: str
    arguments: str = ""


class ToolCall(BaseModel):
    model_config = WIRE
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of the conversation. ``developer`` is mapped to ``system``."""

    model_config = WIRE
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    prefix: bool | None = None

    @model_validator(mode="after")
    def _content_rules(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"messages with role '{self.role}' must have a content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("messages with role 'tool' must have a tool_call_id")
        if self.role in ("system", "developer", "assistant") and self.has_media():
            raise ValueError(f"messages with role '{self.role}' may hold text parts only")
        return self

    def has_media(self) -> bool:
        """The content has an image or file part (only text reaches a local model)."""
        return isinstance(self.content, list) and any(
            not isinstance(p, TextPart) for p in self.content
        )

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class ResponseFormat(BaseModel):
    model_config = WIRE
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None


class FunctionDef(BaseModel):
    model_config = WIRE
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = WIRE
    type: Literal["function"] = "function"
    function: FunctionDef


class ChatCompletionRequest(GenerationRequest):
    """Body of ``POST /chat/completions``. Unknown fields are kept (``model_extra``)."""

    model_config = WIRE

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    response_format: ResponseFormat | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    seed: int | None = None
    logprobs: bool | None = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    tools: Annotated[list[Tool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None
    # DeepSeek (2026): the thinking switch, its effort, and the end user for isolation
    thinking: Thinking | None = None
    reasoning_effort: ReasoningEffort | None = None
    user_id: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    # set by a translation whose max_tokens is a ceiling, not a wish (see ``output_ceiling``)
    _output_ceiling: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _cross_field(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and self.top_logprobs > 0 and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs: true")
        return self

    @property
    def thinking_enabled(self) -> bool | None:
        """The thinking switch the request sets: ``thinking.type``, else ``reasoning_effort:
        none`` (off); None when it sets neither (the model's default applies)."""
        if self.thinking is not None:
            return self.thinking.type == "enabled"
        if self.reasoning_effort == "none":
            return False
        return None

    @property
    def effort(self) -> Literal["low", "high", "max"] | None:
        """``reasoning_effort`` mapped to DeepSeek's levels (``minimal`` → low, ``medium`` /
        ``xhigh`` → high, ``ultra`` → max); None when unset or ``none``."""
        if self.reasoning_effort is None or self.reasoning_effort == "none":
            return None
        return EFFORT_LEVELS[self.reasoning_effort]

    def refuse_forced_tool_choice_while_thinking(self) -> None:
        """DeepSeek refuses ``tool_choice`` ``required`` or a named function in thinking mode
        (400); we do the same where the request (or its alias) turns thinking on explicitly."""
        forced = self.tool_choice == "required" or isinstance(self.tool_choice, dict)
        if forced and self.thinking_enabled:
            raise InvalidRequestError(
                f"{FORCED_TOOL_CHOICE_WHILE_THINKING}: tool_choice 'required' or a named "
                'function needs thinking disabled ({"thinking": {"type": "disabled"}})',
                param="tool_choice",
            )

    @property
    def output_limit(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens

    @property
    def output_ceiling(self) -> bool:
        """``max_tokens`` is only a ceiling: a model that allows fewer answers with what it
        allows (``length`` when it runs out) instead of refusing. Anthropic's ``max_tokens`` is
        required and clients size it by their own model tables (Claude Code asks 32000 or
        more), so an answer from a smaller model is what the caller wants."""
        return self._output_ceiling

    def as_ceiling(self) -> ChatCompletionRequest:
        """Mark ``max_tokens`` as a ceiling (see ``output_ceiling``); returns ``self``."""
        self._output_ceiling = True
        return self


# ---- responses: what the encoders write (tests check the encoders' output against these)


class TopLogprob(BaseModel):
    model_config = LAX
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobEntry(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    model_config = LAX
    content: list[TokenLogprobEntry] | None = None


class AssistantMessage(BaseModel):
    model_config = LAX
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    model_config = LAX
    index: int = 0
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletion(ResponseEnvelope):
    """Body of a non-stream ``/chat/completions`` answer."""

    object: Literal["chat.completion"] = "chat.completion"
    choices: list[Choice]


class ToolCallChunk(BaseModel):
    model_config = LAX
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: dict[str, str] | None = None


class ChunkDelta(BaseModel):
    model_config = LAX
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallChunk] | None = None


class ChunkChoice(BaseModel):
    model_config = LAX
    index: int = 0
    delta: ChunkDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(ResponseEnvelope):
    """One ``data:`` event of a streamed ``/chat/completions`` answer."""

    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]
