"""Tool calls for local models without a native tool format ("generic", as llama.cpp's).

The tools are described in a system message, and the output is constrained by a JSON schema
(compiled to a llama.cpp grammar like ``response_format``) to one object: either
``{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}`` or ``{"response": "..."}``.
``tool_choice`` picks the branches: ``auto`` both, ``required`` the calls only, a named
function one call of that tool only; ``none`` offers no tools and leaves the output free.
The calls are an array of one, or of one or more with ``parallel_tool_calls: true``.
Each call's ``arguments`` follow its tool's ``parameters`` schema (the grammar enforces it).

Earlier assistant tool calls and ``tool`` results are rendered as text in the conversation
(``render_history``), since such templates cannot take them.
"""

from __future__ import annotations

import json
from typing import Any

from seekport.errors import InvalidRequestError
from seekport.protocol.chat import ChatCompletionRequest, Tool

ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _chosen(req: ChatCompletionRequest) -> tuple[list[Tool], bool]:
    """(the tools the output may call, whether a call is required)."""
    tools = req.tools or []
    choice = req.tool_choice
    if choice is None or choice == "auto":
        return tools, False
    if choice == "required":
        return tools, True
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        named = [t for t in tools if t.function.name == name]
        if choice.get("type") != "function" or not named:
            raise InvalidRequestError(
                f"tool_choice names no function among the tools ({name!r})", param="tool_choice"
            )
        return named[:1], True
    raise InvalidRequestError(
        f"tool_choice must be 'none', 'auto', 'required' or a named function, not {choice!r}",
        param="tool_choice",
    )


def parallel(req: ChatCompletionRequest) -> bool:
    """Several calls in one answer only when the client sends ``parallel_tool_calls: true``
    (llama-server's default, not OpenAI's): small models otherwise repeat calls until
    ``max_tokens``. A named ``tool_choice`` is one call."""
    return bool(
        req.model_extra
        and req.model_extra.get("parallel_tool_calls") is True
        and not isinstance(req.tool_choice, dict)
    )


def _call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"const": tool.function.name},
            "arguments": tool.function.parameters or ANY_OBJECT,
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def tool_schema(req: ChatCompletionRequest) -> dict[str, Any]:
    """The JSON schema the answer must follow (its grammar constrains generation)."""
    tools, required = _chosen(req)
    items = [_call_schema(t) for t in tools]
    calls: dict[str, Any] = {
        "type": "array",
        "items": items[0] if len(items) == 1 else {"anyOf": items},
        "minItems": 1,
    }
    if not parallel(req):
        calls["maxItems"] = 1
    with_calls = {
        "type": "object",
        "properties": {"tool_calls": calls},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    if required:
        return with_calls
    response = {
        "type": "object",
        "properties": {"response": {"type": "string"}},
        "required": ["response"],
        "additionalProperties": False,
    }
    return {"anyOf": [with_calls, response]}


def tool_prompt(req: ChatCompletionRequest) -> str:
    """The system text that offers the tools and states the answer's format."""
    tools, required = _chosen(req)
    described = [t.function.model_dump(exclude_none=True) for t in tools]
    lines = [
        "You can call these tools (JSON):",
        json.dumps(described, ensure_ascii=False, indent=2),
        "",
        "Answer with one JSON object.",
        'To call tools: {"tool_calls": [{"name": "<tool name>", "arguments": {...}}]}'
        f" ({'one or more calls' if parallel(req) else 'exactly one call'};"
        " arguments follow the tool's parameters).",
    ]
    if not required:
        lines.append('To answer the user directly: {"response": "<your answer>"}')
    return "\n".join(lines)


def with_tool_prompt(messages: list[dict[str, Any]], prompt: str) -> list[dict[str, Any]]:
    """The tools' description merged into the leading system message (or one prepended)."""
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = f"{first['content']}\n\n{prompt}" if first["content"] else prompt
        return [first, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


def render_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant tool calls and tool results as plain text turns, for templates without tool
    support: an assistant turn shows the JSON it would have answered with, and each tool
    result becomes a user turn naming the call it answers."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                names[c["id"]] = c["function"]["name"]
                calls.append(
                    {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                )
            text = json.dumps({"tool_calls": calls}, ensure_ascii=False)
            content = f"{m['content']}\n{text}" if m.get("content") else text
            out.append({"role": "assistant", "content": content})
        elif m["role"] == "tool":
            call_id = m.get("tool_call_id", "")
            result = {
                "tool_response": {
                    "name": m.get("name") or names.get(call_id, ""),
                    "tool_call_id": call_id,
                    "content": m["content"],
                }
            }
            out.append({"role": "user", "content": json.dumps(result, ensure_ascii=False)})
        else:
            out.append(m)
    return out
