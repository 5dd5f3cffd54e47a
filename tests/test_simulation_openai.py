"""Tests of the simulated OpenAI Chat Completions API: its wire format (compared with
streams recorded from the real API), its request validation, and the official openai
SDK served by it on the simulator's clock."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from perfkit import VirtualClock
from perfkit.simulation._latency import LLMLatency
from perfkit.simulation.openai import DEFAULT_BASE_URL, OpenAISimulator
from perfkit.simulation.openai._validation import RequestError, validate
from perfkit.simulation.openai._wire import (
    RenderedCompletion,
    count_prompt_tokens,
    render,
    stream_chunks,
)
from perfkit.simulation.server import Fault, Reply, TextBlock, ToolUseBlock, count_tokens

RECORDINGS = Path(__file__).parent / "data" / "openai_recordings"
ADDED_SINCE_RECORDED = {"service_tier", "usage"}
"""Chunk fields the SDK's ChatCompletionChunk documents that the 2024 recordings lack."""


def body(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
    }
    request.update(overrides)
    return request


def completion(reply: Reply, **overrides: Any) -> RenderedCompletion:
    return render(reply, body(**overrides), completion_id="chatcmpl-sim000001", created=1)


def events(data: bytes) -> list[Any]:
    """The ``data:`` payloads of a stream, JSON decoded ("[DONE]" kept as the string)."""
    assert data.endswith(b"\n\n")
    payloads = []
    for frame in data.decode().split("\n\n")[:-1]:
        assert frame.startswith("data: ")
        assert "\n" not in frame
        payload = frame.removeprefix("data: ")
        payloads.append(payload if payload == "[DONE]" else json.loads(payload))
    return payloads


def streamed(rendered: RenderedCompletion, **options: Any) -> list[Any]:
    plan = LLMLatency().plan(rendered.completion_tokens)
    stream = stream_chunks(rendered, plan, **options)
    return events(b"".join(data for _, data in stream.chunks))


def recorded(name: str) -> list[Any]:
    return events((RECORDINGS / name).read_bytes())


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys in order and value types, not the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    return type(value).__name__


def without_additions(chunk: Any) -> Any:
    if isinstance(chunk, dict):
        return {key: value for key, value in chunk.items() if key not in ADDED_SINCE_RECORDED}
    return chunk


# -- the wire format, against the recordings --------------------------------------------


def test_a_text_stream_has_the_recorded_structure() -> None:
    mine = streamed(completion(Reply.text("I'm unable to help")), include_usage=True)
    real = recorded("text_stream.txt")
    # first chunk, content chunks, the finishing chunk, the usage chunk, [DONE]
    assert [shape(without_additions(c)) for c in mine[:2]] == [shape(c) for c in real[:2]]
    assert shape(without_additions(mine[-3])) == shape(real[-3])
    assert mine[-1] == real[-1] == "[DONE]"
    assert mine[-2]["choices"] == real[-2]["choices"] == []
    assert set(real[-2]["usage"]) <= set(mine[-2]["usage"])
    assert mine[0]["choices"][0]["delta"] == real[0]["choices"][0]["delta"]
    assert mine[-3]["choices"][0]["delta"] == {}
    assert mine[-3]["choices"][0]["finish_reason"] == ("stop")


