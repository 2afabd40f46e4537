"""OpenAI Responses API (stateless, as DeepSeek's ``/responses``): the request model, and its
translation to our chat request.

``POST /v1/responses`` is served over the same backends as ``/chat/completions``: the request
is translated here into a ``ChatCompletionRequest`` (and the JSON body a remote upstream is
sent), so ChatService and the backends never see the Responses format. The answer's events are
written back by ``api/encoders/responses.py``. Unknown fields are ignored.

Stateless: nothing is stored. ``store`` is accepted and ignored; ``previous_response_id`` is a
400 (send the whole conversation in ``input``).

Translation (chat format on the right):

- ``instructions`` → a system message first; ``input`` as a string → one user message;
- ``input`` items: ``message`` (role user / system / developer / assistant; content a string or
  ``input_text`` / ``output_text`` parts, and ``input_image`` parts with ``image_url`` in user
  messages: ``image_url`` chat parts, for remote upstreams only) → that message
  (``developer`` → system);
  ``function_call`` → an assistant ``tool_calls`` entry (consecutive calls share one assistant
  message); ``function_call_output`` → a ``tool`` message; ``reasoning`` (its summary or
  content text) → ``reasoning_content`` of the next assistant message; other item types → 400;
- function ``tools`` (flat: ``{type, name, description, parameters}``) → chat function tools;
  ``custom`` (freeform) tools such as Codex's ``apply_patch`` → a function with one string
  argument ``input`` (its grammar is not enforced; the answer's calls to it come back as
  ``custom_tool_call`` items), and ``custom_tool_call`` / ``custom_tool_call_output`` items are
  translated like function calls; other (built-in) tool types are dropped; ``tool_choice``
  auto / required / none / ``{type: function | custom, name}`` → the same in chat's shape;
- ``reasoning.effort`` → ``reasoning_effort`` (``none`` → ``thinking: disabled``);
  ``max_output_tokens`` → ``max_tokens``; ``temperature``, ``top_p``;
  ``text.format`` ``json_schema`` / ``json_object`` → ``response_format``; ``user`` →
  ``user_id`` (hashed when outside DeepSeek's pattern); ``input`` or ``instructions`` is
  required.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from seekport.errors import InvalidRequestError
from seekport.protocol.anthropic import has_images, user_id
from seekport.protocol.chat import MAX_TOOLS, ChatCompletionRequest

RESPONSES = ConfigDict(extra="ignore")


class Reasoning(BaseModel):
    model_config = RESPONSES
    effort: str | None = None


class TextConfig(BaseModel):
    model_config = RESPONSES
    format: dict[str, Any] | None = None


class ResponsesRequest(BaseModel):
    """Body of ``POST /v1/responses``."""

    model_config = RESPONSES
    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: Annotated[list[dict[str, Any]], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: str | dict[str, Any] | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    text: TextConfig | None = None
    stream: bool | None = False
    store: bool | None = None  # accepted, ignored: nothing is stored
    previous_response_id: str | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None


def _bad(message: str, param: str = "input") -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"input.{i}.content must be a string or a list of parts", f"input.{i}")
    out = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            out.append(str(part.get("text", "")))
        elif kind == "refusal":
            out.append(str(part.get("refusal", "")))
        else:
            raise _bad(
                f"input.{i}.content: part type '{kind}' is not supported (send input_text)",
                f"input.{i}.content",
            )
    return "".join(out)


def _image(part: dict[str, Any], i: int) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise _bad(
            f"input.{i}.content: input_image needs image_url (file_id is not supported here)",
            f"input.{i}.content",
        )
    image: dict[str, Any] = {"url": url}
    if part.get("detail"):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _user_content(content: Any, i: int) -> str | list[dict[str, Any]]:
    """A user message's content: plain text, or chat parts when it holds images (which reach
    remote upstreams only)."""
    if not isinstance(content, list) or not any(
        isinstance(p, dict) and p.get("type") == "input_image" for p in content
    ):
        return _text(content, i)
    return [
        _image(p, i)
        if isinstance(p, dict) and p.get("type") == "input_image"
        else {"type": "text", "text": _text([p], i)}
        for p in content
    ]


def _messages(req: ResponsesRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.instructions:
        out.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        out.append({"role": "user", "content": req.input})
        return out
    if not req.input:
        if not out:
            raise _bad("input or instructions is required")
        return out
    reasoning: list[str] = []

    def assistant() -> dict[str, Any]:
        """The open assistant message calls join (a new one unless the last is one)."""
        last = out[-1] if out else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            return last
        msg: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": []}
        if reasoning:
            msg["reasoning_content"] = "".join(reasoning)
            reasoning.clear()
        out.append(msg)
        return msg

    for i, item in enumerate(req.input):
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise _bad(f"input.{i}.role '{role}' is not supported", f"input.{i}.role")
            content = item.get("content", "")
            msg = {
                "role": "system" if role == "developer" else role,
                "content": _user_content(content, i) if role == "user" else _text(content, i),
            }
            if role == "assistant" and reasoning:
                msg["reasoning_content"] = "".join(reasoning)
                reasoning.clear()
            out.append(msg)
        elif kind in ("function_call", "custom_tool_call"):
            assistant()["tool_calls"].append(_call(item, i))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise _bad(f"input.{i}: a {kind} needs call_id", f"input.{i}")
            output = item.get("output", "")
            text = output if isinstance(output, str) else _text(output, i)
            out.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind == "reasoning":
            parts = item.get("content") or item.get("summary") or []
            reasoning.append(_text(parts, i))
        else:
            raise _bad(f"input.{i}: item type '{kind}' is not supported", f"input.{i}.type")
    return out


def _call(item: dict[str, Any], i: int) -> dict[str, Any]:
    """A chat tool call of a ``function_call`` or ``custom_tool_call`` item (the custom call's
    raw ``input`` as the one argument its function takes)."""
    kind, name, call_id = item["type"], item.get("name"), item.get("call_id")
    if not isinstance(name, str) or not isinstance(call_id, str):
        raise _bad(f"input.{i}: a {kind} needs name and call_id", f"input.{i}")
    if kind == "custom_tool_call":
        arguments = orjson.dumps({"input": str(item.get("input", ""))}).decode()
    else:
        arguments = item.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
    call = {"name": name, "arguments": arguments}
    return {"id": call_id, "type": "function", "function": call}


def _tools(req: ResponsesRequest) -> list[dict[str, Any]] | None:
    tools = []
    for t in req.tools or []:
        if t.get("type") == "custom":
            tools.append(_custom_tool(t))
            continue
        if t.get("type") != "function":
            continue  # built-in tools (web_search, file_search, ...): not ours to run
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("tools: a function tool needs a name", "tools")
        fn: dict[str, Any] = {"name": name, "parameters": t.get("parameters") or {"type": "object"}}
        if t.get("description"):
            fn["description"] = t["description"]
        if t.get("strict") is not None:
            fn["strict"] = t["strict"]
        tools.append({"type": "function", "function": fn})
    return tools or None


def _custom_tool(t: dict[str, Any]) -> dict[str, Any]:
    """A custom (freeform) tool, e.g. Codex's ``apply_patch``: a function taking its raw text
    as one string argument ``input`` (the grammar of ``format``, if any, is not enforced)."""
    name = t.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("tools: a custom tool needs a name", "tools")
    params = {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "the tool's raw input"}},
        "required": ["input"],
    }
    fn: dict[str, Any] = {"name": name, "parameters": params}
    if t.get("description"):
        fn["description"] = t["description"]
    return {"type": "function", "function": fn}


def custom_tools(req: ResponsesRequest) -> frozenset[str]:
    """The names of the request's custom tools (their calls are answered as custom calls)."""
    return frozenset(str(t.get("name")) for t in req.tools or [] if t.get("type") == "custom")


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    if choice.get("type") in ("function", "custom") and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("tool_choice: auto, required, none or {type: function, name}", "tool_choice")


