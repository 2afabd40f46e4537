"""Today's DeepSeek chat contract (shared/docs/deepseek_api_2026.md §2) as wire validation,
the thinking switch of local chat templates, and model aliases in the settings."""

from __future__ import annotations

from typing import Any

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from pydantic import ValidationError

from seekport.config import Settings
from seekport.engine.runners.chat_prompt import thinking_kwargs, thinking_switch
from seekport.errors import InvalidRequestError
from seekport.protocol.chat import EFFORT_LEVELS, ChatCompletionRequest

MSG = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": MSG, **fields})


# ---- thinking, reasoning_effort, user_id


def test_thinking_and_effort_are_typed_fields_not_extras() -> None:
    req = chat(thinking={"type": "disabled"}, reasoning_effort="xhigh", user_id="user-42_a")
    assert req.model_extra == {}
    assert req.thinking is not None and req.thinking.type == "disabled"
    assert req.thinking_enabled is False
    assert req.effort == "high"
    assert req.user_id == "user-42_a"


@pytest.mark.parametrize(
    ("requested", "actual"),
    [
        ("minimal", "low"),
        ("low", "low"),
        ("medium", "high"),
        ("high", "high"),
        ("xhigh", "high"),
        ("max", "max"),
        ("ultra", "max"),
    ],
)
def test_effort_aliases_map_as_deepseek_maps_them(requested: str, actual: str) -> None:
    assert chat(reasoning_effort=requested).effort == actual
    assert EFFORT_LEVELS[requested] == actual


@pytest.mark.parametrize(
    ("fields", "enabled"),
    [
        ({}, None),  # the model's default
        ({"thinking": {"type": "enabled"}}, True),
        ({"thinking": {"type": "disabled"}}, False),
        ({"reasoning_effort": "none"}, False),
        ({"reasoning_effort": "max"}, None),  # an effort alone does not switch thinking
        ({"thinking": {"type": "enabled"}, "reasoning_effort": "none"}, True),
        ({"thinking": None}, None),  # nullable, as DeepSeek documents it
    ],
)
def test_thinking_switch_of_a_request(fields: dict[str, Any], enabled: bool | None) -> None:
    assert chat(**fields).thinking_enabled is enabled


@pytest.mark.parametrize(
    "patch",
    [
        {"thinking": "enabled"},
        {"thinking": {"type": "on"}},
        {"thinking": {}},
        {"reasoning_effort": "huge"},
        {"reasoning_effort": 3},
        {"user_id": ""},
        {"user_id": "u" * 513},
        {"user_id": 7},
    ],
)
def test_bad_thinking_effort_or_user_id_is_refused(patch: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        chat(**patch)


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_forced_tool_choice_while_thinking_is_refused(tool_choice: Any) -> None:
    req = chat(thinking={"type": "enabled"}, tools=TOOLS, tool_choice=tool_choice)
    with pytest.raises(InvalidRequestError) as err:
        req.refuse_forced_tool_choice_while_thinking()
    assert err.value.status_code == 400
    assert err.value.param == "tool_choice"
    assert str(err.value).startswith("Thinking mode does not support this tool_choice")


@pytest.mark.parametrize(
    ("tool_choice", "thinking"),
    [
        ("auto", {"type": "enabled"}),
        ("none", {"type": "enabled"}),
        ("required", {"type": "disabled"}),
        ("required", None),  # the model's default decides (a DeepSeek upstream refuses)
    ],
)
def test_other_tool_choices_pass(tool_choice: Any, thinking: Any) -> None:
    req = chat(thinking=thinking, tools=TOOLS, tool_choice=tool_choice)
    req.refuse_forced_tool_choice_while_thinking()  # raises InvalidRequestError if refused
    assert req.tool_choice == tool_choice  # kept as sent, to go upstream unchanged


# ---- content parts and earlier reasoning


def test_array_content_with_text_image_and_file_parts_is_accepted() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is "},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                        {"type": "file", "file_id": "file-api-1"},
                        {"type": "text", "text": "this?"},
                    ],
                },
                {"role": "assistant", "content": "a cat", "reasoning_content": "it has ears"},
                {"role": "user", "content": "sure?"},
            ],
        }
    )
    assert req.messages[1].text() == "what is this?"
    assert req.messages[1].has_media()
    assert not req.messages[0].has_media()
    assert req.messages[2].reasoning_content == "it has ears"