def test_a_tool_call_stream_has_the_recorded_structure() -> None:
    reply = Reply.tool_use("get_weather", {"city": "New York City"}, id="call_5uxEBMFy")
    mine = streamed(completion(reply), include_usage=True)
    real = recorded("tool_call_stream.txt")
    first, real_first = mine[0]["choices"][0]["delta"], real[0]["choices"][0]["delta"]
    assert shape(first) == shape(real_first)
    assert first["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    assert shape(without_additions(mine[1])) == shape(real[1])
    finish_reasons = [chunk["choices"][0]["finish_reason"] for chunk in mine[:-2]]
    assert finish_reasons == [None] * (len(mine) - 3) + ["tool_calls"]
    assert shape(without_additions(mine[-3])) == shape(real[-3])
    pieces = [
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in mine[1:-3]
    ]
    assert json.loads("".join(pieces)) == {"city": "New York City"}


def test_every_chunk_parses_as_the_sdks_chunk_and_the_body_as_its_completion() -> None:
    reply = Reply.tool_use("get_weather", {"city": "Paris"}, text="Let me look.")
    rendered = completion(reply)
    parsed = ChatCompletion.model_validate(rendered.to_json())
    assert parsed.choices[0].message.content == "Let me look."
    assert parsed.choices[0].message.tool_calls is not None
    assert parsed.choices[0].message.tool_calls[0].function.arguments == '{"city":"Paris"}'
    assert parsed.choices[0].finish_reason == "tool_calls"
    assert parsed.usage is not None
    assert parsed.usage.completion_tokens == reply.output_tokens
    for chunk in streamed(rendered, include_usage=True)[:-1]:
        ChatCompletionChunk.model_validate(chunk)


def test_usage_null_on_every_chunk_and_a_usage_chunk_only_with_include_usage() -> None:
    rendered = completion(Reply.text("One two three"))
    with_usage = streamed(rendered, include_usage=True)
    without = streamed(rendered)
    assert all(chunk["usage"] is None for chunk in with_usage[:-2])
    assert with_usage[-2]["usage"]["completion_tokens"] == 3
    assert all("usage" not in chunk for chunk in without[:-1])
    assert len(with_usage) == len(without) + 1


def test_a_tool_call_without_text_has_null_content_and_one_after_text_streams_its_header() -> None:
    only_call = completion(Reply.tool_use("lookup", {"q": "x"}))
    assert only_call.message()["content"] is None
    after_text = streamed(completion(Reply.tool_use("lookup", {"q": "x"}, text="Sure.")))
    header_chunk = after_text[2]["choices"][0]["delta"]["tool_calls"][0]
    assert header_chunk == {
        "index": 0,
        "id": "call_sim000001_0",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }


def test_two_tool_calls_are_indexed_in_order() -> None:
    reply = Reply(ToolUseBlock("a", {"x": 1}), ToolUseBlock("b", {"y": 2}))
    chunks = streamed(completion(reply))
    indexes = [
        call["index"]
        for chunk in chunks[1:-2]
        for call in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert indexes[0] == 0
    assert indexes[-1] == 1
    assert sorted(indexes) == indexes
    assert [call["id"] for call in completion(reply).message()["tool_calls"]] == [
        "call_sim000001_0",
        "call_sim000001_1",
    ]


# -- timing -----------------------------------------------------------------------------


def test_the_first_token_waits_ttft_after_the_response_starts_then_one_gap_per_token() -> None:
    rendered = completion(Reply.of_tokens(10))
    plan = LLMLatency(ttft=0.3, per_token=0.02, connect=0.1).plan(rendered.completion_tokens)
    stream = stream_chunks(rendered, plan)
    waits = [wait for wait, _ in stream.chunks]
    assert waits == [0.0, 0.3, *[0.02] * 9, 0.0]
    assert stream.tokens == [0, *range(1, 11), 10]


# -- max tokens, stop sequences ---------------------------------------------------------


@pytest.mark.parametrize("name", ["max_completion_tokens", "max_tokens"])
def test_output_beyond_the_budget_is_cut_with_finish_reason_length(name: str) -> None:
    rendered = completion(Reply.of_tokens(10), **{name: 4})
    assert rendered.content == "token token token token"
    assert rendered.finish_reason == "length"
    assert rendered.usage()["completion_tokens"] == 4


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    rendered = completion(Reply.of_tokens(10), max_completion_tokens=3, max_tokens=6)
    assert rendered.completion_tokens == 3


def test_a_tool_call_cut_by_the_budget_keeps_the_arguments_that_fit_streamed_or_not() -> None:
    reply = Reply.tool_use("lookup", {"query": "a b c d e f"})
    rendered = completion(reply, max_completion_tokens=3)
    arguments = rendered.message()["tool_calls"][0]["function"]["arguments"]
    assert rendered.finish_reason == "length"
    assert arguments == '{"query":"a b'  # 3 tokens: '{"query":', ' "a', ' b' less the space
    assert rendered.completion_tokens == 3
    pieces = [
        call["function"]["arguments"]
        for chunk in streamed(rendered)[1:-2]
        for call in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert "".join(pieces) == arguments


def test_a_budget_spent_on_text_drops_the_tool_call() -> None:
    reply = Reply.tool_use("lookup", {"q": 1}, text="one two three")
    rendered = completion(reply, max_completion_tokens=3)
    assert rendered.finish_reason == "length"
    assert rendered.tool_calls == ()


@pytest.mark.parametrize("stop", ["STOP", ["nothing", "STOP"]])
def test_text_stops_before_a_stop_sequence(stop: str | list[str]) -> None:
    rendered = completion(Reply.tool_use("t", {}, text="one two STOP three"), stop=stop)
    assert rendered.content == "one two "
    assert rendered.finish_reason == "stop"
    assert rendered.tool_calls == ()


def test_usage_counts_the_prompt_with_the_simulators_tokenizer() -> None:
    request = body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny and warm"},
        ]
    )
    expected = sum(map(count_tokens, ["Be brief.", "Hello there", "f", "{}", "sunny and warm"]))
    assert count_prompt_tokens(request) == expected
    rendered = render(Reply.text("ok"), request, completion_id="chatcmpl-x", created=0)
    assert rendered.usage()["prompt_tokens"] == expected
    assert rendered.usage()["total_tokens"] == expected + 1
    scripted = render(Reply("ok", input_tokens=99), request, completion_id="x", created=0)
    assert scripted.prompt_tokens == 99


def test_text_blocks_join_into_one_content() -> None:
    rendered = completion(Reply(TextBlock("Hello"), TextBlock(" world")))
    assert rendered.content == "Hello world"


# -- validation -------------------------------------------------------------------------

TOOL_TURN: list[dict[str, Any]] = [
    {"role": "user", "content": "weather?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            {"id": "call_b", "type": "function", "function": {"name": "w", "arguments": "{}"}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
    {"role": "tool", "tool_call_id": "call_b", "content": "rain"},
]

INVALID: dict[str, tuple[dict[str, Any], RequestError]] = {
    "unknown-parameter": (
        body(temprature=0.5),
        RequestError("Unrecognized request argument supplied: temprature"),
    ),
    "no-model": (
        {"messages": body()["messages"]},
        RequestError("you must provide a model parameter"),
    ),
    "no-messages": (
        {"model": "gpt-4o"},
        RequestError(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        ),
    ),
    "messages-not-a-list": (
        body(messages="Hi"),
        RequestError(
            "Invalid type for 'messages': expected an array, but got a string instead.",
            param="messages",
            code="invalid_type",
        ),
    ),
    "empty-messages": (
        body(messages=[]),
        RequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but "
            "got an empty array instead.",
            param="messages",
            code="empty_array",
        ),
    ),
    "message-not-an-object": (
        body(messages=["Hi"]),
        RequestError(
            "Invalid type for 'messages[0]': expected an object, but got a string instead.",
            param="messages[0]",
            code="invalid_type",
        ),
    ),
    "no-role": (
        body(messages=[{"content": "Hi"}]),
        RequestError(
            "Missing required parameter: 'messages[0].role'.",
            param="messages[0].role",
            code="missing_required_parameter",
        ),
    ),
    "unknown-role": (
        body(messages=[{"role": "bot", "content": "Hi"}]),
        RequestError(
            "Invalid value: 'bot'. Supported values are: 'system', 'assistant', 'user', "
            "'function', 'tool', and 'developer'.",
            param="messages[0].role",
            code="invalid_value",
        ),
    ),
    "user-message-without-content": (
        body(messages=[{"role": "user"}]),
        RequestError(
            "Missing required parameter: 'messages[0].content'.",
            param="messages[0].content",
            code="missing_required_parameter",
        ),
    ),
    "content-not-a-string-or-parts": (
        body(messages=[{"role": "user", "content": 42}]),
        RequestError(
            "Invalid type for 'messages[0].content': expected one of a string or array of "
            "objects, but got an integer instead.",
            param="messages[0].content",
            code="invalid_type",
        ),
    ),
    "tools-not-a-list": (
        body(tools={"type": "function"}),
        RequestError(
            "Invalid type for 'tools': expected an array, but got an object instead.",
            param="tools",
            code="invalid_type",
        ),
    ),
    "tool-without-type": (
        body(tools=[{"function": {"name": "f"}}]),
        RequestError(
            "Missing required parameter: 'tools[0].type'.",
            param="tools[0].type",
            code="missing_required_parameter",
        ),
    ),
    "function-tool-without-function": (
        body(tools=[{"type": "function"}]),
        RequestError(
            "Missing required parameter: 'tools[0].function'.",
            param="tools[0].function",
            code="missing_required_parameter",
        ),
    ),
    "function-tool-without-name": (
        body(tools=[{"type": "function", "function": {"parameters": {}}}]),
        RequestError(
            "Missing required parameter: 'tools[0].function.name'.",
            param="tools[0].function.name",
            code="missing_required_parameter",
        ),
    ),
    "tool-message-without-tool-call-id": (
        body(messages=[*TOOL_TURN[:2], {"role": "tool", "content": "sunny"}]),
        RequestError(
            "Missing required parameter: 'messages[2].tool_call_id'.",
            param="messages[2].tool_call_id",
            code="missing_required_parameter",
        ),
    ),
    "tool-call-without-id": (
        body(
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "tool_calls": [{"type": "function"}]},
            ]
        ),
        RequestError(
            "Missing required parameter: 'messages[1].tool_calls[0].id'.",
            param="messages[1].tool_calls[0].id",
            code="missing_required_parameter",
        ),
    ),
    "tool-message-after-a-user-message": (
        body(messages=[{"role": "user", "content": "Hi"}, TOOL_TURN[2]]),
        RequestError(
            "Invalid parameter: messages with role 'tool' must be a response to a "
            "preceeding message with 'tool_calls'.",
            param="messages.[1].role",
        ),
    ),
    "tool-message-answering-an-unknown-call": (
        body(messages=[*TOOL_TURN[:2], {"role": "tool", "tool_call_id": "call_z", "content": ""}]),
        RequestError(
            "Invalid parameter: 'tool_call_id' of 'call_z' not found in 'tool_calls' of "
            "previous message.",
            param="messages.[2].tool_call_id",
        ),
    ),
    "unanswered-tool-call": (
        body(messages=[*TOOL_TURN[:3], {"role": "user", "content": "and?"}]),
        RequestError(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            "response messages: call_b",
            param="messages.[1].role",
        ),
    ),
    "tool-calls-last-and-unanswered": (
        body(messages=TOOL_TURN[:2]),
        RequestError(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            "response messages: call_a, call_b",
            param="messages.[1].role",
        ),
    ),
    "stream-not-a-boolean": (
        body(stream="yes"),
        RequestError(
            "Invalid type for 'stream': expected a boolean, but got a string instead.",
            param="stream",
            code="invalid_type",
        ),
    ),
    "stream-options-without-stream": (
        body(stream_options={"include_usage": True}),
        RequestError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        ),
    ),
    "max-tokens-zero": (
        body(max_tokens=0),
        RequestError(
            "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but "
            "got 0 instead.",
            param="max_tokens",
            code="integer_below_min_value",
        ),
    ),
    "max-completion-tokens-not-an-integer": (
        body(max_completion_tokens="10"),
        RequestError(
            "Invalid type for 'max_completion_tokens': expected an integer, but got a "
            "string instead.",
            param="max_completion_tokens",
            code="invalid_type",
        ),
    ),
    "five-stop-sequences": (
        body(stop=["a", "b", "c", "d", "e"]),
        RequestError(
            "Invalid 'stop': array too long. Expected an array with maximum length 4, but "
            "got an array with length 5 instead.",
            param="stop",
            code="array_above_max_length",
        ),
    ),
    "n-above-one": (
        body(n=3),
        RequestError(
            "n=3 is not supported by the simulator: it renders one choice per request "
            "(n=1). Ask for one choice, or send n requests.",
            param="n",
            code="unsupported_value",
        ),
    ),
}


