"""JSON schemas (``response_format``, generic tool calls) compiled to llama.cpp grammars,
with bounds on what a client may ask for."""

from __future__ import annotations

import functools
import json
from typing import Any

from seekport.errors import InvalidRequestError

MAX_SCHEMA_CHARS = 16_384
MAX_SCHEMA_REPEAT = 256  # minItems/maxItems/...: grammars expand these literally
_REPEAT_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")


def _check_bounds(node: object) -> None:
    """Refuse schemas whose repetition counts would blow up the compiled grammar."""
    if isinstance(node, dict):
        for key in _REPEAT_KEYS:
            value = node.get(key)
            if isinstance(value, int) and value > MAX_SCHEMA_REPEAT:
                raise InvalidRequestError(
                    f"JSON schema {key}={value} exceeds {MAX_SCHEMA_REPEAT}",
                    param="response_format",
                )
        for v in node.values():
            _check_bounds(v)
    elif isinstance(node, list):
        for v in node:
            _check_bounds(v)


@functools.lru_cache(maxsize=64)
def compile_grammar(schema_json: str) -> str:
    """GBNF for a JSON schema (``{}``: any JSON object). Cached: clients repeat schemas."""
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if schema_json == "{}":
        return str(JSON_GBNF)
    try:
        return str(json_schema_to_gbnf(schema_json))
    except (ValueError, RuntimeError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidRequestError(
            f"unsupported JSON schema: {exc}", param="response_format"
        ) from exc


def grammar_for(schema: dict[str, Any] | None) -> str | None:
    """Validate a response_format schema and return its grammar (None: unconstrained).

    The grammar keeps the schema's property order (keys are not sorted): OpenAI's structured
    outputs follow it, and generic tool calls need ``name`` before ``arguments`` to stream."""
    if schema is None:
        return None
    text = json.dumps(schema)
    if len(text) > MAX_SCHEMA_CHARS:
        raise InvalidRequestError(
            f"the JSON schema is {len(text)} characters; the limit is {MAX_SCHEMA_CHARS}",
            param="response_format",
        )
    _check_bounds(schema)
    return compile_grammar(text)
