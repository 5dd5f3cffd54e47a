"""The simulated Anthropic API against responses recorded from the real one.

Each test asks the simulator, through the anthropic SDK on a VirtualClock, for the same kind
of message as a recording (the same blocks: text, tool calls, thinking) and compares the two
in structure with :mod:`tests.recordings`. The first tests check the comparison itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from perfkit import VirtualClock
from perfkit.simulation import AnthropicSimulator, Fault, LLMLatency, Reply, ToolUseBlock
from tests.recordings import (
    Event,
    compare_bodies,
    compare_streams,
    exchange,
    exchange_stream,
    load_json,
    load_stream,
    parse_sse,
    ratelimit_header_differences,
    stream_pattern,
)

LATENCY = LLMLatency(ttft=0.5, per_token=0.02)

STREAMS = {
    "sdk_basic_response.txt": lambda: load_stream("sdk_basic_response.txt"),
    "sdk_tool_use_response.txt": lambda: load_stream("sdk_tool_use_response.txt"),
    "sdk_incomplete_partial_json_response.txt": lambda: load_stream(
        "sdk_incomplete_partial_json_response.txt"
    ),
    "fantasy_thinking_stream.txt": lambda: load_stream("fantasy_thinking_stream.txt"),
    "sdk_runner_stream_exchange.json[0]": lambda: exchange_stream(
        "sdk_runner_stream_exchange.json", 0
    ),
    "sdk_runner_stream_exchange.json[1]": lambda: exchange_stream(
        "sdk_runner_stream_exchange.json", 1
    ),
}


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator(latency=LATENCY, clock=clock) as simulator:
        yield simulator


def request(recorded: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The recorded request's body, for messages.create (its ``stream`` flag left out)."""
    body = {key: value for key, value in recorded["request"]["body"].items() if key != "stream"}
    return {**body, **changes}


def ask(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        **extra,
    }


def streamed(client: anthropic.Anthropic, **body: Any) -> tuple[list[Event], dict[str, str]]:
    """The raw event stream (and headers) the simulator answers ``body`` with."""
    with client.messages.with_streaming_response.create(stream=True, **body) as response:
        return parse_sse(b"".join(response.iter_bytes())), dict(response.headers)


def answered(client: anthropic.Anthropic, **body: Any) -> tuple[Any, dict[str, str]]:
    """The raw JSON body (and headers) the simulator answers ``body`` with, unstreamed."""
    response = client.messages.with_raw_response.create(**body)
    return json.loads(response.http_response.content), dict(response.headers)


def raw_error(client: anthropic.Anthropic, **body: Any) -> tuple[int, Any, dict[str, str]]:
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(**body)
    error = raised.value
    return error.status_code, error.body, dict(error.response.headers)


def thinking_block(text: str) -> Any:
    # Imported here: the class is new, and the tests that use it are expected to fail on
    # a simulator without it rather than break the whole module.
    from perfkit.simulation import ThinkingBlock  # type: ignore[attr-defined]

    return ThinkingBlock(text)


# --- the comparison itself ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_each_recorded_stream_compares_clean_with_itself(name: str) -> None:
    events = STREAMS[name]()
    assert events[0].name == "message_start"
    assert events[-1].name == "message_stop"
    assert compare_streams(events, events) == []


