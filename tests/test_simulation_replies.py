"""Scripted replies and faults reject bad values when they are made, not at request time."""

from __future__ import annotations

import math
from typing import Any

import pytest

from perfkit.simulation import Fault, Reply, TextBlock, ToolUseBlock


@pytest.mark.parametrize("text", [123, None, b"bytes"])
def test_text_must_be_a_str(text: Any) -> None:
    with pytest.raises(TypeError, match=rf"^text must be a str, got {text!r}$"):
        Reply.text(text)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, "a tool's name must be a non-empty str, got ''"),
        ({"name": 7}, "a tool's name must be a non-empty str, got 7"),
        ({"name": "t", "input": [1, 2]}, "a tool's input must be a mapping"),
        ({"name": "t", "id": 5}, "a tool call's id must be a str or None, got 5"),
    ],
)
def test_tool_use_blocks_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        ToolUseBlock(**options)


def test_tool_input_must_be_json() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        ToolUseBlock("t", {"when": object()})


@pytest.mark.parametrize("input_tokens", [-1, "3", 2.5, True])
def test_input_tokens_must_be_a_whole_number(input_tokens: Any) -> None:
    with pytest.raises(ValueError, match=r"input_tokens must be an int >= 0 or None, got"):
        Reply.text("hi", input_tokens=input_tokens)


@pytest.mark.parametrize("status", ["429", 429.0, True, 399, 600])
def test_http_error_status_must_be_an_error_status(status: Any) -> None:
    with pytest.raises(ValueError, match=r"status must be an HTTP error status \(400-599\), got"):
        Fault.http_error(status, "rate_limit_error")


@pytest.mark.parametrize("after", [-1, math.nan, math.inf])
def test_a_timeout_waits_a_finite_time(after: float) -> None:
    with pytest.raises(ValueError, match=rf"^after must be a finite number >= 0, got {after!r}$"):
        Fault.timeout(after=after)


@pytest.mark.parametrize("retry_after", [-1, math.inf])
def test_retry_after_is_finite(retry_after: float) -> None:
    with pytest.raises(ValueError, match="retry_after must be a finite number >= 0"):
        Fault.rate_limit(retry_after=retry_after)


def test_a_reply_needs_a_block_and_takes_only_blocks() -> None:
    with pytest.raises(ValueError, match="at least one content block"):
        Reply()
    with pytest.raises(TypeError, match="a reply block must be a str, TextBlock, ToolUseBlock"):
        Reply(42)  # type: ignore[arg-type]


def test_good_values_make_the_expected_reply() -> None:
    reply = Reply(TextBlock("a b"), ToolUseBlock("t", {"x": 1}, id="toolu_1"), input_tokens=0)
    assert reply.stop_reason == "tool_use"
    assert reply.output_tokens == 2 + 2  # "a", " b"; '{"x":', ' 1}'
    assert Fault.rate_limit(retry_after=1.5).headers == {"retry-after": "1.5"}
