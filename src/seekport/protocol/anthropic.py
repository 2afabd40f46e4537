"""Anthropic Messages API: the request models, and their translation to our chat request.

``POST /anthropic/v1/messages`` is served over the same backends as ``/chat/completions``: the
request is translated here into a ``ChatCompletionRequest`` (and the JSON body a remote upstream
is sent), so ChatService and the backends never see the Anthropic format. The answer's events
are written back by ``api/encoders/anthropic.py``. Unknown fields are ignored (Claude Code sends
many: ``context_management``, ``cache_control``, ...).

Translation (OpenAI/DeepSeek chat format on the right):

- ``system`` (string or text blocks), and ``role: "system"`` messages mid-conversation →
  system messages;
- user ``text`` blocks → user content; ``tool_result`` blocks → ``tool`` messages (before the
  user's text, in order; ``is_error`` is ignored, as DeepSeek ignores it); ``image`` blocks →
  ``image_url`` parts for remote upstreams (local models refuse them with a 400);
- assistant ``thinking`` → ``reasoning_content``, ``text`` → content, ``tool_use`` →
  ``tool_calls`` (``input`` as JSON ``arguments``); ``redacted_thinking`` is dropped;
- ``tools`` (custom tools with ``input_schema``; server tools are dropped) → function tools;
  ``tool_choice`` auto / any / tool / none → auto / required / the named function / none;
- ``max_tokens``, ``stop_sequences`` → ``stop``, ``temperature``, ``top_p``, ``top_k``;
  ``thinking`` enabled / adaptive / disabled → DeepSeek's ``thinking`` enabled / disabled;
  ``output_config.effort`` → ``reasoning_effort``; ``metadata.user_id`` → ``user_id`` (a value
  outside DeepSeek's ``[A-Za-z0-9_-]{1,512}``, e.g. Claude Code's JSON string, is hashed).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from seekport.errors import InvalidRequestError, ModelNotFoundError
from seekport.protocol.chat import MAX_TOOLS, ChatCompletionRequest
from seekport.protocol.common import MAX_STOP_SEQUENCES

# strict types, unknown fields ignored (not forwarded: the upstream speaks another format)
ANTHROPIC = ConfigDict(extra="ignore", strict=True)
_USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,512}$")


class TextBlock(BaseModel):
    model_config = ANTHROPIC
    type: Literal["text"]
    text: str


class ImageBlock(BaseModel):
    model_config = ANTHROPIC
    type: Literal["image"]
    source: dict[str, Any]


class ToolUseBlock(BaseModel):
    model_config = ANTHROPIC
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(BaseModel):
    model_config = ANTHROPIC
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] = ""
    is_error: bool | None = None


class ThinkingBlock(BaseModel):
    model_config = ANTHROPIC
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(BaseModel):
    model_config = ANTHROPIC
    type: Literal["redacted_thinking"]
    data: str = ""


Block = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock,
    Field(discriminator="type"),
]


class Message(BaseModel):
    model_config = ANTHROPIC
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class ToolDef(BaseModel):
    """A custom tool; server tools (``type`` such as ``web_search_20250305``) are dropped."""

    model_config = ANTHROPIC
    name: Annotated[str, Field(min_length=1, max_length=128)]
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class ToolChoice(BaseModel):
    model_config = ANTHROPIC
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(BaseModel):
    model_config = ANTHROPIC
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None  # ignored, as DeepSeek ignores it


class Metadata(BaseModel):
    model_config = ANTHROPIC
    user_id: str | None = None


class OutputConfig(BaseModel):
    model_config = ANTHROPIC
    effort: str | None = None


class CountTokensRequest(BaseModel):
    """Body of ``POST /anthropic/v1/messages/count_tokens`` (and the base of a message request)."""

    model_config = ANTHROPIC
    model: Annotated[str, Field(min_length=1, max_length=256)]
    messages: Annotated[list[Message], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: Annotated[list[ToolDef], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


class MessagesRequest(CountTokensRequest):
    """Body of ``POST /anthropic/v1/messages``."""

    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: (
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_STOP_SEQUENCES)]
        | None
    ) = None
    stream: bool | None = False
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None


# ---- model names


def served_model(name: str, served: list[str], mapping: dict[str, str]) -> str:
    """The served model an Anthropic request's ``model`` names: a served id as is; else the
    longest ``mapping`` pattern (fnmatch) that matches, so ``claude-opus*`` wins over
    ``claude*`` whatever the order; else any ``claude*`` name goes to the first served model;
    else 404."""
    if name in served:
        return name
    for pattern, target in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        if fnmatch.fnmatchcase(name, pattern):
            return target
    if name.startswith("claude") and served:
        return served[0]
    raise ModelNotFoundError(
        f"model: the model '{name}' does not exist; GET /v1/models lists the models served "
        "here, and claude-* names map to them",
        param="model",
    )


# ---- translation to the chat format


def _image_part(block: ImageBlock) -> dict[str, Any]:
    src = block.source
    kind = src.get("type")
    if kind == "base64":
        url = f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}"
    elif kind == "url":
        url = str(src.get("url", ""))
    else:
        raise InvalidRequestError(
            f"image source type '{kind}' is not supported (use base64 or url)",
            param="messages",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _text_of(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.text for b in content if isinstance(b, TextBlock))


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Plain text when there is no image (every backend takes it), else OpenAI parts."""
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _messages(req: CountTokensRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.system:
        out.append({"role": "system", "content": _text_of(req.system)})
    for i, m in enumerate(req.messages):
        if isinstance(m.content, str):
            out.append({"role": m.role, "content": m.content})
            continue
        if m.role == "system":
            out.append({"role": "system", "content": _text_of(m.content)})
        elif m.role == "assistant":
            out.append(_assistant(m.content, i))
        else:
            out.extend(_user(m.content))
    return out


def _assistant(blocks: list[Any], i: int) -> dict[str, Any]:
    text: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for b in blocks:
        if isinstance(b, TextBlock):
            text.append(b.text)
        elif isinstance(b, ThinkingBlock):
            thinking.append(b.thinking)
        elif isinstance(b, ToolUseBlock):
            arguments = orjson.dumps(b.input).decode()
            calls.append(
                {
                    "id": b.id,
                    "type": "function",
                    "function": {"name": b.name, "arguments": arguments},
                }
            )
        elif not isinstance(b, RedactedThinkingBlock):
            raise InvalidRequestError(
                f"messages.{i}: assistant messages take text, thinking and tool_use blocks",
                param=f"messages.{i}.content",
            )
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        msg["tool_calls"] = calls
    if thinking:
        msg["reasoning_content"] = "".join(thinking)
    if msg["content"] is None and not calls:
        msg["content"] = ""
    return msg


def _user(blocks: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for b in blocks:
        if isinstance(b, ToolResultBlock):
            content = b.content
            if isinstance(content, list):
                images = [_image_part(p) for p in content if isinstance(p, ImageBlock)]
                if images:
                    parts.extend(images)  # tool messages take text only: the images follow
                content = _text_of(content)
            out.append({"role": "tool", "tool_call_id": b.tool_use_id, "content": content})
        elif isinstance(b, TextBlock):
            parts.append({"type": "text", "text": b.text})
        elif isinstance(b, ImageBlock):
            parts.append(_image_part(b))
        # thinking and tool_use blocks in a user turn carry nothing for the model
    if parts:
        out.append({"role": "user", "content": _user_content(parts)})
    return out


def _tools(req: CountTokensRequest) -> list[dict[str, Any]] | None:
    if not req.tools:
        return None
    tools = []
    for t in req.tools:
        if t.type not in (None, "custom"):
            continue  # a server tool (web search, bash, ...): not ours to run
        fn: dict[str, Any] = {"name": t.name, "parameters": t.input_schema or {"type": "object"}}
        if t.description:
            fn["description"] = t.description
        tools.append({"type": "function", "function": fn})
    return tools or None


def _tool_choice(choice: ToolChoice | None) -> str | dict[str, Any] | None:
    if choice is None:
        return None
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequestError("tool_choice.name is required", param="tool_choice.name")
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def user_id(value: str) -> str:
    """DeepSeek's ``user_id`` for ``metadata.user_id``: as is when it fits the pattern, else a
    stable hash of it (Claude Code sends a JSON string)."""
    if _USER_ID.match(value):
        return value
    return "u_" + hashlib.sha256(value.encode()).hexdigest()[:32]


def chat_body(req: MessagesRequest, model: str) -> dict[str, Any]:
    """The chat-completions JSON body this Anthropic request stands for (sent upstream as is)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": _messages(req),
        "max_tokens": req.max_tokens,
        "stream": bool(req.stream),
    }
    tools = _tools(req)
    if tools:
        body["tools"] = tools
        choice = _tool_choice(req.tool_choice)
        if choice is not None:
            body["tool_choice"] = choice
    if req.stop_sequences:
        body["stop"] = req.stop_sequences
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.thinking is not None:
        body["thinking"] = {"type": "disabled" if req.thinking.type == "disabled" else "enabled"}
    if req.output_config is not None and req.output_config.effort:
        body["reasoning_effort"] = req.output_config.effort
    if req.metadata is not None and req.metadata.user_id:
        body["user_id"] = user_id(req.metadata.user_id)
    return body


def count_body(req: CountTokensRequest, model: str) -> dict[str, Any]:
    """The chat body whose prompt ``count_tokens`` measures (messages and tools)."""
    body: dict[str, Any] = {"model": model, "messages": _messages(req)}
    tools = _tools(req)
    if tools:
        body["tools"] = tools
    return body


def has_images(body: dict[str, Any]) -> bool:
    return any(isinstance(m.get("content"), list) for m in body["messages"])


def chat_request(body: dict[str, Any]) -> ChatCompletionRequest:
    """The validated chat request of a translated body. Image parts are left out (our chat
    model takes text parts only; a remote upstream gets them through the body)."""
    if has_images(body):
        messages = [
            {**m, "content": [p for p in m["content"] if p["type"] == "text"]}
            if isinstance(m.get("content"), list)
            else m
            for m in body["messages"]
        ]
        body = {**body, "messages": messages}
    try:
        return ChatCompletionRequest.model_validate(body).as_ceiling()
    except ValueError as exc:
        raise InvalidRequestError(f"messages: {exc}", param="messages") from exc


def estimate_tokens(body: dict[str, Any]) -> int:
    """``count_tokens`` for a model whose tokenizer we do not hold (a remote upstream): about
    four characters a token over the translated messages and tool definitions."""
    chars = len(orjson.dumps(body["messages"])) + len(orjson.dumps(body.get("tools") or []))
    return max(1, (chars + 3) // 4)