@pytest.mark.parametrize(("request_body", "expected"), INVALID.values(), ids=INVALID.keys())
def test_validation_refuses_what_the_api_refuses(
    request_body: dict[str, Any], expected: RequestError
) -> None:
    assert validate(request_body) == expected


VALID: dict[str, dict[str, Any]] = {
    "minimal": body(),
    "a-whole-tool-turn": body(messages=TOOL_TURN),
    "every-role": body(
        messages=[
            {"role": "developer", "content": "d"},
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "u"},
        ]
    ),
    "streamed-with-usage": body(stream=True, stream_options={"include_usage": True}),
    "options": body(n=1, max_completion_tokens=5, stop=["a", "b", "c", "d"], temperature=0),
    "text-parts-and-a-tool": body(
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
    ),
}


@pytest.mark.parametrize("request_body", VALID.values(), ids=VALID.keys())
def test_validation_accepts_valid_requests(request_body: dict[str, Any]) -> None:
    assert validate(request_body) is None


# -- the openai SDK, served on the simulator's clock -------------------------------------


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[OpenAISimulator]:
    with OpenAISimulator(clock=clock) as simulator:
        yield simulator


def sdk(**options: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", **options)


def async_sdk(**options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", **options)


def ask(question: str = "Hi", **overrides: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": question}], **overrides}


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_the_sync_client_gets_a_completion_at_the_modeled_time(
    sim: OpenAISimulator, clock: VirtualClock
) -> None:
    sim.latency = LLMLatency(ttft=0.3, per_token=0.02)
    sim.enqueue(Reply.of_tokens(10))
    with sdk() as client:
        start = clock.now()
        completion = client.chat.completions.create(**ask())
        assert clock.elapsed(start) == 0.48  # 0.3 + 9 x 0.02
    assert completion.choices[0].message.content == " ".join(["token"] * 10)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id == "chatcmpl-sim000000"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1, 10)
    assert completion._request_id == "req_sim000000"
    assert sim.last_request.url == "https://api.openai.com/v1/chat/completions"
    assert sim.last_request.duration == 0.48
    assert sim.output_tokens == 10


def test_the_async_client_gets_a_completion_at_the_modeled_time(
    sim: OpenAISimulator, clock: VirtualClock
) -> None:
    sim.latency = LLMLatency(ttft=0.3, per_token=0.02)

    async def main() -> tuple[list[str | None], float]:
        async with async_sdk() as client:
            start = clock.now()
            completions = await asyncio.gather(
                *(client.chat.completions.create(**ask(f"question {n}")) for n in range(3))
            )
            return [c.choices[0].message.content for c in completions], clock.elapsed(start)

    contents, elapsed = clock.run(main())
    assert contents == [f"Simulated answer to: question {n}" for n in range(3)]
    assert elapsed == 0.38  # three at once, 6 tokens each: 0.3 + 5 x 0.02
    assert sim.call_count == 3


@pytest.mark.parametrize("include_usage", [True, False], ids=["with-usage", "without-usage"])
def test_a_streamed_completion_arrives_token_by_token(
    sim: OpenAISimulator, clock: VirtualClock, include_usage: bool
) -> None:
    sim.latency = LLMLatency(ttft=0.3, per_token=0.02)
    sim.enqueue(Reply.of_tokens(10))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    with sdk() as client:
        start = clock.now()
        stream = client.chat.completions.create(**ask(stream=True, **options))
        arrivals, pieces, usages = [], [], []
        for chunk in stream:
            arrivals.append(clock.elapsed(start))
            usages.append(chunk.usage)
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == " ".join(["token"] * 10)
    content_arrivals = arrivals[1:11]
    assert content_arrivals[0] == 0.3
    assert content_arrivals[-1] == 0.48
    assert arrivals[-1] == 0.48
    if include_usage:
        assert usages[-1] is not None
        assert usages[-1].completion_tokens == 10
        assert all(usage is None for usage in usages[:-1])
    else:
        assert all(usage is None for usage in usages)
    assert sim.last_request.ttft == 0.3
    assert sim.last_request.duration == 0.48
    assert sim.last_request.completed


def test_an_async_stream_arrives_on_the_same_schedule(
    sim: OpenAISimulator, clock: VirtualClock
) -> None:
    sim.latency = LLMLatency(ttft=0.3, per_token=0.02)
    sim.enqueue(Reply.of_tokens(10))

    async def main() -> list[float]:
        async with async_sdk() as client:
            start = clock.now()
            stream = await client.chat.completions.create(**ask(stream=True))
            return [
                clock.elapsed(start)
                async for chunk in stream
                if chunk.choices and chunk.choices[0].delta.content
            ]

    arrivals = clock.run(main())
    assert arrivals == [round(0.3 + n * 0.02, 6) for n in range(10)]


def test_a_tool_call_round_trip(sim: OpenAISimulator) -> None:
    sim.enqueue(Reply.tool_use("get_weather", {"city": "Paris"}, id="call_1"), Reply.text("Sunny."))
    with sdk() as client:
        first = client.chat.completions.create(**ask("Weather?", tools=[WEATHER_TOOL]))
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        assert message.content is None
        assert message.tool_calls is not None
        call = message.tool_calls[0]
        assert call.type == "function"
        assert (call.id, call.function.name) == ("call_1", "get_weather")
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        messages: list[Any] = [
            {"role": "user", "content": "Weather?"},
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "22 C, sunny"},
        ]
        second = client.chat.completions.create(
            model="gpt-4o", messages=messages, tools=[WEATHER_TOOL]
        )
    assert second.choices[0].message.content == "Sunny."
    assert [r.status for r in sim.requests] == [200, 200]


def test_streamed_tool_call_arguments_arrive_in_pieces(
    sim: OpenAISimulator, clock: VirtualClock
) -> None:
    sim.latency = LLMLatency(ttft=0.5, per_token=0.1)
    reply = Reply.tool_use("get_weather", {"city": "San Francisco", "unit": "c"}, text="Checking.")
    sim.enqueue(reply)

    async def main() -> tuple[list[tuple[float, str]], str | None, str | None]:
        async with async_sdk() as client:
            start = clock.now()
            stream = await client.chat.completions.create(
                **ask("Weather?", tools=[WEATHER_TOOL], stream=True)
            )
            pieces, name, finish = [], None, None
            async for chunk in stream:
                if not chunk.choices:
                    continue
                finish = chunk.choices[0].finish_reason or finish
                for call in chunk.choices[0].delta.tool_calls or []:
                    assert call.index == 0
                    name = call.function.name if call.function and call.function.name else name
                    if call.function and call.function.arguments:
                        pieces.append((clock.elapsed(start), call.function.arguments))
            return pieces, name, finish

    pieces, name, finish = clock.run(main())
    assert name == "get_weather"
    assert finish == "tool_calls"
    assert json.loads("".join(piece for _, piece in pieces)) == {
        "city": "San Francisco",
        "unit": "c",
    }
    assert len(pieces) > 1
    # "Checking." is the first token; every argument piece is one more token.
    assert [at for at, _ in pieces] == [round(0.5 + n * 0.1, 6) for n in range(1, len(pieces) + 1)]
    assert sim.last_request.output_tokens == reply.output_tokens


def test_the_sdks_stream_helper_accumulates_the_completion(sim: OpenAISimulator) -> None:
    sim.enqueue(Reply.tool_use("get_weather", {"city": "Paris"}, text="Let me check."))
    with (
        sdk() as client,
        client.chat.completions.stream(**ask("Weather?", tools=[WEATHER_TOOL])) as stream,
    ):
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Let me check."
    assert message.tool_calls is not None
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}


