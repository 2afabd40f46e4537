"""Mapping a validated request to what the local engine runs: chat-template messages and
sampling parameters, refusing what the engine cannot honour."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson

from seekport.config import LocalModelConfig
from seekport.errors import ContextLengthExceededError, InvalidRequestError
from seekport.gateway.backends.base import BackendCall
from seekport.protocol.chat import ChatCompletionRequest, ChatMessage
from seekport.protocol.completions import CompletionRequest

if TYPE_CHECKING:
    from seekport.engine.sampling import SamplingParams

# OpenAI parameters that change results and that this engine cannot honour (yet).
# Each maps to the one value that changes nothing.
_UNSUPPORTED_EXTRAS: dict[str, object] = {
    "best_of": 1,
    "modalities": ["text"],
    "audio": None,
    "prediction": None,
}


def template_message(m: ChatMessage) -> dict[str, Any]:
    """A message as chat templates expect it: plain text content, tool fields kept."""
    out: dict[str, Any] = {
        "role": "system" if m.role == "developer" else m.role,
        "content": m.text(),
    }
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {
                    "name": c.function.name,
                    "arguments": _json_or_text(c.function.arguments),
                },
            }
            for c in m.tool_calls
        ]
    if m.reasoning_content:  # templates that replay earlier reasoning read it (Qwen3)
        out["reasoning_content"] = m.reasoning_content
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    if m.name:
        out["name"] = m.name
    return out


def _json_or_text(arguments: str) -> Any:
    """Templates render arguments as JSON objects; clients send them as JSON strings."""
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments


def _max_tokens(
    cfg: LocalModelConfig, req: ChatCompletionRequest | CompletionRequest, prompt_len: int
) -> int:
    n_ctx = cfg.context_length
    room = n_ctx - prompt_len
    if room <= 0:
        raise ContextLengthExceededError(
            f"This model's maximum context length is {n_ctx} tokens; your prompt has "
            f"{prompt_len} tokens. Shorten the messages.",
            param="messages",
        )
    asked = req.max_tokens if isinstance(req, CompletionRequest) else req.output_limit
    cap = cfg.max_output_tokens
    if asked is not None and isinstance(req, ChatCompletionRequest) and req.output_ceiling:
        return min(asked, cap, room)  # a ceiling (Anthropic's max_tokens): what fits
    if asked is not None and asked > cap:
        raise InvalidRequestError(
            f"max_tokens is {asked}; this model allows at most {cap}", param="max_tokens"
        )
    if asked is not None and prompt_len + asked > n_ctx:
        raise ContextLengthExceededError(
            f"This model's maximum context length is {n_ctx} tokens. However, you requested "
            f"{prompt_len + asked} tokens ({prompt_len} in the prompt, {asked} for "
            f"max_tokens). Reduce the prompt or max_tokens.",
            param="max_tokens",
        )
    default = 16 if isinstance(req, CompletionRequest) else cap
    return min(asked if asked is not None else default, room)


def reject_unsupported(
    req: ChatCompletionRequest | CompletionRequest, model: str, tool_parser: str | None
) -> None:
    """Result-changing parameters the local engine cannot honour are refused, not ignored."""
    extra = req.model_extra or {}
    for name, harmless in _UNSUPPORTED_EXTRAS.items():
        if extra.get(name) not in (None, harmless):
            raise InvalidRequestError(
                f"'{name}' is not supported by the local model '{model}'", param=name
            )
    if isinstance(req, CompletionRequest):
        if req.echo:
            raise InvalidRequestError("echo is not supported by local models", param="echo")
        return
    if req.tools and req.tool_choice != "none":
        if tool_parser and req.tool_choice not in (None, "auto"):
            raise InvalidRequestError(
                f"model '{model}' (local, tool_parser {tool_parser}) can only choose tools "
                "itself (tool_choice auto)",
                param="tool_choice",
            )
        if not tool_parser and req.response_format and req.response_format.type != "text":
            raise InvalidRequestError(
                f"model '{model}' (local) answers tools through a grammar, so it cannot also "
                "follow a response_format",
                param="response_format",
            )
    if any(m.has_media() for m in req.messages):
        raise InvalidRequestError(
            f"model '{model}' (local) reads text only: image and file parts are not supported",
            param="messages",
        )


def chat_prefix(
    req: ChatCompletionRequest, model: str, *, beta: bool, tool_parser: str | None, reasoning: bool
) -> ChatMessage | None:
    """The assistant message the model is to continue (DeepSeek's chat prefix completion: the
    last message, with ``prefix: true``), or None; what cannot be continued is refused."""
    marked = [i for i, m in enumerate(req.messages) if m.prefix]
    if not marked:
        return None
    if not beta:
        raise InvalidRequestError(
            "chat prefix completion (a message with prefix: true) is a beta feature: use the "
            "/beta base URL (POST /beta/chat/completions)",
            param="messages",
        )
    last = len(req.messages) - 1
    if marked[0] != last:
        raise InvalidRequestError(
            f"only the last message may have prefix: true; messages[{marked[0]}] has it",
            param="messages",
        )
    m = req.messages[last]
    if m.role != "assistant":
        raise InvalidRequestError(
            f"prefix: true marks the assistant message the model continues; messages[{last}] "
            f"is a {m.role} message",
            param="messages",
        )
    if m.tool_calls:
        raise InvalidRequestError(
            "the prefix message cannot have tool_calls: the model continues its content",
            param="messages",
        )
    if tool_parser is None and req.tools and req.tool_choice != "none":
        raise InvalidRequestError(
            f"model '{model}' (local) answers tools through a grammar, which would conflict "
            "with the given prefix: send no tools, or tool_choice none, with a prefix",
            param="messages",
        )
    if m.reasoning_content and not reasoning:
        raise InvalidRequestError(
            f"model '{model}' (local) does not reason, so the prefix's reasoning_content "
            "cannot be continued",
            param="messages",
        )
    if m.reasoning_content and req.thinking_enabled is False:
        raise InvalidRequestError(
            "the prefix's reasoning_content is continued in thinking mode, which this "
            "request turns off",
            param="messages",
        )
    return m


def _structured(
    req: ChatCompletionRequest | CompletionRequest,
) -> tuple[dict[str, Any] | None, int | None, dict[int, float] | None]:
    """(json_schema, top-n logprobs, logit_bias) asked for by the request."""
    if isinstance(req, CompletionRequest):
        return None, req.logprobs, None
    json_schema: dict[str, Any] | None = None
    rf = req.response_format
    if rf is not None and rf.type == "json_object":
        json_schema = {}
    elif rf is not None and rf.type == "json_schema":
        schema = (rf.json_schema or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequestError(
                "response_format.json_schema.schema must be an object", param="response_format"
            )
        json_schema = schema
    logprobs = max(1, req.top_logprobs or 0) if req.logprobs else None
    logit_bias: dict[int, float] | None = None
    if req.logit_bias:
        try:
            logit_bias = {int(k): v for k, v in req.logit_bias.items()}
        except ValueError as exc:
            raise InvalidRequestError(
                "logit_bias keys must be token ids", param="logit_bias"
            ) from exc
    return json_schema, logprobs, logit_bias


def sampling_params(
    cfg: LocalModelConfig,
    req: ChatCompletionRequest | CompletionRequest,
    prompt_len: int,
    stop: list[str],
) -> SamplingParams:
    from seekport.engine.sampling import SamplingParams

    json_schema, logprobs, logit_bias = _structured(req)
    return SamplingParams(
        max_tokens=_max_tokens(cfg, req, prompt_len),
        temperature=cfg.default_temperature if req.temperature is None else req.temperature,
        top_p=cfg.default_top_p if req.top_p is None else req.top_p,
        top_k=cfg.default_top_k if req.top_k is None else req.top_k,
        min_p=cfg.default_min_p if req.min_p is None else req.min_p,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        seed=req.seed,
        stop=[*req.stop_list, *stop],
        logprobs=logprobs,
        logit_bias=logit_bias,
        json_schema=json_schema,
    )


def warmup_call(model: str) -> BackendCall:
    """The warm-up's call: two greedy tokens after a one-word question."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 2,
        "temperature": 0,
    }
    req = ChatCompletionRequest.model_validate(body)
    return BackendCall("chat", model, req, body, "warmup_" + uuid.uuid4().hex)