def _response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad(f"text.format type '{kind}' is not supported", "text.format")


def chat_body(req: ResponsesRequest, model: str) -> dict[str, Any]:
    """The chat-completions JSON body this Responses request stands for (sent upstream)."""
    if req.previous_response_id is not None:
        raise InvalidRequestError(
            "previous_response_id is not supported: this server is stateless (nothing is "
            "stored); send the whole conversation in input",
            param="previous_response_id",
        )
    body: dict[str, Any] = {
        "model": model,
        "messages": _messages(req),
        "stream": bool(req.stream),
    }
    if req.max_output_tokens is not None:
        body["max_tokens"] = req.max_output_tokens
    tools = _tools(req)
    if tools:
        body["tools"] = tools
        if req.tool_choice is not None:
            body["tool_choice"] = _tool_choice(req.tool_choice)
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    for name in ("temperature", "top_p"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.reasoning is not None and req.reasoning.effort:
        if req.reasoning.effort == "none":
            body["thinking"] = {"type": "disabled"}
        else:
            body["reasoning_effort"] = req.reasoning.effort
    if req.user:
        body["user_id"] = user_id(req.user)
    if req.text is not None and req.text.format is not None:
        fmt = _response_format(req.text.format)
        if fmt is not None:
            body["response_format"] = fmt
    return body


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
        return ChatCompletionRequest.model_validate(body)
    except ValueError as exc:
        raise InvalidRequestError(f"input: {exc}", param="input") from exc