def test_max_completion_tokens_cuts_the_reply_with_finish_reason_length(
    sim: OpenAISimulator,
) -> None:
    sim.enqueue(Reply.of_tokens(10))
    with sdk() as client:
        completion = client.chat.completions.create(**ask(max_completion_tokens=4))
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4


def test_the_default_reply_answers_the_last_user_message(sim: OpenAISimulator) -> None:
    with sdk() as client:
        completion = client.chat.completions.create(**ask("How far is the moon?"))
    assert completion.choices[0].message.content == "Simulated answer to: How far is the moon?"


def test_a_base_url_of_an_openai_compatible_endpoint(clock: VirtualClock) -> None:
    with OpenAISimulator(clock=clock, base_url="http://llm.internal:8000/v1") as sim:
        with sdk(base_url="http://llm.internal:8000/v1") as client:
            client.chat.completions.create(**ask())
        assert sim.last_request.url == "http://llm.internal:8000/v1/chat/completions"


# -- request errors and faults through the SDK ------------------------------------------


def test_an_invalid_request_is_a_bad_request_error_with_openais_body(sim: OpenAISimulator) -> None:
    with sdk() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[])
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": INVALID["empty-messages"][1].message,
        "type": "invalid_request_error",
        "param": "messages",
        "code": "empty_array",
    }
    assert caught.value.code == "empty_array"
    assert caught.value.param == "messages"
    assert sim.call_count == 1  # a 400 is not retried


