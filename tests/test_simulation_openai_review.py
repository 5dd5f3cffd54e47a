"""The simulated Chat Completions API as a demanding openai SDK user meets it: sampling
ranges, tool_choice and parallel_tool_calls, json_object, logprobs, the request log of
streams, and a loopback base_url's other paths."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from perfkit import VirtualClock
from perfkit._errors import SimulatorError, UnmatchedRequestError
from perfkit.simulation._latency import LLMLatency
from perfkit.simulation.openai import DEFAULT_BASE_URL, OpenAISimulator
from perfkit.simulation.openai._validation import RequestError, validate
from perfkit.simulation.server import Fault, Reply, TextBlock, ToolUseBlock

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TWO_CALLS = Reply(
    TextBlock("Checking."),
    ToolUseBlock("get_weather", {"city": "Paris"}),
    ToolUseBlock("get_weather", {"city": "Oslo"}),
)


def ask(question: str = "Hi", **overrides: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": question}], **overrides}


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[OpenAISimulator]:
    with OpenAISimulator(clock=clock, latency=LLMLatency(ttft=0.3, per_token=0.02)) as simulator:
        yield simulator


def sdk(**options: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", **options)


# -- validation ---------------------------------------------------------------------------

INVALID: dict[str, tuple[dict[str, Any], RequestError]] = {
    "temperature-above-2": (
        ask(temperature=3),
        RequestError(
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
            "but got 3 instead.",
            param="temperature",
            code="decimal_above_max_value",
        ),
    ),
    "temperature-below-0": (
        ask(temperature=-0.5),
        RequestError(
            "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, "
            "but got -0.5 instead.",
            param="temperature",
            code="decimal_below_min_value",
        ),
    ),
    "top-p-above-1": (
        ask(top_p=1.5),
        RequestError(
            "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, "
            "but got 1.5 instead.",
            param="top_p",
            code="decimal_above_max_value",
        ),
    ),
    "temperature-a-string": (
        ask(temperature="hot"),
        RequestError(
            "Invalid type for 'temperature': expected a number, but got a string instead.",
            param="temperature",
            code="invalid_type",
        ),
    ),
    "tool-choice-required-without-tools": (
        ask(tool_choice="required"),
        RequestError(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            param="tool_choice",
        ),
    ),
    "tool-choice-named-without-tools": (
        ask(tool_choice={"type": "function", "function": {"name": "get_weather"}}),
        RequestError(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            param="tool_choice",
        ),
    ),
    "parallel-tool-calls-without-tools": (
        ask(parallel_tool_calls=False),
        RequestError(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed "
            "when 'tools' are specified.",
            param="parallel_tool_calls",
        ),
    ),
    "json-object-without-the-word-json": (
        ask(response_format={"type": "json_object"}),
        RequestError(
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.",
            param="response_format",
        ),
    ),
    "tool-name-with-a-space": (
        ask(tools=[{"type": "function", "function": {"name": "get weather"}}]),
        RequestError(
            "Invalid 'tools[0].function.name': string does not match pattern. Expected a "
            "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            param="tools[0].function.name",
            code="invalid_value",
        ),
    ),
    "tool-name-too-long": (
        ask(tools=[WEATHER_TOOL, {"type": "function", "function": {"name": "f" * 65}}]),
        RequestError(
            "Invalid 'tools[1].function.name': string too long. Expected a string with "
            "maximum length 64, but got a string with length 65 instead.",
            param="tools[1].function.name",
            code="string_above_max_length",
        ),
    ),
    "assistant-without-content-or-tool-calls": (
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": None, "tool_calls": None},
                {"role": "user", "content": "b"},
            ],
        },
        RequestError(
            "Invalid value for 'content': expected a string, got null.",
            param="messages.[1].content",
        ),
    ),
}


@pytest.mark.parametrize(("request_body", "expected"), INVALID.values(), ids=INVALID.keys())
def test_validation_refuses_what_the_api_refuses(
    request_body: dict[str, Any], expected: RequestError
) -> None:
    assert validate(request_body) == expected


VALID: dict[str, dict[str, Any]] = {
    "sampling-at-its-bounds": ask(temperature=2, top_p=0),
    "sampling-lowest": ask(temperature=0.0, top_p=1.0),
    "tool-choice-none-without-tools": ask(tool_choice="none"),
    "json-object-with-json-in-the-system-message": {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": "Hi"},
        ],
        "response_format": {"type": "json_object"},
    },
    "tool-name-of-64-with-dashes": ask(
        tools=[{"type": "function", "function": {"name": "get-weather_" + "x" * 52}}]
    ),
    "tool-choice-named-with-tools": ask(
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=True,
    ),
}


@pytest.mark.parametrize("request_body", VALID.values(), ids=VALID.keys())
def test_validation_accepts_valid_requests(request_body: dict[str, Any]) -> None:
    assert validate(request_body) is None


@pytest.mark.parametrize("strict", [True, False])
def test_logprobs_are_refused_as_unsupported_not_silently_null(strict: bool) -> None:
    problem = validate(ask(logprobs=True, top_logprobs=2), strict=strict)
    assert problem is not None
    assert problem.param == "logprobs"
    assert "not supported by the simulator" in problem.message
    assert validate(ask(logprobs=False), strict=strict) is None


# -- tool_choice and parallel_tool_calls shape the answer ----------------------------------


def test_tool_choice_none_answers_the_scripted_text_without_its_tool_calls(
    sim: OpenAISimulator,
) -> None:
    sim.enqueue(TWO_CALLS, TWO_CALLS)
    with sdk() as client:
        choice = client.chat.completions.create(
            **ask(tools=[WEATHER_TOOL], tool_choice="none")
        ).choices[0]
        chunks = list(
            client.chat.completions.create(
                **ask(tools=[WEATHER_TOOL], tool_choice="none", stream=True)
            )
        )
    assert (choice.message.content, choice.message.tool_calls) == ("Checking.", None)
    assert choice.finish_reason == "stop"
    assert not any(chunk.choices[0].delta.tool_calls for chunk in chunks if chunk.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_parallel_tool_calls_false_sends_only_the_first_call(sim: OpenAISimulator) -> None:
    sim.enqueue(TWO_CALLS, TWO_CALLS)
    with sdk() as client:
        message = (
            client.chat.completions.create(**ask(tools=[WEATHER_TOOL], parallel_tool_calls=False))
            .choices[0]
            .message
        )
        chunks = list(
            client.chat.completions.create(
                **ask(tools=[WEATHER_TOOL], parallel_tool_calls=False, stream=True)
            )
        )
    assert [call.function.arguments for call in message.tool_calls or []] == ['{"city":"Paris"}']
    indexes = {call.index for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []}
    assert indexes == {0}


# -- the request log of a stream -------------------------------------------------------


def test_a_streams_log_entry_has_its_first_text_token_time(
    sim: OpenAISimulator, clock: VirtualClock
) -> None:
    sim.enqueue(Reply.text("one two three"), Reply(ToolUseBlock("get_weather", {"city": "P"})))
    with sdk() as client:
        list(client.chat.completions.create(**ask(stream=True)))
        list(client.chat.completions.create(**ask(tools=[WEATHER_TOOL], stream=True)))
    text, call = sim.requests
    assert text.first_text_at is not None
    assert round(text.first_text_at - text.sent_at, 6) == text.ttft == 0.3
    assert call.ttft == 0.3
    assert call.first_text_at is None


# -- a loopback base_url -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("served", "called"),
    [
        ("http://localhost:8000/v1", "http://localhost:8000"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
    ],
)
def test_another_path_on_the_simulators_loopback_host_never_reaches_the_network(
    clock: VirtualClock, served: str, called: str
) -> None:
    with OpenAISimulator(clock=clock, base_url=served) as sim:
        client = sdk(base_url=called, max_retries=0)
        with client, pytest.raises(UnmatchedRequestError, match="no route for POST"):
            client.chat.completions.create(**ask())
        assert [type(error) for error in sim.pop_failures()] == [UnmatchedRequestError]
        with sdk(base_url=served) as client:
            assert client.chat.completions.create(**ask()).choices[0].message.content


# -- structured outputs ----------------------------------------------------------------


class Answer(BaseModel):
    answer: str


def test_parse_with_a_json_schema_gets_the_scripted_json(sim: OpenAISimulator) -> None:
    sim.enqueue(Reply.text('{"answer": "42"}'))
    with sdk() as client:
        completion = client.chat.completions.parse(**ask(), response_format=Answer)
    assert completion.choices[0].message.parsed == Answer(answer="42")
    assert sim.last_request.body["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("scripted", [True, False], ids=["scripted-text", "default-reply"])
def test_a_json_schema_request_answered_with_text_that_is_not_json_is_refused_clearly(
    sim: OpenAISimulator, scripted: bool
) -> None:
    if scripted:
        sim.enqueue(Reply.text("Forty-two."))
    with sdk() as client, pytest.raises(SimulatorError, match=r"json_schema 'Answer'.*not JSON"):
        client.chat.completions.parse(**ask(), response_format=Answer)
    assert [type(error) for error in sim.pop_failures()] == [SimulatorError]


# -- the service tier the response reports --------------------------------------------


@pytest.mark.parametrize(
    ("requested", "reported"),
    [(None, "default"), ("auto", "default"), ("flex", "flex"), ("fast", "priority")],
)
def test_the_response_reports_the_tier_that_served_it(
    sim: OpenAISimulator, requested: str | None, reported: str
) -> None:
    options = {} if requested is None else {"service_tier": requested}
    with sdk() as client:
        completion = client.chat.completions.create(**ask(), **options)
        chunks = list(client.chat.completions.create(**ask(stream=True), **options))
    assert completion.service_tier == reported
    assert {chunk.service_tier for chunk in chunks} == {reported}


# -- what held: modeled times and usage of streamed tool calls ---------------------------


def test_streamed_parallel_tool_calls_on_a_new_connection_at_their_modeled_times(
    clock: VirtualClock,
) -> None:
    latency = LLMLatency(ttft=0.3, per_token=0.02)
    with OpenAISimulator(clock=clock, latency=latency, handshake=0.1) as sim:
        sim.enqueue(TWO_CALLS, TWO_CALLS)
        with sdk() as client:
            start = clock.now()
            stream = client.chat.completions.create(
                **ask(tools=[WEATHER_TOOL], stream=True, stream_options={"include_usage": True})
            )
            arrivals = [(round(clock.elapsed(start), 6), chunk) for chunk in stream]
            plain = client.chat.completions.create(**ask(tools=[WEATHER_TOOL]))
    # a new connection (0.1 s handshake), then 1 text token and 2 x 2 argument tokens:
    # the first at ttft, each next one per_token later
    assert [request.handshake for request in sim.requests] == [0.1, 0.0]
    assert arrivals[0][0] == 0.1
    calls = [
        (at, call.index, call.id is not None)
        for at, chunk in arrivals
        for call in (chunk.choices[0].delta.tool_calls or [] if chunk.choices else [])
    ]
    assert calls == [
        (0.42, 0, True),
        (0.42, 0, False),
        (0.44, 0, False),
        (0.46, 1, True),
        (0.46, 1, False),
        (0.48, 1, False),
    ]
    assert sim.requests[0].ttft == 0.3
    assert sim.requests[1].duration == round(0.3 + 4 * 0.02, 6)
    assert arrivals[-1][1].usage == plain.usage
    assert sim.requests[0].output_tokens == plain.usage.completion_tokens == 5


# -- tool-call arguments as the API writes them ------------------------------------------


def test_a_single_calls_arguments_are_compact_and_parallel_calls_are_spaced(
    sim: OpenAISimulator,
) -> None:
    one = Reply(ToolUseBlock("get_weather", {"city": "New York City", "note": "a, b: c"}))
    sim.enqueue(one, one, TWO_CALLS)
    with sdk() as client:
        single = client.chat.completions.create(**ask(tools=[WEATHER_TOOL])).choices[0]
        chunks = list(client.chat.completions.create(**ask(tools=[WEATHER_TOOL], stream=True)))
        double = client.chat.completions.create(**ask(tools=[WEATHER_TOOL])).choices[0]
    compact = '{"city":"New York City","note":"a, b: c"}'
    assert (single.message.tool_calls or [])[0].function.arguments == compact
    pieces = [
        call.function.arguments
        for chunk in chunks
        for call in chunk.choices[0].delta.tool_calls or []
        if call.function and call.function.arguments
    ]
    assert "".join(pieces) == compact
    # as many tokens as the spaced form: the modeled time does not depend on the spacing
    assert len(pieces) == sim.requests[0].output_tokens == one.output_tokens
    spaced = [call.function.arguments for call in double.message.tool_calls or []]
    assert spaced == ['{"city": "Paris"}', '{"city": "Oslo"}']


@pytest.mark.parametrize("url", ["http://localhost:8000/v1", "https://gateway.example/openai/v1"])
def test_the_default_base_url_is_the_sdks_own_openai_base_url_when_set(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with OpenAISimulator(clock=clock) as sim, sdk(max_retries=0) as client:
        client.chat.completions.create(**ask())
    assert sim.base_url == url
    assert sim.last_request.url == f"{url}/chat/completions"


def test_a_base_url_given_wins_over_openai_base_url(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    assert OpenAISimulator(clock=clock, base_url=DEFAULT_BASE_URL).base_url == DEFAULT_BASE_URL


# -- a forced tool call ----------------------------------------------------------------

NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("choice", ["required", NAMED], ids=["required", "named"])
@pytest.mark.parametrize("scripted", [True, False], ids=["scripted-text", "default-reply"])
def test_a_forced_tool_call_answered_without_one_is_refused_clearly(
    sim: OpenAISimulator, choice: Any, scripted: bool
) -> None:
    if scripted:
        sim.enqueue(Reply.text("No tool needed."))
    with sdk() as client, pytest.raises(SimulatorError, match="tool_choice"):
        client.chat.completions.create(**ask(tools=[WEATHER_TOOL], tool_choice=choice))
    assert [type(error) for error in sim.pop_failures()] == [SimulatorError]


def test_a_named_tool_choice_answered_with_another_function_is_refused_clearly(
    sim: OpenAISimulator,
) -> None:
    other = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
    sim.enqueue(Reply(ToolUseBlock("get_time", {})))
    with sdk() as client, pytest.raises(SimulatorError, match=r"'get_weather'.*get_time"):
        client.chat.completions.create(**ask(tools=[WEATHER_TOOL, other], tool_choice=NAMED))
    sim.pop_failures()


def test_a_forced_tool_call_answered_with_one_is_served(sim: OpenAISimulator) -> None:
    sim.enqueue(TWO_CALLS, TWO_CALLS)
    with sdk() as client:
        for choice in ("required", NAMED):
            message = (
                client.chat.completions.create(**ask(tools=[WEATHER_TOOL], tool_choice=choice))
                .choices[0]
                .message
            )
            assert len(message.tool_calls or []) == 2


# -- what held: a stream the client closes midway ---------------------------------------


def test_a_stream_closed_midway_is_logged_as_cut_and_its_connection_not_reused(
    clock: VirtualClock,
) -> None:
    latency = LLMLatency(ttft=0.3, per_token=0.02)
    with OpenAISimulator(clock=clock, latency=latency, handshake=0.1) as sim:
        sim.enqueue(Reply.of_tokens(20))
        with sdk() as client:
            stream = client.chat.completions.create(**ask(stream=True))
            received = [chunk for chunk, _ in zip(stream, range(4), strict=False)]
            stream.close()
            start = clock.now()
            client.chat.completions.create(**ask())
            after_close = clock.elapsed(start)
    cut, after = sim.requests
    assert len(received) == 4  # the role chunk and 3 tokens
    assert (cut.completed, cut.ttft) == (False, 0.3)
    # the tokens sent before the close: those read, and any the SDK's reader took ahead
    assert 3 <= cut.output_tokens < 20
    assert after.handshake == 0.1  # a new connection: the cut one is not reused
    assert after_close == round(0.1 + after.duration, 6)
    assert sim.output_tokens == cut.output_tokens + after.output_tokens


# -- rate-limit headers ------------------------------------------------------------------

RATE_LIMIT_HEADERS = [
    f"x-ratelimit-{field}-{kind}"
    for field in ("limit", "remaining", "reset")
    for kind in ("requests", "tokens")
]


def test_every_response_reports_untouched_generous_rate_limits(sim: OpenAISimulator) -> None:
    sim.enqueue(Reply.text("a"), Reply.text("b"), Fault.http_error(400, "invalid_request_error"))
    with sdk(max_retries=0) as client:
        plain = client.chat.completions.with_raw_response.create(**ask())
        with client.chat.completions.with_streaming_response.create(**ask(stream=True)) as raw:
            streamed = raw.headers
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(**ask())
    for headers in (plain.headers, streamed, refused.value.response.headers):
        assert [name for name in headers if name.startswith("x-ratelimit-")] == RATE_LIMIT_HEADERS
        for kind in ("requests", "tokens"):
            limit = int(headers[f"x-ratelimit-limit-{kind}"])
            assert limit > 0
            assert int(headers[f"x-ratelimit-remaining-{kind}"]) == limit
            assert headers[f"x-ratelimit-reset-{kind}"] == "0s"
