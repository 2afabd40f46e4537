"""Wire validation rules and the OpenAI error body."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from seekport import errors
from seekport.api.errors import error_body
from seekport.protocol.chat import ChatCompletionRequest

MSG = [{"role": "user", "content": "hi"}]


def test_explicit_nulls_from_the_deepseek_sample_are_accepted() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": MSG,
            "stop": None,
            "stream_options": None,
            "tools": None,
            "logprobs": False,
            "top_logprobs": None,
            "response_format": {"type": "text"},
        }
    )
    assert req.stop_list == []


def test_unknown_fields_are_kept_for_forwarding() -> None:
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": MSG, "vendor_extra": {"type": "enabled"}}
    )
    assert req.model_extra == {"vendor_extra": {"type": "enabled"}}


def test_text_parts_and_developer_role_are_accepted() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "你"}, {"type": "text", "text": "好"}],
                },
            ],
        }
    )
    assert req.messages[1].text() == "你好"


@pytest.mark.parametrize(
    "patch",
    [
        {"messages": []},
        {"messages": [{"role": "wizard", "content": "x"}]},
        {"messages": [{"role": "user"}]},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"temperature": 2.5},
        {"top_p": 0},
        {"n": 0},
        {"n": 17},
        {"max_tokens": 0},
        {"stop": ["a"] * 17},
        {"stop": [""]},
        {"top_logprobs": 3},
        {"presence_penalty": -3},
        {"temperature": "hot"},
    ],
)
def test_invalid_requests_are_rejected(patch: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "m", "messages": MSG, **patch})


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.InvalidRequestError("x"), 400, "invalid_request_error"),
        (errors.ContextLengthExceededError("x"), 400, "context_length_exceeded"),
        (errors.ModelNotFoundError("x"), 404, "model_not_found"),
        (errors.AuthenticationError("x"), 401, "invalid_api_key"),
        (errors.PayloadTooLargeError("x"), 413, "request_too_large"),
        (errors.RateLimitError("x"), 429, "rate_limit_exceeded"),
        (errors.OverloadedError("x"), 503, "server_overloaded"),
        (errors.UpstreamTimeoutError("x"), 504, "upstream_timeout"),
    ],
)
def test_error_tree_statuses_and_body_shape(
    exc: errors.SeekportError, status: int, code: str
) -> None:
    assert exc.status_code == status
    body = error_body(exc)["error"]
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    assert body["code"] == code


@pytest.mark.parametrize(
    "patch",
    [
        {"temperature": "1.3"},
        {"stream": "true"},
        {"max_tokens": 10.5},
        {"stop": "x" * 257},
    ],
)
def test_wrong_types_and_oversized_stops_are_rejected(patch: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "m", "messages": MSG, **patch})


def test_integers_are_accepted_for_float_fields() -> None:
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": MSG, "temperature": 1})
    assert req.temperature == 1.0