def test_a_body_that_is_not_json_gets_openais_parse_error(sim: OpenAISimulator) -> None:
    with httpx.Client() as client:
        response = client.post(f"{DEFAULT_BASE_URL}/chat/completions", content=b"{not json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"].startswith("We could not parse the JSON body of your request.")
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, None)


def test_a_rate_limit_is_retried_after_its_retry_after(
    sim: OpenAISimulator, clock: VirtualClock
) -> None:
    sim.latency = 0.3
    sim.enqueue(Fault.rate_limit(retry_after=1), Fault.rate_limit(retry_after_ms=2500))
    wall = time.perf_counter()
    with sdk() as client:
        start = clock.now()
        client.chat.completions.create(**ask())
        assert clock.elapsed(start) == 3.8
    assert time.perf_counter() - wall < 3.5  # time.sleep was not really called
    assert [r.status for r in sim.requests] == [429, 429, 200]
    assert [r.retry_count for r in sim.requests] == [0, 1, 2]
    assert [r.sent_at for r in sim.requests] == [0.0, 1.0, 3.5]


@pytest.mark.parametrize(
    ("fault", "error", "body"),
    [
        (
            Fault.rate_limit(retry_after=1),
            openai.RateLimitError,
            {"type": "requests", "code": "rate_limit_exceeded"},
        ),
        (Fault.server_error(), openai.InternalServerError, {"type": "server_error", "code": None}),
        (
            Fault.http_error(401, "authentication_error", "Incorrect API key provided"),
            openai.AuthenticationError,
            {"type": "invalid_request_error", "code": "invalid_api_key"},
        ),
    ],
    ids=["429", "500", "401"],
)
def test_a_fault_is_the_sdks_status_error_with_openais_body(
    sim: OpenAISimulator,
    clock: VirtualClock,
    fault: Fault,
    error: type[openai.APIStatusError],
    body: dict[str, Any],
) -> None:
    sim.enqueue(fault)

    async def main() -> None:
        async with async_sdk(max_retries=0) as client:
            await client.chat.completions.create(**ask())

    with pytest.raises(openai.APIStatusError) as caught:
        clock.run(main())
    assert type(caught.value) is error
    assert caught.value.status_code == fault.status
    assert caught.value.body == {"message": fault.message, "param": None, **body}
    assert caught.value.request_id == "req_sim000000"
    assert dict(fault.headers).items() <= caught.value.response.headers.items()