def test_the_recorded_stream_patterns() -> None:
    assert stream_pattern(load_stream("sdk_tool_use_response.txt")) == [
        "message_start",
        "content_block_start(text)",
        "text_delta+",
        "content_block_stop",
        "content_block_start(tool_use)",
        'input_json_delta("")',
        "input_json_delta+",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert stream_pattern(load_stream("fantasy_thinking_stream.txt"))[:5] == [
        "message_start",
        "content_block_start(thinking)",
        "thinking_delta+",
        "signature_delta+",
        "content_block_stop",
    ]


def test_the_comparison_finds_a_ping_before_the_first_block() -> None:
    recorded = load_stream("sdk_basic_response.txt")
    ping = next(event for event in recorded if event.name == "ping")
    early = [recorded[0], ping, *(event for event in recorded[1:] if event.name != "ping")]
    assert compare_streams(early, recorded) == [
        "ping: event 1 comes before the first content_block_start"
    ]
    no_ping = [event for event in recorded if event.name != "ping"]
    assert compare_streams(no_ping, recorded) == ["ping: none, where the recording has one"]


def test_the_comparison_finds_a_json_delta_that_does_not_start_empty() -> None:
    recorded = load_stream("sdk_tool_use_response.txt")
    without_empty = [
        event for event in recorded if event.data.get("delta", {}).get("partial_json") != ""
    ]
    differences = compare_streams(without_empty, recorded)
    assert "block 1: first input_json_delta is '{\"locati', recorded ones are ''" in differences
    assert any(difference.startswith("event order:") for difference in differences)


def test_the_comparison_finds_missing_and_added_keys_types_and_id_prefixes() -> None:
    recorded = exchange("sdk_parse_exchange.json", 0)["response"]["body"]
    changed = json.loads(json.dumps(recorded))
    del changed["usage"]["service_tier"]
    changed["usage"]["extra"] = 1
    changed["usage"]["output_tokens"] = "26"
    changed["id"] = "message_01"
    changed["content"].append({"type": "tool_use", "id": "toolu_1", "name": "x", "input": {}})
    assert sorted(compare_bodies(changed, recorded)) == sorted(
        [
            '$.usage.service_tier: missing (recorded: "standard")',
            "$.usage.extra: not in the recording (1)",
            '$.usage.output_tokens: string "26", recorded number',
            "$.id: 'message_01' has not the recorded prefix 'msg_'",
            "$.content: blocks ['text', 'tool_use'], recorded ['text']",
        ]
    )
    assert compare_bodies(changed, recorded, allow_extra_keys=True)
    assert compare_bodies(recorded, recorded) == []


def test_the_recorded_ratelimit_headers_are_the_twelve_checked() -> None:
    headers = exchange("sdk_runner_ratelimit_exchange.json", 0)["response"]["headers"]
    assert ratelimit_header_differences(headers) == []
    assert ratelimit_header_differences({}) != []
    broken = {**headers, "anthropic-ratelimit-tokens-reset": "soon"}
    assert ratelimit_header_differences(broken) == [
        "header anthropic-ratelimit-tokens-reset: 'soon' is not an RFC 3339 UTC time"
    ]


# --- the simulator against the recordings ------------------------------------------------------


def test_a_streamed_text_reply_is_structured_as_recorded(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    recorded = exchange("sdk_runner_stream_exchange.json", 1)
    sim.enqueue(Reply.text("The weather in San Francisco, CA is currently sunny."))
    events, _ = streamed(client, **request(recorded))
    assert compare_streams(events, exchange_stream("sdk_runner_stream_exchange.json", 1)) == []


def test_a_streamed_text_reply_has_its_ping_where_the_sdk_recording_has_it(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    sim.enqueue(Reply.text("Hello there!"))
    events, _ = streamed(client, **ask())
    # Recorded before the API added cache and service-tier fields: extra keys are fine.
    recorded = load_stream("sdk_basic_response.txt")
    assert compare_streams(events, recorded, allow_extra_keys=True) == []
    assert [event.name for event in events][:3] == [
        "message_start",
        "content_block_start",
        "ping",
    ]


def test_a_streamed_tool_call_is_structured_as_recorded(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    recorded = exchange("sdk_runner_stream_exchange.json", 0)
    sim.enqueue(Reply(ToolUseBlock("get_weather", {"location": "San Francisco, CA", "units": "f"})))
    events, _ = streamed(client, **request(recorded))
    assert compare_streams(events, exchange_stream("sdk_runner_stream_exchange.json", 0)) == []


def test_text_then_a_tool_call_streamed_is_structured_as_recorded(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    sim.enqueue(
        Reply.tool_use(
            "get_weather", {"location": "Paris"}, text="I'll check the weather in Paris."
        )
    )
    events, _ = streamed(client, **ask())
    recorded = load_stream("sdk_tool_use_response.txt")
    assert compare_streams(events, recorded, allow_extra_keys=True) == []


def test_a_tool_call_cut_by_max_tokens_streams_as_recorded(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    tool_input = {"filename": "taxes.txt", "lines_of_text": ["# GUIDE", "", "## INTRO", "Filing"]}
    reply = Reply.tool_use("make_file", tool_input, text="I'll create it now.")
    sim.enqueue(reply)
    events, _ = streamed(client, **ask(max_tokens=12))
    recorded = load_stream("sdk_incomplete_partial_json_response.txt")
    assert compare_streams(events, recorded, allow_extra_keys=True) == []


def test_a_tool_call_cut_by_max_tokens_has_the_same_input_streamed_and_not(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    tool_input = {"filename": "taxes.txt", "lines_of_text": ["# GUIDE", "", "## INTRO", "Filing"]}
    reply = Reply.tool_use("make_file", tool_input, text="I'll create it now.")
    sim.enqueue(reply, reply)
    whole = client.messages.create(**ask(max_tokens=12))
    with client.messages.stream(**ask(max_tokens=12)) as stream:
        final = stream.get_final_message()
    assert whole.stop_reason == final.stop_reason == "max_tokens"
    assert whole.content[1].input == final.content[1].input != {}  # type: ignore[union-attr]


def test_a_message_is_structured_as_recorded_and_names_the_dated_model(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    recorded = exchange("sdk_parse_exchange.json", 0)["response"]["body"]
    sim.enqueue(Reply.text('{"product_name": "Green Tea", "price": 5.50, "quantity": 2}'))
    body, _ = answered(client, **ask(model="claude-haiku-4-5"))
    assert compare_bodies(body, recorded) == []
    # A request for the alias is answered with the dated id, as recorded.
    streamed_exchange = exchange("sdk_runner_stream_exchange.json", 0)
    assert streamed_exchange["request"]["body"]["model"] == "claude-haiku-4-5"
    assert body["model"] == "claude-haiku-4-5-20251001"
    assert '"model":"claude-haiku-4-5-20251001"' in streamed_exchange["response"]["body"]


def test_a_tool_call_message_is_structured_as_recorded(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    recorded = exchange("sdk_runner_request_id_exchange.json", 0)["response"]
    sim.enqueue(Reply(ToolUseBlock("get_weather", {"location": "San Francisco, CA", "units": "f"})))
    body, headers = answered(client, **ask(model="claude-haiku-4-5"))
    assert compare_bodies(body, recorded["body"], allow_extra_keys=True) == []
    assert body["content"][0]["caller"] == {"type": "direct"}
    assert body["model"] == recorded["body"]["model"]
    assert compare_bodies(headers["request-id"], recorded["headers"]["request-id"]) == []


def test_every_response_carries_the_recorded_ratelimit_headers(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    sim.enqueue(Reply.text("a"), Reply.text("b"), Fault.rate_limit(), Fault.overloaded())
    _, json_headers = answered(client, **ask())
    _, stream_headers = streamed(client, **ask())
    _, _, limited = raw_error(client, **ask())
    _, _, overloaded = raw_error(client, **ask())
    for headers in (json_headers, stream_headers, limited, overloaded):
        assert ratelimit_header_differences(headers) == []


def test_error_bodies_carry_the_request_id_and_say_whether_to_retry(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    sim.enqueue(Fault.rate_limit(), Fault.http_error(404, "not_found_error"))
    status, body, headers = raw_error(client, **ask())
    # The SDK's ErrorResponse type (anthropic/types/shared/error_response.py) and the API's
    # documented error shape: {"type": "error", "error": {...}, "request_id": "req_..."}.
    shape = {"type": "error", "error": {"type": "x", "message": "x"}, "request_id": "req_x"}
    assert (status, compare_bodies(body, shape)) == (429, [])
    assert body["request_id"] == headers["request-id"]
    assert headers["x-should-retry"] == "true"
    status, body, headers = raw_error(client, **ask())
    assert (status, body["request_id"], headers["x-should-retry"]) == (
        404,
        headers["request-id"],
        "false",
    )


def the_recorded_thinking_turn(sim: AnthropicSimulator) -> dict[str, Any]:
    """Script the recorded thinking exchange's reply (a thought, then a weather call);
    returns its request."""
    sim.enqueue(
        Reply(
            thinking_block("The user asks for the weather in Florence."),
            ToolUseBlock("weather", {"location": "Florence, Italy"}),
        )
    )
    return ask(max_tokens=8096, thinking={"type": "enabled", "budget_tokens": 4000})


def test_a_thinking_reply_streams_as_recorded(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    events, _ = streamed(client, **the_recorded_thinking_turn(sim))
    recorded = load_stream("fantasy_thinking_stream.txt")
    assert compare_streams(events, recorded, allow_extra_keys=True) == []


def test_a_thinking_reply_is_structured_as_recorded(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    body, _ = answered(client, **the_recorded_thinking_turn(sim))
    recorded = load_json("fantasy_thinking_message.json")
    assert compare_bodies(body, recorded, allow_extra_keys=True) == []
