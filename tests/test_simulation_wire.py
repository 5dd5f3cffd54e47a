"""Tests of the Anthropic wire format and the core's replies: rendering, tokens, SSE streams."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from perfkit.simulation._latency import LatencyPlan, LLMLatency
from perfkit.simulation.anthropic import (
    RenderedMessage,
    count_input_tokens,
    error_body,
    render,
    sse_event,
    stream_chunks,
)
from perfkit.simulation.anthropic._wire import (
    RateLimit,
    rate_limit_headers,
    should_retry,
    thinking_budget,
    tokens_in,
    unlimited,
)
from perfkit.simulation.server import (
    Fault,
    Reply,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    count_tokens,
    tokenize,
)

Event = tuple[str, dict[str, Any]]


def body(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": "claude-test-model",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    request.update(overrides)
    return request


def parse_sse(data: bytes) -> list[Event]:
    """Split a server-sent event stream into (event name, JSON data), checking the framing."""
    assert data.endswith(b"\n\n")
    events = []
    for frame in data.decode().split("\n\n")[:-1]:
        name_line, data_line = frame.split("\n")
        assert name_line.startswith("event: ")
        assert data_line.startswith("data: ")
        payload = json.loads(data_line.removeprefix("data: "))
        assert payload["type"] == name_line.removeprefix("event: ")
        events.append((name_line.removeprefix("event: "), payload))
    return events


def stream_events(message: RenderedMessage, plan: LatencyPlan, **options: Any) -> list[Event]:
    return parse_sse(b"".join(data for _, data in stream_chunks(message, plan, **options)))


def names(events: list[Event]) -> list[str]:
    return [name for name, _ in events]


def plan_for(tokens: int, *, ttft: float = 0.5, per_token: float = 0.02) -> LatencyPlan:
    return LLMLatency(ttft=ttft, per_token=per_token).plan(tokens)


# --- tokenize ------------------------------------------------------------------------------


def test_tokens_join_back_to_the_text_for_any_text() -> None:
    # hypothesis is not in the dev extra yet; the seeded fuzz below always runs.
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")

    @hypothesis.given(strategies.text())
    def check(text: str) -> None:
        pieces = tokenize(text)
        assert "".join(pieces) == text
        assert all(pieces)
        assert count_tokens(text) == len(pieces)

    check()


def test_tokens_split_words_with_their_leading_whitespace_for_any_words() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")
    words = strategies.text(alphabet="abcxyz,.!?\u00e9\u4e2d", min_size=1)

    @hypothesis.given(strategies.lists(words, min_size=1, max_size=30))
    def check(words: list[str]) -> None:
        assert tokenize(" ".join(words)) == [words[0], *(f" {word}" for word in words[1:])]

    check()


def test_tokens_join_back_to_the_text_seeded_fuzz() -> None:
    rng = random.Random(1234)
    alphabet = "ab \t\n\r\u00a0\u2003\u3000.,\u00e9\u4e2d\U0001f600"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        pieces = tokenize(text)
        assert "".join(pieces) == text, text
        assert all(pieces), text
        assert tokenize(text) == pieces


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("", []),
        ("   ", ["   "]),
        ("Hello", ["Hello"]),
        ("Hello, simulated world", ["Hello,", " simulated", " world"]),
        ("  lead and trail  ", ["  lead", " and", " trail  "]),
        ("tabs\tand\nnewlines", ["tabs", "\tand", "\nnewlines"]),
    ],
)
def test_tokenize_examples(text: str, pieces: list[str]) -> None:
    assert tokenize(text) == pieces


# --- replies -------------------------------------------------------------------------------


def test_reply_token_counts_and_stop_reasons() -> None:
    assert Reply.of_tokens(100).output_tokens == 100
    assert Reply.of_tokens(3, word="ab").blocks == (TextBlock("ab ab ab"),)
    assert Reply.text("one two three").stop_reason == "end_turn"
    tool = Reply.tool_use("get_weather", {"city": "Paris"}, text="Let me look.")
    assert tool.stop_reason == "tool_use"
    assert tool.blocks == (
        TextBlock("Let me look."),
        ToolUseBlock("get_weather", {"city": "Paris"}),
    )
    assert tool.output_tokens == 3 + count_tokens('{"city": "Paris"}')
    assert Reply("a", stop_reason="pause_turn").stop_reason == "pause_turn"


@pytest.mark.parametrize(
    ("make", "error", "shown"),
    [
        (lambda: Reply(), ValueError, "at least one content block"),
        (lambda: Reply(42), TypeError, "got 42"),
        (lambda: Reply.text("a", input_tokens=-1), ValueError, "got -1"),
        (lambda: Reply.of_tokens(0), ValueError, "tokens must be >= 1, got 0"),
        (lambda: Fault.http_error(302, "redirect"), ValueError, "got 302"),
        (lambda: Fault.server_error(429), ValueError, "got 429"),
        (lambda: Fault.rate_limit(retry_after=-1), ValueError, "retry_after"),
        (lambda: Fault.timeout(after=float("nan")), ValueError, "after"),
        (lambda: Fault.stream_error(after_tokens=-2), ValueError, "got -2"),
    ],
)
def test_invalid_replies_and_faults_are_rejected(
    make: Any, error: type[Exception], shown: str
) -> None:
    with pytest.raises(error, match=shown):
        make()


def test_fault_constructors_carry_the_api_error() -> None:
    limited = Fault.rate_limit(retry_after=1, retry_after_ms=1500)
    assert (limited.status, limited.error_type) == (429, "rate_limit_error")
    assert limited.headers == {"retry-after": "1", "retry-after-ms": "1500"}
    assert Fault.rate_limit(retry_after=0.5).headers == {"retry-after": "0.5"}
    assert (Fault.overloaded().status, Fault.overloaded().error_type) == (529, "overloaded_error")
    assert (Fault.server_error(503).status, Fault.server_error().error_type) == (503, "api_error")
    assert Fault.http_error(418, "teapot").message == "simulated teapot"
    assert Fault.connection_error().kind == "connection_error"
    assert (Fault.timeout().after, Fault.timeout(after=2).after) == (None, 2)
    assert Fault.stream_error(after_tokens=5).after_tokens == 5


def test_tool_input_json_is_what_the_api_streams() -> None:
    block = ToolUseBlock("search", {"query": "latency", "limit": 3})
    assert block.input_json() == '{"query": "latency", "limit": 3}'
    assert json.loads(block.input_json()) == {"query": "latency", "limit": 3}


# --- render --------------------------------------------------------------------------------


def test_render_a_text_reply_as_the_api_does() -> None:
    message = render(Reply.text("Hello there, friend"), body(), message_id="msg_sim_000007")
    assert message.to_json() == {
        "id": "msg_sim_000007",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-model",
        "content": [{"type": "text", "text": "Hello there, friend"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 3,
            "service_tier": "standard",
            "inference_geo": "not_available",
        },
    }
    assert message.blocks[0].pieces == ("Hello", " there,", " friend")


def test_render_without_a_model_names_the_simulated_one() -> None:
    request = body()
    del request["model"]
    assert render(Reply.text("x"), request, message_id="msg_1").model == "claude-simulated"


def test_max_tokens_truncates_text() -> None:
    message = render(Reply.of_tokens(10), body(max_tokens=4), message_id="msg_1")
    assert message.to_json()["content"] == [{"type": "text", "text": "token token token token"}]
    assert message.stop_reason == "max_tokens"
    assert message.stop_sequence is None
    assert message.output_tokens == 4
    assert message.usage()["output_tokens"] == 4


def test_max_tokens_equal_to_the_reply_does_not_truncate() -> None:
    message = render(Reply.of_tokens(4), body(max_tokens=4), message_id="msg_1")
    assert message.stop_reason == "end_turn"
    assert message.output_tokens == 4


def test_max_tokens_drops_the_blocks_after_the_cut() -> None:
    reply = Reply("one two three", "four five", ToolUseBlock("tool", {"a": 1}))
    message = render(reply, body(max_tokens=2), message_id="msg_1")
    assert [block.content for block in message.blocks] == [{"type": "text", "text": "one two"}]
    assert message.stop_reason == "max_tokens"


def test_a_stop_sequence_ends_the_text_before_it() -> None:
    reply = Reply.text("Counting: one, two, STOP three, END four")
    message = render(reply, body(stop_sequences=["END", "STOP"]), message_id="msg_1")
    assert message.to_json()["content"] == [{"type": "text", "text": "Counting: one, two, "}]
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "STOP"
    assert message.to_json()["stop_sequence"] == "STOP"
    assert "".join(message.blocks[0].pieces) == "Counting: one, two, "


def test_a_stop_sequence_not_in_the_text_changes_nothing() -> None:
    message = render(Reply.text("a b c"), body(stop_sequences=["zzz", ""]), message_id="msg_1")
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None


def test_max_tokens_wins_over_a_later_stop_sequence() -> None:
    reply = Reply.text("one two three STOP four")
    message = render(reply, body(max_tokens=2, stop_sequences=["STOP"]), message_id="msg_1")
    assert message.to_json()["content"][0]["text"] == "one two"
    assert (message.stop_reason, message.stop_sequence) == ("max_tokens", None)


def test_render_tool_use_blocks() -> None:
    reply = Reply.tool_use("get_weather", {"city": "Paris", "units": "C"}, text="Checking.")
    message = render(reply, body(), message_id="msg_sim_000003")
    assert message.to_json()["content"] == [
        {"type": "text", "text": "Checking."},
        {
            "type": "tool_use",
            "id": "toolu_sim_000003_1",
            "name": "get_weather",
            "input": {"city": "Paris", "units": "C"},
            "caller": {"type": "direct"},
        },
    ]
    assert message.stop_reason == "tool_use"
    assert "".join(message.blocks[1].pieces) == '{"city": "Paris", "units": "C"}'
    assert message.output_tokens == 1 + count_tokens('{"city": "Paris", "units": "C"}')


def test_a_tool_use_id_can_be_given() -> None:
    message = render(Reply.tool_use("t", {}, id="toolu_fixed"), body(), message_id="msg_1")
    assert message.to_json()["content"][0]["id"] == "toolu_fixed"
    assert message.to_json()["content"][0]["input"] == {}


def test_input_tokens_can_be_scripted() -> None:
    message = render(Reply.text("x", input_tokens=1234), body(), message_id="msg_1")
    assert message.usage()["input_tokens"] == 1234


def test_count_input_tokens_counts_system_messages_and_tools() -> None:
    request = body(
        system="You are terse.",
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "Sunny 21C"}],
            },
        ],
    )
    expected = 3 + 6 + 3 + count_tokens(json.dumps({"city": "Paris"})) + 2
    assert count_input_tokens(request) == expected
    tools = [{"name": "w", "input_schema": {"type": "object"}}]
    assert count_input_tokens({**request, "tools": tools}) == expected + count_tokens(
        json.dumps(tools, sort_keys=True)
    )


def test_count_input_tokens_is_deterministic_and_grows_with_the_prompt() -> None:
    short = body(messages=[{"role": "user", "content": "one two"}])
    long = body(messages=[{"role": "user", "content": "one two three four"}])
    assert count_input_tokens(short) == count_input_tokens(dict(short)) == 2
    assert count_input_tokens(long) == 4
    assert count_input_tokens({}) == 0


# --- SSE -----------------------------------------------------------------------------------


def test_sse_event_framing() -> None:
    assert sse_event("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert error_body("overloaded_error", "Overloaded") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_stream_events_come_in_the_api_order() -> None:
    message = render(Reply.text("one two three"), body(), message_id="msg_1")
    events = stream_events(message, plan_for(3))
    assert names(events) == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["id"] == "msg_1"
    assert start["usage"]["output_tokens"] == 1
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert deltas == [
        {"type": "text_delta", "text": "one"},
        {"type": "text_delta", "text": " two"},
        {"type": "text_delta", "text": " three"},
    ]
    assert events[6][1] == {"type": "content_block_stop", "index": 0}
    assert events[7][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 3,
        },
    }


def test_message_delta_reports_cumulative_output_over_all_blocks() -> None:
    reply = Reply.tool_use("lookup", {"id": 7}, text="Looking it up now.")
    message = render(reply, body(), message_id="msg_1")
    events = stream_events(message, plan_for(message.output_tokens))
    final = dict(events)["message_delta"]
    assert final["usage"]["output_tokens"] == message.output_tokens
    assert final["delta"]["stop_reason"] == "tool_use"


def test_stop_reasons_reach_the_message_delta() -> None:
    message = render(Reply.text("a b STOP c"), body(stop_sequences=["STOP"]), message_id="msg_1")
    final = dict(stream_events(message, plan_for(message.output_tokens)))["message_delta"]
    assert final["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}


def test_tool_input_streams_as_json_pieces_that_rejoin() -> None:
    tool_input = {"city": "Paris", "days": 3, "units": ["C", "F"], "note": "two words"}
    reply = Reply.tool_use("forecast", tool_input, text="Let me check.")
    message = render(reply, body(), message_id="msg_sim_000001")
    events = stream_events(message, plan_for(message.output_tokens))
    starts = [data for name, data in events if name == "content_block_start"]
    assert starts[1] == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {
            "type": "tool_use",
            "id": "toolu_sim_000001_1",
            "name": "forecast",
            "input": {},
            "caller": {"type": "direct"},
        },
    }
    pieces = [
        data["delta"]["partial_json"]
        for name, data in events
        if name == "content_block_delta" and data["index"] == 1
    ]
    assert all(
        data["delta"]["type"] == "input_json_delta"
        for name, data in events
        if name == "content_block_delta" and data["index"] == 1
    )
    assert pieces[0] == ""  # as recorded: every tool block's input opens empty
    assert len(pieces) > 2
    assert json.loads("".join(pieces)) == tool_input
    assert names(events).count("content_block_stop") == 2


def test_first_token_waits_the_ttft_then_each_gap() -> None:
    message = render(Reply.text("one two three"), body(), message_id="msg_1")
    plan = LatencyPlan(connect=0.1, ttft=0.5, gaps=(0.02, 0.03))
    chunks = stream_chunks(message, plan)
    assert [delay for delay, _ in chunks] == [0.0, 0.5, 0.02, 0.03, 0.0, 0.0]
    assert names(parse_sse(chunks[0][1])) == ["message_start"]
    assert names(parse_sse(chunks[1][1])) == [
        "content_block_start",
        "ping",
        "content_block_delta",
    ]
    assert names(parse_sse(chunks[2][1])) == ["content_block_delta"]
    assert names(parse_sse(chunks[4][1])) == ["content_block_stop"]
    assert names(parse_sse(chunks[5][1])) == ["message_delta", "message_stop"]


def test_the_schedule_adds_up_to_the_plan_after_connect() -> None:
    message = render(Reply.of_tokens(100), body(), message_id="msg_1")
    plan = LLMLatency(connect=0.2, ttft=0.5, per_token=0.02).plan(100)
    chunks = stream_chunks(message, plan)
    assert round(plan.connect + sum(delay for delay, _ in chunks), 6) == plan.total == 2.68


def test_gaps_continue_across_blocks() -> None:
    reply = Reply("one two", ToolUseBlock("t", {"k": "v"}))
    message = render(reply, body(), message_id="msg_1")
    tokens = message.output_tokens
    plan = LatencyPlan(connect=0.0, ttft=1.0, gaps=tuple(0.1 * (i + 1) for i in range(tokens - 1)))
    delays = [
        delay for delay, data in stream_chunks(message, plan) if b"content_block_delta" in data
    ]
    assert delays == [1.0, *plan.gaps]


def test_an_error_event_replaces_the_rest_after_n_tokens() -> None:
    message = render(Reply.of_tokens(10), body(), message_id="msg_1")
    plan = plan_for(4)
    chunks = stream_chunks(
        message, plan, error_after_tokens=3, error=("api_error", "Internal server error")
    )
    events = parse_sse(b"".join(data for _, data in chunks))
    assert names(events) == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "error",
    ]
    assert events[-1][1] == error_body("api_error", "Internal server error")
    assert [delay for delay, _ in chunks] == [0.0, 0.5, 0.02, 0.02, 0.02]


def test_an_error_before_any_token_comes_after_the_ttft() -> None:
    message = render(Reply.of_tokens(5), body(), message_id="msg_1")
    chunks = stream_chunks(message, plan_for(1), error_after_tokens=0)
    assert [delay for delay, _ in chunks] == [0.0, 0.5]
    assert names(parse_sse(chunks[1][1])) == ["content_block_start", "ping", "error"]
    assert parse_sse(chunks[1][1])[2][1]["error"]["type"] == "overloaded_error"


def test_an_error_after_the_whole_reply_still_replaces_the_end() -> None:
    message = render(Reply.of_tokens(2), body(), message_id="msg_1")
    events = stream_events(message, plan_for(3), error_after_tokens=2)
    assert names(events)[-3:] == ["content_block_delta", "content_block_stop", "error"]
    assert "message_stop" not in names(events)


# --- review fixes: tool input under max_tokens, message_start stop fields -------------------


def test_a_tool_call_cut_by_max_tokens_stops_with_max_tokens() -> None:
    reply = Reply.tool_use("lookup", {"query": "one two three four five"}, text="Let me check")
    full_tool_pieces = tokenize(
        ToolUseBlock("lookup", {"query": "one two three four five"}).input_json()
    )
    assert len(full_tool_pieces) > 3
    message = render(reply, body(max_tokens=5), message_id="msg_cut")
    assert message.stop_reason == "max_tokens"
    assert message.output_tokens == 5
    text, tool = message.blocks
    assert text.content == {"type": "text", "text": "Let me check"}
    assert tool.pieces == tuple(full_tool_pieces[:2])
    assert tool.content["input"] == {}


def test_a_tool_call_that_fits_keeps_its_input_and_stop_reason() -> None:
    reply = Reply.tool_use("lookup", {"q": "x"})
    message = render(reply, body(max_tokens=50), message_id="msg_fits")
    assert message.stop_reason == "tool_use"
    assert message.blocks[0].content["input"] == {"q": "x"}


def test_message_start_has_no_stop_fields_even_when_the_reply_stops_on_a_sequence() -> None:
    message = render(
        Reply.text("one two STOP three"), body(stop_sequences=["STOP"]), message_id="m"
    )
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "STOP")
    events = stream_events(message, plan_for(message.output_tokens))
    started = events[0][1]["message"]
    assert (started["stop_reason"], started["stop_sequence"]) == (None, None)
    delta = next(data for name, data in events if name == "message_delta")
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}


# --- as recorded: usage, tool calls cut short, thinking, headers -----------------------------


def thinking_body(budget: int = 2048, **overrides: Any) -> dict[str, Any]:
    return body(thinking={"type": "enabled", "budget_tokens": budget}, **overrides)


def test_message_delta_repeats_the_input_and_cache_counts() -> None:
    message = render(Reply.text("one two"), body(), message_id="msg_1")
    final = dict(stream_events(message, plan_for(2)))["message_delta"]
    assert final["usage"] == {
        "input_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 2,
    }


def test_server_tool_use_is_reported_only_when_a_server_tool_is_offered() -> None:
    plain = render(Reply.text("x"), body(tools=[{"name": "w", "input_schema": {}}]), message_id="m")
    assert "server_tool_use" not in plain.usage()
    search = {"type": "web_search_20250305", "name": "web_search"}
    offered = render(Reply.text("x"), body(tools=[search]), message_id="m")
    assert offered.usage()["server_tool_use"] == {"web_search_requests": 0, "web_fetch_requests": 0}
    assert offered.delta_usage()["server_tool_use"] == offered.usage()["server_tool_use"]


def test_the_model_answered_with_can_differ_from_the_request() -> None:
    message = render(Reply.text("x"), body(), message_id="m", model="claude-test-model-20250101")
    assert message.to_json()["model"] == "claude-test-model-20250101"


def test_a_tool_call_cut_by_max_tokens_keeps_the_input_the_sdk_accumulates() -> None:
    tool_input = {"city": "Paris", "days": 3, "note": "two words and more"}
    reply = Reply.tool_use("forecast", tool_input)
    full = tokenize(ToolUseBlock("forecast", tool_input).input_json())
    cut_at = next(i for i, piece in enumerate(full) if "two" in piece)  # inside "note"
    message = render(reply, body(max_tokens=cut_at + 1), message_id="msg_1")
    tool = message.blocks[0]
    assert (message.stop_reason, tool.complete) == ("max_tokens", False)
    # What the SDK accumulates from the streamed JSON, parsed as it parses it.
    from jiter import from_json

    streamed = "".join(tool.pieces)
    assert tool.content["input"] == from_json(streamed.encode(), partial_mode=True)
    assert tool.content["input"] == {"city": "Paris", "days": 3}


def test_a_tool_call_cut_by_max_tokens_is_not_closed_in_the_stream() -> None:
    reply = Reply.tool_use("lookup", {"query": "one two three four five"}, text="Let me check")
    message = render(reply, body(max_tokens=5), message_id="msg_cut")
    events = stream_events(message, plan_for(5))
    # As recorded (sdk_incomplete_partial_json_response.txt): the text block is closed, the
    # cut tool block is not; message_delta says max_tokens.
    assert [data["index"] for name, data in events if name == "content_block_stop"] == [0]
    assert names(events)[-2:] == ["message_delta", "message_stop"]
    assert dict(events)["message_delta"]["delta"]["stop_reason"] == "max_tokens"


def test_thinking_blocks_show_only_when_the_request_enables_thinking() -> None:
    reply = Reply(ThinkingBlock("Let me think it over."), "The answer.")
    assert [b.content["type"] for b in render(reply, body(), message_id="m").blocks] == ["text"]
    disabled = body(thinking={"type": "disabled"})
    assert [b.content["type"] for b in render(reply, disabled, message_id="m").blocks] == ["text"]
    shown = render(reply, thinking_body(), message_id="m")
    assert [b.content["type"] for b in shown.blocks] == ["thinking", "text"]
    assert shown.blocks[0].content["thinking"] == "Let me think it over."
    assert thinking_budget(thinking_body(1500)) == 1500
    assert thinking_budget(body()) is None


def test_thinking_counts_as_output_and_is_capped_by_its_budget() -> None:
    thought = " ".join(f"w{i}" for i in range(40))
    reply = Reply(ThinkingBlock(thought), "one two three")
    message = render(reply, thinking_body(10), message_id="m")
    thinking = message.blocks[0]
    assert len(thinking.pieces) == 10
    assert thinking.content["thinking"] == "".join(tokenize(thought)[:10])
    assert message.output_tokens == message.usage()["output_tokens"] == 10 + 3
    # max_tokens counts thinking too: 12 leaves 2 tokens of text.
    cut = render(reply, thinking_body(10, max_tokens=12), message_id="m")
    assert cut.blocks[1].content["text"] == "one two"
    assert cut.stop_reason == "max_tokens"


def test_a_thinking_block_is_signed_deterministically_unless_a_signature_is_given() -> None:
    message = render(Reply(ThinkingBlock("Hmm."), "x"), thinking_body(), message_id="m")
    again = render(Reply(ThinkingBlock("Hmm."), "x"), thinking_body(), message_id="m2")
    signature = message.blocks[0].content["signature"]
    assert isinstance(signature, str)
    assert len(signature) > 40
    assert signature == again.blocks[0].content["signature"]
    given = render(Reply(ThinkingBlock("Hmm.", "sig_1"), "x"), thinking_body(), message_id="m")
    assert given.blocks[0].content == {"type": "thinking", "thinking": "Hmm.", "signature": "sig_1"}


def test_thinking_streams_before_the_text_with_one_signature_delta() -> None:
    reply = Reply(ThinkingBlock("First this, then that.", "sig_1"), "Done.")
    message = render(reply, thinking_body(), message_id="m")
    events = stream_events(message, plan_for(message.output_tokens))
    assert names(events) == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert deltas[:5] == [
        {"type": "thinking_delta", "thinking": "First"},
        {"type": "thinking_delta", "thinking": " this,"},
        {"type": "thinking_delta", "thinking": " then"},
        {"type": "thinking_delta", "thinking": " that."},
        {"type": "signature_delta", "signature": "sig_1"},
    ]
    assert deltas[5] == {"type": "text_delta", "text": "Done."}


def test_thinking_tokens_are_decoded_before_the_first_text_token() -> None:
    reply = Reply(ThinkingBlock("a b c"), "x y")
    message = render(reply, thinking_body(), message_id="m")
    plan = LatencyPlan(connect=0.0, ttft=0.5, gaps=(0.1, 0.2, 0.3, 0.4))
    chunks = stream_chunks(message, plan)
    token_waits = [delay for delay, data in chunks if tokens_in(data)]
    assert token_waits == [0.5, 0.1, 0.2, 0.3, 0.4]
    first_text = next(i for i, (_, data) in enumerate(chunks) if b"text_delta" in data)
    assert round(sum(delay for delay, _ in chunks[: first_text + 1]), 6) == 0.5 + 0.1 + 0.2 + 0.3


def test_tokens_in_counts_the_token_deltas_of_a_chunk() -> None:
    reply = Reply(ThinkingBlock("a b", "sig"), ToolUseBlock("t", {"k": "v"}))
    message = render(reply, thinking_body(), message_id="m")
    chunks = stream_chunks(message, plan_for(message.output_tokens))
    assert sum(tokens_in(data) for _, data in chunks) == message.output_tokens == 2 + 2
    assert tokens_in(sse_event("ping", {"type": "ping"})) == 0


def test_error_bodies_carry_the_request_id_when_given() -> None:
    assert error_body("not_found_error", "gone", request_id="req_1") == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "gone"},
        "request_id": "req_1",
    }


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (400, False),
        (401, False),
        (404, False),
        (408, True),
        (409, True),
        (413, False),
        (429, True),
        (500, True),
        (503, True),
        (529, True),
    ],
)
def test_should_retry_as_the_api_says(status: int, retry: bool) -> None:
    assert should_retry(status) is retry


def test_rate_limit_headers_are_the_recorded_twelve() -> None:
    now = datetime(2026, 2, 25, 20, 2, 37, 475893, tzinfo=UTC)
    headers = rate_limit_headers(unlimited(now))
    assert len(headers) == 12
    assert headers["anthropic-ratelimit-requests-limit"] == "4000"
    assert headers["anthropic-ratelimit-requests-remaining"] == "4000"
    assert headers["anthropic-ratelimit-tokens-reset"] == "2026-02-25T20:02:37Z"
    limits = {"requests": RateLimit(50, 49, now)}
    assert rate_limit_headers(limits) == {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-02-25T20:02:37Z",
    }


def test_redacted_thinking_shows_its_data_whole_when_thinking_is_enabled() -> None:
    from perfkit.simulation.server import RedactedThinkingBlock

    reply = Reply(RedactedThinkingBlock("EmwKAhgBEgy3va3pzix/LafPsn4a"), "Done.")
    assert [b.content["type"] for b in render(reply, body(), message_id="m").blocks] == ["text"]
    message = render(reply, thinking_body(), message_id="m")
    assert message.to_json()["content"][0] == {
        "type": "redacted_thinking",
        "data": "EmwKAhgBEgy3va3pzix/LafPsn4a",
    }
    assert message.output_tokens == 1  # its tokens are not known: only the text's count
    events = stream_events(message, plan_for(1))
    assert names(events)[:4] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_stop",
    ]
    # As the SDK's RedactedThinkingBlock: the whole data in content_block_start, no delta.
    assert events[1][1]["content_block"] == message.to_json()["content"][0]


def test_a_cache_control_marker_is_not_counted_as_prompt_tokens() -> None:
    """The API bills a prompt the same with or without ``cache_control`` breakpoints: a
    marker on a tool definition is not part of the tool's tokens."""
    tool = {"name": "lookup", "description": "Find an order.", "input_schema": {"type": "object"}}
    marked = {**tool, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    text = {"type": "text", "text": "Be brief and exact."}
    request = {
        "system": [text],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Where is it?"}]}],
        "tools": [tool],
    }
    everything_marked = {
        "system": [{**text, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Where is it?", "cache_control": {"type": "ephemeral"}}
                ],
            }
        ],
        "tools": [marked],
    }
    assert count_input_tokens(everything_marked) == count_input_tokens(request)