def test_a_server_error_is_retried_with_the_sdks_seeded_backoff(sim: OpenAISimulator) -> None:
    sim.enqueue(Fault.server_error(503))
    with sdk() as client:
        client.chat.completions.create(**ask())
    failed, succeeded = sim.requests
    assert (failed.status, succeeded.status, succeeded.retry_count) == (503, 200, 1)
    # No retry-after: the SDK backs off 0.5 s less up to 25% jitter (seeded).
    assert 0.375 <= succeeded.sent_at - failed.sent_at <= 0.5


def test_a_connection_error_and_a_timeout_in_modeled_time(
    sim: OpenAISimulator, clock: VirtualClock
) -> None:
    sim.latency = LLMLatency(connect=0.25, ttft=1.0)
    sim.enqueue(Fault.connection_error(), Fault.timeout())
    with sdk(max_retries=0, timeout=5) as client:
        start = clock.now()
        with pytest.raises(openai.APIConnectionError) as connection:
            client.chat.completions.create(**ask())
        assert type(connection.value) is openai.APIConnectionError
        assert clock.elapsed(start) == 0.25
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(**ask())
        assert clock.elapsed(start) == 0.25 + 0.25 + 5.0


def test_an_error_in_the_middle_of_a_stream_raises_the_sdks_api_error(
    sim: OpenAISimulator,
) -> None:
    sim.enqueue(Fault.stream_error(after_tokens=3, reply=Reply.of_tokens(10)))
    pieces: list[str] = []

    def read(stream: Iterable[ChatCompletionChunk]) -> None:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)

    with sdk() as client:
        stream = client.chat.completions.create(**ask(stream=True))
        with pytest.raises(openai.APIError) as caught:
            read(stream)
    assert len(pieces) == 3
    assert caught.value.body == {
        "message": "Overloaded",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert sim.last_request.output_tokens == 3


def test_a_stream_error_on_a_request_not_streamed_is_a_500(sim: OpenAISimulator) -> None:
    sim.enqueue(Fault.stream_error(after_tokens=3))
    with sdk(max_retries=0) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(**ask())
    assert caught.value.body == {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }


def test_the_same_core_modeled_connections(clock: VirtualClock) -> None:
    with OpenAISimulator(clock=clock, handshake=0.1, latency=0.2) as sim, sdk() as client:
        start = clock.now()
        for _ in range(3):
            client.chat.completions.create(**ask())
        assert clock.elapsed(start) == 0.7  # one handshake, three replies
        assert sim.connections_opened == 1


def test_perfkit_simulation_exports_the_simulator_without_importing_the_openai_sdk() -> None:
    probe = (
        "import sys, perfkit.simulation as s\n"
        "assert s.OpenAISimulator.__module__ == 'perfkit.simulation.openai._simulator'\n"
        "assert 'openai' not in sys.modules, 'the openai SDK was imported'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_not_strict_accepts_what_the_api_refuses_but_not_what_it_cannot_answer(
    clock: VirtualClock,
) -> None:
    unanswered = INVALID["tool-calls-last-and-unanswered"][0]
    assert validate(unanswered, strict=False) is None
    assert validate(INVALID["unknown-parameter"][0], strict=False) is None
    assert validate(INVALID["n-above-one"][0], strict=False) == INVALID["n-above-one"][1]
    with OpenAISimulator(clock=clock, strict=False) as sim, sdk() as client:
        client.chat.completions.create(**unanswered)
        assert sim.last_request.status == 200
    with pytest.raises(TypeError, match="strict must be True or False, got 'no'"):
        OpenAISimulator(strict="no")  # type: ignore[arg-type]


def test_a_refused_request_uses_up_no_scripted_answer(sim: OpenAISimulator) -> None:
    sim.enqueue(Reply.text("kept for the next request"))
    with sdk() as client:
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="gpt-4o", messages=[])
        completion = client.chat.completions.create(**ask())
    assert completion.choices[0].message.content == "kept for the next request"