@pytest.mark.parametrize(
    "message",
    [
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "assistant", "content": [{"type": "file", "file_id": "f"}]},
        {"role": "user", "content": [{"type": "file"}]},
        {"role": "user", "content": [{"type": "file", "file_id": "f", "file_data": "d"}]},
        {"role": "user", "content": [{"type": "audio", "audio": "x"}]},
    ],
)
def test_bad_content_parts_are_refused(message: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "m", "messages": [message]})


# ---- the thinking switch of a local chat template

QWEN3_LIKE = (
    "{%- for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>"
    "{%- if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n"
    "{%- endif %}{%- endif %}"
)
V31_LIKE = (
    "{%- if not thinking is defined %}{%- set thinking = false %}{%- endif %}"
    "{%- for m in messages %}{{ m.content }}{%- endfor %}"
    "{%- if thinking %}<think>{%- else %}</think>{%- endif %}"
)


def render(template: str, thinking: bool | None) -> str:
    fmt = Jinja2ChatFormatter(template=template, eos_token="</s>", bos_token="<s>")
    switch = thinking_kwargs(thinking_switch(template), thinking)
    return fmt(messages=[{"role": "user", "content": "hi"}], **switch).prompt  # type: ignore[list-item]


def test_a_template_with_enable_thinking_gets_the_requests_switch() -> None:
    assert thinking_switch(QWEN3_LIKE) == "enable_thinking"
    assert render(QWEN3_LIKE, False).endswith("<|assistant|><think>\n\n</think>")
    assert render(QWEN3_LIKE, True).endswith("<|assistant|>")
    assert render(QWEN3_LIKE, None).endswith("<|assistant|>")  # the template's default


def test_a_template_testing_thinking_is_defined_gets_it() -> None:
    assert thinking_switch(V31_LIKE) == "thinking"
    assert render(V31_LIKE, True).endswith("<think>")
    assert render(V31_LIKE, False).endswith("</think>")


def test_a_template_without_a_switch_is_rendered_as_before() -> None:
    plain = "{%- for m in messages %}{{ m.content }}{%- endfor %}"
    assert thinking_switch(plain) is None
    assert thinking_switch(None) is None
    assert thinking_kwargs(None, True) == {}
    assert render(plain, True) == render(plain, None) == "hi"


# ---- model aliases in the settings

REMOTE = {"name": "deepseek-flash", "backend": "openai", "base_url": "http://127.0.0.1:1"}


def settings(aliases: list[dict[str, Any]]) -> Settings:
    return Settings.model_validate({"models": [REMOTE], "aliases": aliases})


def test_aliases_fix_thinking_and_other_fields() -> None:
    s = settings(
        [
            {"name": "deepseek-chat", "model": "deepseek-flash", "thinking": "disabled"},
            {
                "name": "deepseek-reasoner",
                "model": "deepseek-flash",
                "thinking": "enabled",
                "reasoning_effort": "max",
                "params": {"temperature": 0},
            },
        ]
    )
    assert s.aliases[0].fixed() == {"thinking": {"type": "disabled"}}
    assert s.aliases[1].fixed() == {
        "temperature": 0,
        "thinking": {"type": "enabled"},
        "reasoning_effort": "max",
    }


@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        ([{"name": "a", "model": "nowhere"}], "not a served model"),
        ([{"name": "deepseek-flash", "model": "deepseek-flash"}], "is the name of a model"),
        (
            [{"name": "a", "model": "deepseek-flash"}, {"name": "a", "model": "deepseek-flash"}],
            "more than once",
        ),
        ([{"name": "a", "model": "deepseek-flash", "params": {"model": "x"}}], "may not fix"),
        ([{"name": "a", "model": "deepseek-flash", "thinking": "on"}], "thinking"),
        ([{"name": "a", "model": "deepseek-flash", "temperature": 0}], "temperature"),
    ],
)
def test_bad_aliases_stop_the_start(aliases: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        settings(aliases)
    assert message in str(err.value)
