"""End-to-end tests of the simulated Anthropic API, through the real anthropic SDK and httpx.

Every test runs on a VirtualClock: modeled latency costs no wall time and is exact.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import http.server
import itertools
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpcore
import httpcore2
import httpx
import httpx2
import pytest
from anthropic import _base_client
from anthropic.types import TextBlock as SDKTextBlock
from anthropic.types import ToolUseBlock as SDKToolUseBlock

from perfkit import SimulatorError, UnmatchedRequestError, VirtualClock
from perfkit.simulation import (
    AnthropicSimulator,
    Fault,
    LLMLatency,
    Replay,
    Reply,
    SimRequest,
    TextBlock,
    ToolUseBlock,
    Uniform,
    default_reply,
    is_loopback,
)

MODEL = "claude-simulated"
MESSAGES_URL = "https://api.anthropic.com/v1/messages"
STREAMED = LLMLatency(ttft=0.5, per_token=0.02)
# One TLS context for every client: building a fresh one costs ~25 ms per client.
TLS = ssl.create_default_context()


def sdk(**options: Any) -> anthropic.Anthropic:
    options.setdefault("http_client", anthropic.DefaultHttpxClient(verify=TLS))
    return anthropic.Anthropic(api_key="test", **options)


def async_sdk(**options: Any) -> anthropic.AsyncAnthropic:
    options.setdefault("http_client", anthropic.DefaultAsyncHttpxClient(verify=TLS))
    return anthropic.AsyncAnthropic(api_key="test", **options)


# The headers the real API requires of every request (the SDK sends them itself).
API_HEADERS = {"x-api-key": "test", "anthropic-version": "2023-06-01"}


def plain_client(**options: Any) -> httpx.Client:
    options.setdefault("headers", API_HEADERS)
    return httpx.Client(verify=TLS, **options)


def async_plain_client(**options: Any) -> httpx.AsyncClient:
    options.setdefault("headers", API_HEADERS)
    return httpx.AsyncClient(verify=TLS, **options)


def ask(question: str = "Hi", **extra: Any) -> dict[str, Any]:
    """The keyword arguments (and JSON body) of a minimal messages.create call."""
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": question}],
        **extra,
    }


def parse_sse(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in data.decode().split("\n\n"):
        if frame:
            name_line, data_line = frame.split("\n")
            events.append((name_line.removeprefix("event: "), json.loads(data_line[6:])))
    return events


def text_of(message: anthropic.types.Message) -> str:
    block = message.content[0]
    assert isinstance(block, SDKTextBlock)
    return block.text


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator(clock=clock) as simulator:
        yield simulator


@pytest.fixture
def loopback_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1, in a thread; yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"real server saw {self.path}".encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def unused_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- answering through the SDK -------------------------------------------------------------


def test_sync_create_returns_the_scripted_reply(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = 0.3
    sim.enqueue(Reply.text("Hello, simulated world!"))
    with anthropic.Anthropic(api_key="test") as client:
        start = clock.now()
        message = client.messages.create(**ask())
        elapsed = clock.elapsed(start)
    assert elapsed == 0.3
    assert text_of(message) == "Hello, simulated world!"
    assert message.id == "msg_sim_000000"
    assert message.model == MODEL
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (1, 3)


def test_async_create_returns_the_scripted_reply(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = 0.3
    sim.enqueue(Reply.text("Hello from async"))

    async def main() -> tuple[anthropic.types.Message, float]:
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            start = clock.now()
            message = await client.messages.create(**ask())
            return message, clock.elapsed(start)

    message, elapsed = clock.run(main())
    assert elapsed == 0.3
    assert text_of(message) == "Hello from async"
    assert message.usage.output_tokens == 3


def test_create_stream_true_yields_the_raw_events(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.enqueue(Reply.text("one two three"))

    async def main() -> list[Any]:
        async with async_sdk() as client:
            stream = await client.messages.create(**ask(), stream=True)
            return [event async for event in stream]

    events = clock.run(main())
    assert [event.type for event in events] == [  # the SDK drops the ping
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0].message.id == "msg_sim_000000"
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == (
        "one two three"
    )
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-2].usage.output_tokens == 3


def test_messages_stream_gives_the_final_message(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.enqueue(Reply.text("streamed reply text"))

    async def main() -> tuple[list[str], anthropic.types.Message]:
        async with async_sdk() as client, client.messages.stream(**ask()) as stream:
            texts = [text async for text in stream.text_stream]
            return texts, await stream.get_final_message()

    texts, message = clock.run(main())
    assert texts == ["streamed", " reply", " text"]
    assert text_of(message) == "streamed reply text"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 3


def test_sync_messages_stream_gives_the_final_message(sim: AnthropicSimulator) -> None:
    sim.enqueue(Reply.of_tokens(5))
    with sdk() as client, client.messages.stream(**ask()) as stream:
        message = stream.get_final_message()
    assert text_of(message) == "token token token token token"
    assert message.usage.output_tokens == 5


def test_max_tokens_and_stop_sequences_reach_the_sdk(sim: AnthropicSimulator) -> None:
    sim.enqueue(Reply.of_tokens(50), Reply.text("alpha beta END gamma"))
    with sdk() as client:
        cut = client.messages.create(**{**ask(), "max_tokens": 5})
        stopped = client.messages.create(**ask(), stop_sequences=["END"])
    assert (text_of(cut), cut.stop_reason, cut.usage.output_tokens) == (
        "token token token token token",
        "max_tokens",
        5,
    )
    assert (text_of(stopped), stopped.stop_reason, stopped.stop_sequence) == (
        "alpha beta ",
        "stop_sequence",
        "END",
    )


# --- tool use ------------------------------------------------------------------------------

TOOL_INPUT = {"city": "Paris", "days": 3, "units": ["C", "F"]}


def assert_tool_call(message: anthropic.types.Message) -> None:
    assert message.stop_reason == "tool_use"
    text, tool = message.content
    assert isinstance(text, SDKTextBlock)
    assert text.text == "Let me check."
    assert isinstance(tool, SDKToolUseBlock)
    assert (tool.name, tool.input, tool.id) == ("forecast", TOOL_INPUT, "toolu_sim_000000_1")


def test_tool_use_is_parsed_into_a_tool_use_block(sim: AnthropicSimulator) -> None:
    sim.enqueue(Reply.tool_use("forecast", TOOL_INPUT, text="Let me check."))
    with sdk() as client:
        assert_tool_call(client.messages.create(**ask()))


def test_streamed_tool_use_is_parsed_into_a_tool_use_block(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.enqueue(Reply.tool_use("forecast", TOOL_INPUT, text="Let me check."))

    async def main() -> anthropic.types.Message:
        async with (
            async_sdk() as client,
            client.messages.stream(**ask()) as stream,
        ):
            return await stream.get_final_message()

    assert_tool_call(clock.run(main()))


def test_raw_streamed_tool_input_rejoins_to_the_input(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.enqueue(Reply.tool_use("forecast", TOOL_INPUT))

    async def main() -> list[Any]:
        async with async_sdk() as client:
            stream = await client.messages.create(**ask(), stream=True)
            return [event async for event in stream]

    events = clock.run(main())
    start = next(event for event in events if event.type == "content_block_start")
    assert (start.content_block.type, start.content_block.name) == ("tool_use", "forecast")
    pieces = [
        event.delta.partial_json
        for event in events
        if event.type == "content_block_delta" and event.delta.type == "input_json_delta"
    ]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == TOOL_INPUT


# --- modeled time: the acceptance scenarios ------------------------------------------------


def test_three_sequential_calls_take_exactly_three_latencies(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = 0.3

    async def main() -> float:
        async with async_sdk() as client:
            start = clock.now()
            for question in ("one", "two", "three"):
                await client.messages.create(**ask(question))
            return clock.elapsed(start)

    wall = time.perf_counter()
    assert clock.run(main()) == 0.9
    assert time.perf_counter() - wall < 1.0
    assert [request.sent_at for request in sim.requests] == [0.0, 0.3, 0.6]


def test_three_concurrent_calls_take_exactly_one_latency(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = 0.3

    async def main() -> tuple[float, list[anthropic.types.Message]]:
        async with async_sdk() as client:
            start = clock.now()
            messages = await asyncio.gather(
                *(client.messages.create(**ask(q)) for q in ("one", "two", "three"))
            )
            return clock.elapsed(start), messages

    wall = time.perf_counter()
    elapsed, messages = clock.run(main())
    assert elapsed == 0.3
    assert time.perf_counter() - wall < 1.0
    assert sorted(text_of(m) for m in messages) == [
        "Simulated answer to: one",
        "Simulated answer to: three",
        "Simulated answer to: two",
    ]
    assert [request.duration for request in sim.requests] == [0.3, 0.3, 0.3]


def test_three_sequential_sync_calls_take_exactly_three_latencies(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = 0.3
    wall = time.perf_counter()
    with sdk() as client:
        start = clock.now()
        for question in ("one", "two", "three"):
            client.messages.create(**ask(question))
        assert clock.elapsed(start) == 0.9
    assert time.perf_counter() - wall < 1.0


def test_non_streamed_reply_arrives_after_the_whole_plan(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = LLMLatency(connect=0.1, ttft=0.5, per_token=0.02)
    sim.enqueue(Reply.of_tokens(100))
    with sdk() as client:
        start = clock.now()
        client.messages.create(**ask())
        assert clock.elapsed(start) == 2.58
    assert sim.last_request.duration == 2.58
    assert sim.last_request.ttft is None


def test_raw_stream_of_100_tokens_has_ttft_half_a_second_and_takes_2_48(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = STREAMED
    sim.enqueue(Reply.of_tokens(100))

    async def main() -> tuple[float | None, float, int]:
        async with async_sdk() as client:
            start = clock.now()
            first_token, deltas = None, 0
            stream = await client.messages.create(**ask(), stream=True)
            async for event in stream:
                if event.type == "content_block_delta":
                    deltas += 1
                    if first_token is None:
                        first_token = clock.elapsed(start)
            return first_token, clock.elapsed(start), deltas

    wall = time.perf_counter()
    assert clock.run(main()) == (0.5, 2.48, 100)
    assert time.perf_counter() - wall < 2.48  # the modeled stream was not really waited out
    logged = sim.last_request
    assert (logged.ttft, logged.duration, logged.output_tokens) == (0.5, 2.48, 100)
    assert logged.completed


def test_messages_stream_of_100_tokens_has_ttft_half_a_second_and_takes_2_48(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = STREAMED
    sim.enqueue(Reply.of_tokens(100))

    async def main() -> tuple[float | None, float, int]:
        async with async_sdk() as client:
            start = clock.now()
            first_token = None
            async with client.messages.stream(**ask()) as stream:
                async for event in stream:
                    if event.type == "content_block_delta" and first_token is None:
                        first_token = clock.elapsed(start)
                message = await stream.get_final_message()
            return first_token, clock.elapsed(start), message.usage.output_tokens

    assert clock.run(main()) == (0.5, 2.48, 100)


def test_sync_streams_of_100_tokens_have_the_same_timing(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = STREAMED
    sim.enqueue(Reply.of_tokens(100), Reply.of_tokens(100))
    wall = time.perf_counter()
    with sdk() as client:
        start = clock.now()
        first_token = None
        for event in client.messages.create(**ask(), stream=True):
            if event.type == "content_block_delta" and first_token is None:
                first_token = clock.elapsed(start)
        assert (first_token, clock.elapsed(start)) == (0.5, 2.48)

        start = clock.now()
        first_token = None
        with client.messages.stream(**ask()) as stream:
            for event in stream:
                if event.type == "content_block_delta" and first_token is None:
                    first_token = clock.elapsed(start)
        assert (first_token, clock.elapsed(start)) == (0.5, 2.48)
    assert time.perf_counter() - wall < 2 * 2.48  # the modeled streams were not waited out
    assert [(r.ttft, r.duration) for r in sim.requests] == [(0.5, 2.48), (0.5, 2.48)]


def test_connect_time_delays_the_first_token(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    sim.latency = LLMLatency(connect=0.25, ttft=0.5, per_token=0.02)
    sim.enqueue(Reply.of_tokens(10))
    with sdk() as client:
        start = clock.now()
        with client.messages.stream(**ask()) as stream:
            next(e for e in stream if e.type == "content_block_delta")
            assert clock.elapsed(start) == 0.75
            stream.until_done()
        assert clock.elapsed(start) == 0.93
    assert (sim.last_request.ttft, sim.last_request.duration) == (0.75, 0.93)


def test_a_reply_can_carry_its_own_latency(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    sim.latency = 0.3
    sim.enqueue(Reply.text("slow", latency=LLMLatency(ttft=2.0)), Reply.text("usual"))
    with sdk() as client:
        start = clock.now()
        client.messages.create(**ask())
        assert clock.elapsed(start) == 2.0
        client.messages.create(**ask())
        assert clock.elapsed(start) == 2.3


def test_each_call_draws_the_next_latency(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    sim.latency = Replay([0.1, 0.2, 0.4])
    with sdk() as client:
        for _ in range(3):
            client.messages.create(**ask())
    assert [r.duration for r in sim.requests] == [0.1, 0.2, 0.4]
    assert [r.sent_at for r in sim.requests] == [0.0, 0.1, 0.3]


# --- the request log -----------------------------------------------------------------------


def test_the_request_log_records_each_call(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    sim.latency = STREAMED
    scripted = Reply.of_tokens(10)
    sim.enqueue(Reply.text("a b c"), scripted)
    with sdk() as client:
        client.messages.create(**ask("first question"), system="Be brief.")
        with client.messages.stream(**ask("second")) as stream:
            stream.until_done()
    first, second = sim.requests
    assert sim.call_count == 2
    assert sim.last_request is second
    assert isinstance(first, SimRequest)
    assert (first.index, first.method, first.url) == (0, "POST", MESSAGES_URL)
    assert first.body == {**ask("first question"), "system": "Be brief."}
    assert first.headers["content-type"] == "application/json"
    assert first.headers["anthropic-version"]
    assert (first.stream, first.retry_count, first.status) == (False, 0, 200)
    assert (first.sent_at, first.ttft, first.duration) == (0.0, None, 0.54)
    assert (first.completed, first.output_tokens) == (True, 3)
    assert second.body["stream"] is True
    assert second.answer is scripted
    assert (second.sent_at, second.ttft, second.duration) == (0.54, 0.5, 0.68)
    assert (second.first_token_at, second.completed_at) == (1.04, 1.22)


def test_a_stream_closed_early_logs_only_the_tokens_delivered(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = STREAMED
    sim.enqueue(Reply.of_tokens(100))

    async def main() -> float:
        async with async_sdk() as client:
            start = clock.now()
            deltas = 0
            async with await client.messages.create(**ask(), stream=True) as stream:
                async for event in stream:
                    deltas += event.type == "content_block_delta"
                    if deltas == 5:
                        break
            return clock.elapsed(start)

    assert clock.run(main()) == 0.58
    logged = sim.last_request
    assert (logged.completed, logged.output_tokens) == (False, 5)
    assert (logged.ttft, logged.duration) == (0.5, 0.58)


def test_ttft_is_the_first_token_even_after_an_empty_block(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = LLMLatency(connect=0.1, ttft=0.5, per_token=0.02)
    sim.enqueue(Reply("", ToolUseBlock("lookup", {"id": 7})))
    with sdk() as client, client.messages.stream(**ask()) as stream:
        message = stream.get_final_message()
    assert message.content[0].type == "text"
    tool = message.content[1]
    assert isinstance(tool, SDKToolUseBlock)
    assert tool.input == {"id": 7}
    logged = sim.last_request
    assert (logged.ttft, logged.duration, logged.output_tokens) == (0.6, 0.62, 2)


def test_last_request_before_any_request_is_an_error(clock: VirtualClock) -> None:
    simulator = AnthropicSimulator(clock=clock)
    assert simulator.requests == []
    assert simulator.call_count == 0
    with pytest.raises(SimulatorError, match="no request yet"):
        _ = simulator.last_request


def test_the_request_log_is_a_copy(sim: AnthropicSimulator) -> None:
    with sdk() as client:
        client.messages.create(**ask())
    sim.requests.clear()
    assert sim.call_count == 1


def test_reset_forgets_scripts_and_the_log(sim: AnthropicSimulator) -> None:
    sim.enqueue(Reply.text("scripted"))
    sim.respond_with(Reply.text("fixed"))
    with sdk() as client:
        client.messages.create(**ask())
        sim.enqueue(Reply.text("never sent"))
        sim.reset()
        assert sim.call_count == 0
        message = client.messages.create(**ask("after reset"))
    assert text_of(message) == "Simulated answer to: after reset"
    assert sim.last_request.index == 0


# --- scripting answers ---------------------------------------------------------------------


def test_enqueued_answers_come_first_then_the_responder(sim: AnthropicSimulator) -> None:
    sim.enqueue(Reply.text("first"), Reply.text("second"))
    sim.respond_with(Reply.text("always"))
    with sdk() as client:
        texts = [text_of(client.messages.create(**ask())) for _ in range(4)]
        sim.enqueue(Reply.text("queued again"))
        texts.append(text_of(client.messages.create(**ask())))
    assert texts == ["first", "second", "always", "always", "queued again"]


def test_a_callable_responder_sees_the_request(sim: AnthropicSimulator) -> None:
    seen: list[SimRequest] = []

    def echo(request: SimRequest) -> Reply:
        seen.append(request)
        return Reply.text(f"you said {request.body['messages'][-1]['content']}")

    sim.respond_with(echo)
    with sdk() as client:
        assert text_of(client.messages.create(**ask("ping"))) == "you said ping"
        assert text_of(client.messages.create(**ask("pong"))) == "you said pong"
        sim.respond_with(None)
        assert text_of(client.messages.create(**ask("pong"))) == "Simulated answer to: pong"
    assert [request.index for request in seen] == [0, 1]


def test_a_responder_may_answer_with_a_fault(sim: AnthropicSimulator) -> None:
    sim.respond_with(lambda request: Fault.overloaded())
    with (
        sdk(max_retries=0) as client,
        pytest.raises(anthropic.OverloadedError),
    ):
        client.messages.create(**ask())


@pytest.mark.parametrize("bad", ["text", {"type": "text"}, 42])
def test_scripts_must_be_replies_or_faults(sim: AnthropicSimulator, bad: Any) -> None:
    with pytest.raises(TypeError, match="must be a Reply or a Fault"):
        sim.enqueue(Reply.text("ok"), bad)
    with pytest.raises(TypeError, match="must be a Reply or a Fault"):
        sim.respond_with(bad)
    with sdk() as client:  # nothing was half-enqueued
        assert text_of(client.messages.create(**ask("x"))) == "Simulated answer to: x"


def test_the_default_reply_is_deterministic_and_differs_per_question(
    sim: AnthropicSimulator,
) -> None:
    with sdk() as client:
        first = text_of(client.messages.create(**ask("What is the capital of France?")))
        again = text_of(client.messages.create(**ask("What is the capital of France?")))
        other = text_of(client.messages.create(**ask("How far is the Moon?")))
    assert first == again == "Simulated answer to: What is the capital of France?"
    assert other == "Simulated answer to: How far is the Moon?"


def test_default_reply_reads_the_last_user_turn() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "old question"},
            {"role": "assistant", "content": "old answer"},
            {"role": "user", "content": [{"type": "text", "text": "new"}, {"type": "image"}]},
        ]
    }
    assert default_reply(body).blocks == (TextBlock("Simulated answer to: new"),)
    assert default_reply({"messages": []}).blocks == (TextBlock("Simulated answer."),)
    long_question = " ".join(f"w{i}" for i in range(100))
    snippet = default_reply({"messages": [{"role": "user", "content": long_question}]})
    first_24_words = " ".join(f"w{i}" for i in range(24))
    assert snippet.blocks == (TextBlock(f"Simulated answer to: {first_24_words}"),)


# --- faults --------------------------------------------------------------------------------


def test_async_client_retries_a_429_after_its_retry_after(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = 0.3
    sim.enqueue(Fault.rate_limit(retry_after=1))

    async def main() -> tuple[anthropic.types.Message, float]:
        async with async_sdk() as client:
            start = clock.now()
            message = await client.messages.create(**ask())
            return message, clock.elapsed(start)

    message, elapsed = clock.run(main())
    assert text_of(message) == "Simulated answer to: Hi"
    assert elapsed == 1.3
    rejected, accepted = sim.requests
    assert round(accepted.sent_at - rejected.sent_at, 6) == 1.0
    assert (rejected.status, accepted.status) == (429, 200)
    assert (rejected.retry_count, accepted.retry_count) == (0, 1)
    assert isinstance(rejected.answer, Fault)


def test_sync_client_retries_a_429_on_the_virtual_clock(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.enqueue(Fault.rate_limit(retry_after=1), Fault.rate_limit(retry_after_ms=2500))
    wall = time.perf_counter()
    with sdk() as client:
        start = clock.now()
        client.messages.create(**ask())
        assert clock.elapsed(start) == 3.5
    assert time.perf_counter() - wall < 3.5  # time.sleep was not really called
    assert [r.sent_at for r in sim.requests] == [0.0, 1.0, 3.5]
    assert [r.status for r in sim.requests] == [429, 429, 200]
    assert [r.retry_count for r in sim.requests] == [0, 1, 2]


@pytest.mark.parametrize(
    "fault", [Fault.overloaded(), Fault.server_error(), Fault.server_error(503)], ids=str
)
def test_overloaded_and_server_errors_are_retried(
    sim: AnthropicSimulator, fault: Fault, clock: VirtualClock
) -> None:
    sim.enqueue(fault)
    with sdk() as client:
        message = client.messages.create(**ask())
    assert text_of(message) == "Simulated answer to: Hi"
    failed, succeeded = sim.requests
    assert (failed.status, succeeded.status) == (fault.status, 200)
    assert succeeded.retry_count == 1
    # No retry-after: the SDK backs off 0.5 s less up to 25% jitter.
    assert 0.375 <= succeeded.sent_at - failed.sent_at <= 0.5


def test_the_sdk_gives_up_after_its_retries(sim: AnthropicSimulator) -> None:
    sim.respond_with(Fault.rate_limit(retry_after=1))
    with sdk() as client, pytest.raises(anthropic.RateLimitError):
        client.messages.create(**ask())
    assert [r.retry_count for r in sim.requests] == [0, 1, 2]
    assert [r.sent_at for r in sim.requests] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.rate_limit(retry_after=1), anthropic.RateLimitError),
        (Fault.server_error(), anthropic.InternalServerError),
        (Fault.overloaded(), anthropic.OverloadedError),
        (Fault.http_error(400, "invalid_request_error"), anthropic.BadRequestError),
    ],
    ids=["429", "500", "529", "400"],
)
def test_without_retries_the_sdk_raises_the_status_error(
    sim: AnthropicSimulator, clock: VirtualClock, fault: Fault, error: type[Exception]
) -> None:
    sim.enqueue(fault)

    async def main() -> None:
        async with async_sdk(max_retries=0) as client:
            await client.messages.create(**ask())

    with pytest.raises(anthropic.APIStatusError) as caught:
        clock.run(main())
    assert type(caught.value) is error
    assert caught.value.status_code == fault.status
    assert caught.value.body == {
        "type": "error",
        "error": {"type": fault.error_type, "message": fault.message},
        "request_id": "req_sim_000000",
    }
    assert caught.value.request_id == "req_sim_000000"
    assert sim.call_count == 1


def test_a_529_is_an_api_status_error_529(sim: AnthropicSimulator) -> None:
    sim.enqueue(Fault.overloaded())
    with (
        sdk(max_retries=0) as client,
        pytest.raises(anthropic.InternalServerError) as caught,
    ):
        client.messages.create(**ask())
    assert isinstance(caught.value, anthropic.APIStatusError)
    assert caught.value.status_code == 529


def test_a_connection_error_is_an_api_connection_error(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = LLMLatency(connect=0.25, ttft=1.0)
    sim.enqueue(Fault.connection_error())

    async def main() -> float:
        async with async_sdk(max_retries=0) as client:
            start = clock.now()
            with pytest.raises(anthropic.APIConnectionError) as caught:
                await client.messages.create(**ask())
            assert type(caught.value) is anthropic.APIConnectionError  # not a timeout
            return clock.elapsed(start)

    assert clock.run(main()) == 0.25
    assert sim.last_request.status is None
    assert sim.last_request.completed is False


def test_a_connection_error_is_retried_by_default(sim: AnthropicSimulator) -> None:
    sim.enqueue(Fault.connection_error())
    with sdk() as client:
        assert text_of(client.messages.create(**ask())) == "Simulated answer to: Hi"
    assert [r.retry_count for r in sim.requests] == [0, 1]


def test_a_timeout_fires_after_the_client_timeout_in_modeled_time(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.enqueue(Fault.timeout())

    async def main() -> float:
        async with async_sdk(timeout=5, max_retries=0) as client:
            start = clock.now()
            with pytest.raises(anthropic.APITimeoutError):
                await client.messages.create(**ask())
            return clock.elapsed(start)

    wall = time.perf_counter()
    assert clock.run(main()) == 5.0
    assert time.perf_counter() - wall < 5.0  # the timeout was not really waited out


def test_a_sync_timeout_and_an_explicit_one(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    sim.enqueue(Fault.timeout(), Fault.timeout(after=2))
    with sdk(timeout=3, max_retries=0) as client:
        start = clock.now()
        with pytest.raises(anthropic.APITimeoutError):
            client.messages.create(**ask())
        assert clock.elapsed(start) == 3.0
        with pytest.raises(anthropic.APITimeoutError):
            client.messages.create(**ask())
        assert clock.elapsed(start) == 5.0


def test_a_timeout_without_a_client_timeout_uses_the_sdk_default(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.enqueue(Fault.timeout())
    with sdk(max_retries=0) as client:
        start = clock.now()
        with pytest.raises(anthropic.APITimeoutError):
            client.messages.create(**ask())
        assert clock.elapsed(start) == 600.0


def test_a_stream_error_is_raised_while_iterating_after_n_tokens(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = STREAMED
    sim.enqueue(Fault.stream_error(after_tokens=3, reply=Reply.of_tokens(10)))

    async def collect_text(stream: Any, received: list[str]) -> None:
        async for event in stream:
            if event.type == "content_block_delta":
                received.append(event.delta.text)

    async def main() -> tuple[list[str], float, BaseException]:
        received: list[str] = []
        async with async_sdk(max_retries=0) as client:
            start = clock.now()
            stream = await client.messages.create(**ask(), stream=True)
            with pytest.raises(anthropic.APIStatusError) as caught:
                await collect_text(stream, received)
            return received, clock.elapsed(start), caught.value

    received, elapsed, error = clock.run(main())
    assert received == ["token", " token", " token"]
    assert elapsed == 0.56  # ttft 0.5, two gaps to tokens 2 and 3, one more to the error
    # The SDK turns an `error` event into the status error of the (200) response.
    assert type(error) is anthropic.APIStatusError
    assert error.status_code == 200
    assert error.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    logged = sim.last_request
    assert (logged.status, logged.output_tokens, logged.ttft, logged.duration) == (
        200,
        3,
        0.5,
        0.56,
    )


def test_a_stream_error_through_messages_stream_and_the_sync_client(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = STREAMED
    sim.enqueue(Fault.stream_error(after_tokens=2, error_type="api_error", message="boom"))
    texts: list[str] = []
    with sdk(max_retries=0) as client:
        start = clock.now()
        with (
            pytest.raises(anthropic.APIStatusError, match="boom") as caught,
            client.messages.stream(**ask("tell me more")) as stream,
        ):
            texts.extend(stream.text_stream)
        assert clock.elapsed(start) == 0.54
    assert texts == ["Simulated", " answer"]
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_a_stream_error_before_any_token_has_no_ttft(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = STREAMED
    sim.enqueue(Fault.stream_error())
    with sdk(max_retries=0) as client, pytest.raises(anthropic.APIStatusError):
        for _ in client.messages.create(**ask(), stream=True):
            pass
    logged = sim.last_request
    assert (logged.ttft, logged.output_tokens, logged.duration) == (None, 0, 0.5)


def test_a_stream_error_on_a_non_streamed_call_is_an_error_status(
    sim: AnthropicSimulator,
) -> None:
    sim.enqueue(Fault.stream_error(), Fault.stream_error(error_type="api_error"))
    with sdk(max_retries=0) as client:
        with pytest.raises(anthropic.OverloadedError):
            client.messages.create(**ask())
        with pytest.raises(anthropic.InternalServerError) as caught:
            client.messages.create(**ask())
    assert caught.value.status_code == 500
    assert [r.status for r in sim.requests] == [529, 500]


# --- plain httpx ---------------------------------------------------------------------------


def test_plain_httpx_gets_the_api_json(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    sim.latency = 0.3
    sim.enqueue(Reply.text("Plain reply"))
    with plain_client() as client:
        start = clock.now()
        response = client.post(MESSAGES_URL, json=ask())
        assert clock.elapsed(start) == 0.3
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"] == "req_sim_000000"
    assert response.json() == {
        "id": "msg_sim_000000",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Plain reply"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 2,
            "service_tier": "standard",
            "inference_geo": "not_available",
        },
    }


def test_plain_async_httpx_gets_the_api_json(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    sim.latency = 0.3

    async def main() -> tuple[httpx.Response, float]:
        async with async_plain_client() as client:
            start = clock.now()
            response = await client.post(MESSAGES_URL, json=ask("async"))
            return response, clock.elapsed(start)

    response, elapsed = clock.run(main())
    assert (response.status_code, elapsed) == (200, 0.3)
    assert response.json()["content"][0]["text"] == "Simulated answer to: async"


def test_plain_httpx_streaming_gets_sse_on_schedule(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = STREAMED
    sim.enqueue(Reply.of_tokens(3))
    with plain_client() as client:
        start = clock.now()
        with client.stream("POST", MESSAGES_URL, json=ask(stream=True)) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            arrivals = []
            data = b""
            for chunk in response.iter_bytes():
                arrivals.append(clock.elapsed(start))
                data += chunk
    events = parse_sse(data)
    assert [name for name, _ in events] == [
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
    assert arrivals[0] == 0.0
    assert 0.5 in arrivals
    assert arrivals[-1] == 0.54
    assert sim.last_request.ttft == 0.5


def test_plain_async_httpx_streaming_gets_sse_on_schedule(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.latency = STREAMED
    sim.enqueue(Reply.of_tokens(3))

    async def main() -> tuple[list[str], float]:
        async with async_plain_client() as client:
            start = clock.now()
            async with client.stream("POST", MESSAGES_URL, json=ask(stream=True)) as response:
                lines = [line async for line in response.aiter_lines() if line]
            return lines, clock.elapsed(start)

    lines, elapsed = clock.run(main())
    assert elapsed == 0.54
    assert lines[0] == "event: message_start"
    assert lines[-2:] == ["event: message_stop", 'data: {"type":"message_stop"}']


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": MODEL, "messages": []}, "max_tokens: Field required"),
        ({"max_tokens": 10, "messages": []}, "model: Field required"),
        ({"model": MODEL, "max_tokens": 10}, "messages: Field required"),
        ({**ask(), "max_tokens": -1}, "max_tokens: Input should be greater than or equal to 0"),
        ({**ask(), "messages": "Hi"}, "messages: Input should be a valid list"),
    ],
)
def test_an_invalid_body_is_a_400(
    sim: AnthropicSimulator, body: dict[str, Any], message: str
) -> None:
    with plain_client() as client:
        response = client.post(MESSAGES_URL, json=body)
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}
    assert (sim.last_request.status, sim.last_request.answer) == (400, None)


@pytest.mark.parametrize(
    ("content", "message"), [(b"{not json", "invalid JSON body"), (b"[1, 2]", "JSON object")]
)
def test_a_body_that_is_not_a_json_object_is_a_400(
    sim: AnthropicSimulator, content: bytes, message: str
) -> None:
    with plain_client() as client:
        response = client.post(MESSAGES_URL, content=content)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert message in response.json()["error"]["message"]
    assert sim.call_count == 1  # logged like any request the API refuses
    assert (sim.last_request.status, sim.last_request.body) == (400, {})


def test_plain_httpx_sees_a_connection_error_and_a_read_timeout(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    sim.enqueue(Fault.connection_error(), Fault.timeout())
    with plain_client(timeout=7) as client:
        with pytest.raises(httpx.ConnectError, match="simulated connection failure"):
            client.post(MESSAGES_URL, json=ask())
        start = clock.now()
        with pytest.raises(httpx.ReadTimeout):
            client.post(MESSAGES_URL, json=ask())
        assert clock.elapsed(start) == 7.0


# --- routing -------------------------------------------------------------------------------


def test_an_unmatched_request_fails_listing_the_routes(sim: AnthropicSimulator) -> None:
    with plain_client() as client, pytest.raises(UnmatchedRequestError) as caught:
        client.get("https://example.com/")
    message = str(caught.value)
    assert "no route for GET https://example.com/" in message
    assert "api.anthropic.com" in message
    assert "/v1/messages" in message
    assert isinstance(caught.value, AssertionError)  # it fails the test that made it
    assert sim.pop_failures() == [caught.value]


def test_an_unmatched_async_request_fails_too(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    async def main() -> None:
        async with async_plain_client() as client:
            await client.get("https://example.com/")

    with pytest.raises(
        UnmatchedRequestError, match=re.escape("no route for GET https://example.com/")
    ):
        clock.run(main())
    assert [type(failure) for failure in sim.pop_failures()] == [UnmatchedRequestError]


def test_the_sdk_wraps_an_unmatched_request(sim: AnthropicSimulator) -> None:
    with (
        sdk(base_url="https://elsewhere.example", max_retries=0) as client,
        pytest.raises(anthropic.APIConnectionError) as caught,
    ):
        client.messages.create(**ask())
    cause = caught.value.__cause__
    assert isinstance(cause, UnmatchedRequestError)
    assert "no route for POST https://elsewhere.example/v1/messages" in str(cause)
    assert sim.call_count == 0
    assert sim.pop_failures() == [cause]


def test_stop_raises_an_unmatched_request_the_sdk_hid(clock: VirtualClock) -> None:
    simulator = AnthropicSimulator(clock=clock).start()
    # The SDK retries twice, then wraps the error.
    with (
        sdk(base_url="https://elsewhere.example") as client,
        pytest.raises(anthropic.APIConnectionError),
    ):
        client.messages.create(**ask())
    with pytest.raises(UnmatchedRequestError, match=r"elsewhere\.example") as caught:
        simulator.stop()
    assert caught.value.__notes__ == ["(2 more failures while the simulator was active)"]
    assert not simulator.active


def test_stop_raises_an_error_in_a_responder_the_sdk_hid(clock: VirtualClock) -> None:
    def broken(request: SimRequest) -> Reply:
        raise KeyError("a bug in the responder")

    simulator = AnthropicSimulator(clock=clock)
    simulator.respond_with(broken)
    with (
        pytest.raises(KeyError, match="a bug in the responder"),
        simulator,
        sdk(max_retries=0) as client,
        pytest.raises(anthropic.APIConnectionError),
    ):
        client.messages.create(**ask())


def test_stop_check_false_and_an_exception_in_flight_keep_failures_quiet(
    clock: VirtualClock,
) -> None:
    simulator = AnthropicSimulator(clock=clock).start()
    with plain_client() as client, pytest.raises(UnmatchedRequestError):
        client.get("https://example.com/")
    simulator.stop(check=False)

    with (  # noqa: PT012
        pytest.raises(RuntimeError, match="the test's own error"),
        AnthropicSimulator(clock=clock),
        plain_client() as client,
    ):
        with pytest.raises(UnmatchedRequestError):
            client.get("https://example.com/")
        raise RuntimeError("the test's own error")


def test_a_custom_base_url(clock: VirtualClock) -> None:
    with AnthropicSimulator(clock=clock, base_url="https://llm.internal.test:8443/") as sim:
        assert sim.base_url == "https://llm.internal.test:8443"
        with sdk(base_url="https://llm.internal.test:8443", max_retries=0) as client:
            assert text_of(client.messages.create(**ask("q"))) == "Simulated answer to: q"
            default = client.with_options(base_url="https://api.anthropic.com")
            with pytest.raises(anthropic.APIConnectionError):
                default.messages.create(**ask())  # not served by this simulator
        assert len(sim.pop_failures()) == 1
    assert sim.last_request.url == "https://llm.internal.test:8443/v1/messages"
    assert sim.call_count == 1


@pytest.mark.parametrize("base_url", ["ftp://api.example", "not a url", "https://"])
def test_an_invalid_base_url_is_rejected(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url must be an http"):
        AnthropicSimulator(base_url=base_url)


def test_user_routes_on_the_router_are_served(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    weather = sim.router.get("https://tools.example/weather").respond(json={"temp_c": 21})

    async def fetch_async() -> Any:
        async with async_plain_client() as client:
            return (await client.get("https://tools.example/weather")).json()

    with plain_client() as client:
        assert client.get("https://tools.example/weather").json() == {"temp_c": 21}
    assert clock.run(fetch_async()) == {"temp_c": 21}
    assert weather.call_count == 2
    assert sim.call_count == 0  # the log is for the messages API


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("example.com", False),
        ("10.0.0.1", False),
        ("::2", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_user_routes_on_ipv6_and_odd_ports_are_matched(sim: AnthropicSimulator) -> None:
    route = sim.router.get("http://[::1]:9/probe").respond(text="v6")
    with plain_client() as client:
        assert client.get("http://[::1]:9/probe").text == "v6"
    assert route.called


def test_loopback_requests_reach_a_real_server(
    sim: AnthropicSimulator, loopback_server: str
) -> None:
    with plain_client() as client:
        response = client.get(f"{loopback_server}/health")
    assert response.text == "real server saw /health"

    async def fetch() -> str:
        async with async_plain_client() as client:
            return (await client.get(f"{loopback_server}/async")).text

    assert asyncio.run(fetch()) == "real server saw /async"
    assert sim.call_count == 0


def test_clients_created_before_the_simulator_are_intercepted(clock: VirtualClock) -> None:
    sync_client = anthropic.Anthropic(api_key="test")
    async_client = anthropic.AsyncAnthropic(api_key="test")
    plain = httpx.Client(headers=API_HEADERS)
    try:
        with AnthropicSimulator(clock=clock, latency=0.3) as sim:
            assert (
                text_of(sync_client.messages.create(**ask("sync"))) == "Simulated answer to: sync"
            )
            assert plain.post(MESSAGES_URL, json=ask()).status_code == 200

            async def main() -> str:
                return text_of(await async_client.messages.create(**ask("async")))

            assert clock.run(main()) == "Simulated answer to: async"
        assert sim.call_count == 3
        assert clock.now() == 0.9
    finally:
        sync_client.close()
        plain.close()
        clock.run(async_client.close())


def test_after_stop_nothing_is_patched(clock: VirtualClock) -> None:
    originals = [
        httpcore.ConnectionPool.handle_request,
        httpcore.AsyncConnectionPool.handle_async_request,
        httpcore2.ConnectionPool.handle_request,
        httpcore2.AsyncConnectionPool.handle_async_request,
    ]
    original_time = _base_client.time
    simulator = AnthropicSimulator(clock=clock)
    with simulator:
        assert simulator.active
        assert httpcore.ConnectionPool.handle_request is not originals[0]
        assert httpcore2.AsyncConnectionPool.handle_async_request is not originals[3]
        assert _base_client.time is not original_time
    assert not simulator.active
    assert [
        httpcore.ConnectionPool.handle_request,
        httpcore.AsyncConnectionPool.handle_async_request,
        httpcore2.ConnectionPool.handle_request,
        httpcore2.AsyncConnectionPool.handle_async_request,
    ] == originals
    assert _base_client.time is time
    port = unused_loopback_port()
    with plain_client() as client, pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/")


def test_a_real_clock_leaves_the_sdk_sleep_alone() -> None:
    with AnthropicSimulator():
        assert _base_client.time is time


def test_a_simulator_cannot_start_twice_but_can_restart(clock: VirtualClock) -> None:
    simulator = AnthropicSimulator(clock=clock)
    with simulator, pytest.raises(SimulatorError, match="already active"):
        simulator.start()
    simulator.stop()  # stopping a stopped simulator does nothing
    with simulator, plain_client() as client:
        assert client.post(MESSAGES_URL, json=ask()).status_code == 200
    assert simulator.call_count == 1


def test_two_active_simulators_each_serve_their_base_url(clock: VirtualClock) -> None:
    outer = AnthropicSimulator(clock=clock, base_url="https://outer.test")
    inner = AnthropicSimulator(clock=clock, base_url="https://inner.test")
    with outer, plain_client() as client:
        with inner:
            client.post("https://inner.test/v1/messages", json=ask())
            client.post("https://outer.test/v1/messages", json=ask())
        client.post("https://outer.test/v1/messages", json=ask())
        with pytest.raises(UnmatchedRequestError):
            client.post("https://inner.test/v1/messages", json=ask())
        assert len(outer.pop_failures()) == 1
    assert (outer.call_count, inner.call_count) == (2, 1)


def test_repr_shows_the_configuration(clock: VirtualClock) -> None:
    text = repr(AnthropicSimulator(clock=clock, latency=0.3))
    assert text.startswith("AnthropicSimulator(base_url='https://api.anthropic.com', ")
    assert "ttft=Fixed(0.3)" in text
    assert text.endswith("requests=0)")


# -- determinism of retries and injected faults ------------------------------------------


def _overloaded_then_ok_timeline(seed: int) -> list[float]:
    clock = VirtualClock()
    with AnthropicSimulator(clock=clock, seed=seed) as simulator:
        simulator.enqueue(Fault.overloaded(), Fault.overloaded())

        async def call() -> None:
            async with async_sdk() as client:
                await client.messages.create(**ask())

        clock.run(call())
        return [request.sent_at for request in simulator.requests]


def test_sdk_backoff_jitter_is_seeded_so_modeled_retries_repeat_exactly() -> None:
    first, again = _overloaded_then_ok_timeline(7), _overloaded_then_ok_timeline(7)
    assert first == again
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(first)]
    # The SDK backs off 0.5 s then 1 s, each less up to 25% jitter.
    assert 0.375 <= gaps[0] <= 0.5
    assert 0.75 <= gaps[1] <= 1.0
    assert _overloaded_then_ok_timeline(8) != first


def test_injected_faults_hit_a_seeded_share_of_requests(clock: VirtualClock) -> None:
    def statuses(seed: int) -> list[int | None]:
        with AnthropicSimulator(clock=clock, seed=seed) as simulator:
            simulator.inject(Fault.overloaded(), rate=0.25)
            with plain_client() as client:
                for _ in range(200):
                    client.post(MESSAGES_URL, json=ask())
            return [request.status for request in simulator.requests]

    first = statuses(3)
    assert first == statuses(3)
    assert set(first) == {200, 529}
    assert 30 <= first.count(529) <= 70  # 25% of 200, within a wide binomial margin
    assert first != statuses(4)


def test_queued_answers_come_before_injected_faults(sim: AnthropicSimulator) -> None:
    sim.inject(Fault.overloaded(), rate=1.0)
    sim.enqueue(Reply.text("scripted"))
    with plain_client() as client:
        first = client.post(MESSAGES_URL, json=ask())
        second = client.post(MESSAGES_URL, json=ask())
    assert first.json()["content"][0]["text"] == "scripted"
    assert second.status_code == 529


def test_reset_forgets_injected_faults(sim: AnthropicSimulator) -> None:
    sim.inject(Fault.server_error(), rate=1.0)
    sim.reset()
    with plain_client() as client:
        assert client.post(MESSAGES_URL, json=ask()).status_code == 200


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_inject_rejects_a_rate_outside_0_to_1(sim: AnthropicSimulator, rate: Any) -> None:
    with pytest.raises(ValueError, match=r"rate must be a number between 0 and 1, got"):
        sim.inject(Fault.overloaded(), rate=rate)


def test_inject_takes_only_faults(sim: AnthropicSimulator) -> None:
    with pytest.raises(TypeError, match="inject takes a Fault"):
        sim.inject(Reply.text("not a fault"), rate=0.5)  # type: ignore[arg-type]


def test_seed_must_be_an_int() -> None:
    with pytest.raises(TypeError, match="seed must be an int, got '1'"):
        AnthropicSimulator(seed="1")  # type: ignore[arg-type]


# -- microsecond-exact plans, and latency draws on fault paths -----------------------------


def _stream_1000_tokens(latency: LLMLatency, *, asynchronous: bool) -> float:
    clock = VirtualClock()
    with AnthropicSimulator(clock=clock, latency=latency) as simulator:
        simulator.respond_with(Reply.of_tokens(1000))

        async def streamed() -> float:
            async with async_sdk() as client:
                start = clock.now()
                async with client.messages.stream(**ask(max_tokens=5000)) as stream:
                    await stream.get_final_message()
                return clock.elapsed(start)

        if asynchronous:
            return clock.run(streamed())
        with sdk() as client:
            start = clock.now()
            with client.messages.stream(**ask(max_tokens=5000)) as stream:
                stream.get_final_message()
            return clock.elapsed(start)


def test_sync_async_and_the_plan_agree_to_the_microsecond_on_random_gaps() -> None:
    def latency() -> LLMLatency:
        return LLMLatency(ttft=0.5, per_token=Uniform(0.01, 0.03, seed=3))

    expected = latency().total(1000)
    assert _stream_1000_tokens(latency(), asynchronous=False) == expected
    assert _stream_1000_tokens(latency(), asynchronous=True) == expected


def test_a_stream_error_draws_connect_once_and_honours_the_reply_latency(
    clock: VirtualClock,
) -> None:
    latency = LLMLatency(connect=Replay([0.1, 0.2, 0.3]), ttft=0.5)
    with AnthropicSimulator(clock=clock, latency=latency) as simulator:
        slow = Reply.of_tokens(10, latency=LLMLatency(ttft=5.0))
        simulator.enqueue(Fault.stream_error(after_tokens=2, reply=slow))
        with sdk(max_retries=0) as client:
            with pytest.raises(anthropic.APIStatusError), client.messages.stream(**ask()) as stream:
                stream.get_final_message()
            client.messages.create(**ask())
        failed, ok = simulator.requests
    assert failed.ttft == 5.0  # the reply's own latency, connect 0
    assert ok.duration == 0.1 + 0.5  # the first connect draw was not consumed by the fault


# --- connections: a modeled handshake per new connection of a client's pool -------------


def handshaking_sim(clock: VirtualClock, **options: Any) -> AnthropicSimulator:
    return AnthropicSimulator(clock=clock, latency=0.5, handshake=0.15, **options)


def test_a_client_pays_the_handshake_once_and_reuses_its_connection(clock: VirtualClock) -> None:
    async def main() -> list[float]:
        durations = []
        async with async_sdk() as client:
            for _ in range(3):
                start = clock.now()
                await client.messages.create(**ask())
                durations.append(clock.elapsed(start))
        return durations

    with handshaking_sim(clock) as sim:
        assert clock.run(main()) == [0.65, 0.5, 0.5]
    assert sim.connections_opened == 1
    assert [r.handshake for r in sim.requests] == [0.15, 0.0, 0.0]
    assert [r.sent_at for r in sim.requests] == [0.15, 0.65, 1.15]


def test_a_new_client_per_request_pays_the_handshake_every_time(clock: VirtualClock) -> None:
    def call() -> None:
        with sdk() as client:
            client.messages.create(**ask())

    with handshaking_sim(clock) as sim:
        start = clock.now()
        for _ in range(3):
            call()
        assert clock.elapsed(start) == 1.95
    assert sim.connections_opened == 3


def test_concurrent_requests_open_one_connection_each_then_reuse_them(
    clock: VirtualClock,
) -> None:
    async def main() -> int:
        async with async_sdk() as client:
            for _ in range(2):
                await asyncio.gather(*(client.messages.create(**ask()) for _ in range(3)))
            return sim.open_connections

    with handshaking_sim(clock) as sim:
        assert clock.run(main()) == 3
        gc.collect()
        assert sim.open_connections == 0  # the closed client's pool is gone
    assert sim.connections_opened == 3
    assert [r.handshake for r in sim.requests] == [0.15] * 3 + [0.0] * 3


def test_a_closed_clients_idle_connections_are_closed_with_it(clock: VirtualClock) -> None:
    # A closed pool keeps no connection: the gauge must not wait for the client object to
    # be collected, nor for the keep-alive expiry (a naive agent closes a client a chat).
    async def main() -> list[int]:
        client = async_sdk()
        await asyncio.gather(*(client.messages.create(**ask()) for _ in range(3)))
        counts = [sim.open_connections]
        await client.close()
        counts.append(sim.open_connections)
        async with httpx.AsyncClient(verify=TLS) as plain:
            await plain.post("https://api.anthropic.com/v1/messages", json=ask())
            counts.append(sim.open_connections)
        counts.append(sim.open_connections)
        del client
        return counts

    with handshaking_sim(clock) as sim:
        assert clock.run(main()) == [3, 0, 1, 0]
        with httpx.Client(verify=TLS) as plain:  # a sync pool too
            plain.post("https://api.anthropic.com/v1/messages", json=ask())
            assert sim.open_connections == 1
        assert sim.open_connections == 0


def test_a_finished_stream_leaves_its_connection_idle(clock: VirtualClock) -> None:
    async def main() -> None:
        async with async_sdk() as client:
            async with await client.messages.create(**ask(), stream=True) as stream:
                async for _ in stream:
                    pass
            await client.messages.create(**ask())

    with handshaking_sim(clock) as sim:
        clock.run(main())
    assert sim.connections_opened == 1


def test_an_abandoned_stream_or_a_failed_connection_is_not_reused(clock: VirtualClock) -> None:
    async def main() -> None:
        async with async_sdk(max_retries=0) as client:
            async with await client.messages.create(**ask(), stream=True) as stream:
                async for _ in stream:
                    break
            with pytest.raises(anthropic.APIConnectionError):
                await client.messages.create(**ask())
            await client.messages.create(**ask())

    with handshaking_sim(clock) as sim:
        sim.enqueue(Reply.of_tokens(50), Fault.connection_error())
        clock.run(main())
        gc.collect()
        assert sim.open_connections == 0
    assert sim.connections_opened == 3
    assert [r.handshake for r in sim.requests] == [0.15, 0.15, 0.15]


def test_an_error_status_keeps_the_connection(clock: VirtualClock) -> None:
    async def main() -> None:
        async with async_sdk(max_retries=0) as client:
            with pytest.raises(anthropic.RateLimitError):
                await client.messages.create(**ask())
            await client.messages.create(**ask())

    with handshaking_sim(clock) as sim:
        sim.enqueue(Fault.rate_limit())
        clock.run(main())
    assert sim.connections_opened == 1


def test_without_a_handshake_connections_are_still_counted(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    async def main() -> None:
        async with async_sdk() as client:
            await client.messages.create(**ask())
            await client.messages.create(**ask())

    clock.run(main())
    assert sim.connections_opened == 1
    assert [r.handshake for r in sim.requests] == [0.0, 0.0]


def keepalive_sdk(keepalive: int) -> anthropic.AsyncAnthropic:
    limits = httpx2.Limits(max_connections=1_000, max_keepalive_connections=keepalive)
    return async_sdk(http_client=anthropic.DefaultAsyncHttpxClient(verify=TLS, limits=limits))


def test_idle_connections_beyond_the_pools_keepalive_limit_are_closed(
    clock: VirtualClock,
) -> None:
    async def main() -> tuple[int, int]:
        async with keepalive_sdk(keepalive=5) as client:
            await asyncio.gather(*(client.messages.create(**ask()) for _ in range(12)))
            idle = sim.open_connections
            await asyncio.gather(*(client.messages.create(**ask()) for _ in range(12)))
            return idle, sim.open_connections

    with handshaking_sim(clock) as sim:
        assert clock.run(main()) == (5, 5)
    assert sim.connections_opened == 12 + 7  # the second burst reused the 5 kept


def test_an_idle_connection_closes_after_the_pools_keepalive_expiry(clock: VirtualClock) -> None:
    async def main() -> list[int]:
        async with async_sdk() as client:  # the SDK's pool: idle connections live 5 s
            await asyncio.gather(*(client.messages.create(**ask()) for _ in range(3)))
            counts = [sim.open_connections]
            await asyncio.sleep(4.9)
            counts.append(sim.open_connections)
            await client.messages.create(**ask())  # reuses one, idle again from now
            await asyncio.sleep(0.2)
            counts.append(sim.open_connections)
            await asyncio.sleep(5.0)
            counts.append(sim.open_connections)
            await client.messages.create(**ask())  # all closed: a new connection
            return counts

    with handshaking_sim(clock) as sim:
        assert clock.run(main()) == [3, 3, 1, 0]
    assert sim.connections_opened == 4
    assert [r.handshake for r in sim.requests][-2:] == [0.0, 0.15]


@pytest.mark.parametrize("bad", [-0.1, "fast", True])
def test_a_bad_handshake_is_refused(clock: VirtualClock, bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="handshake"):
        AnthropicSimulator(clock=clock, handshake=bad)


def test_a_new_async_client_makes_no_worker_thread_hop_under_virtual_time(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    # Each new async client's first request looks up the platform in a worker thread,
    # which finishes in real time while other tasks' virtual timers may fire: modeled
    # times then differed from run to run (seen in the combined benchmark).
    submitted: list[Any] = []

    class Spy(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted.append(fn)
            return super().submit(fn, *args, **kwargs)

    async def main() -> float:
        asyncio.get_running_loop().set_default_executor(Spy(max_workers=1))
        async with async_sdk() as client:
            start = clock.now()
            await client.messages.create(**ask())
            return clock.elapsed(start)

    sim.latency = 0.5
    assert clock.run(main()) == 0.5
    assert submitted == []


def test_a_request_cancelled_while_waiting_closes_its_connection(clock: VirtualClock) -> None:
    async def main() -> int:
        async with async_sdk() as client:
            for stream in (False, True):
                call = asyncio.ensure_future(client.messages.create(**ask(), stream=stream))
                await asyncio.sleep(0.1)  # inside the modeled handshake
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
            return sim.open_connections

    with handshaking_sim(clock) as sim:
        assert clock.run(main()) == 0
    assert sim.connections_opened == 2


def test_a_failing_responder_does_not_leave_a_connection_counted(clock: VirtualClock) -> None:
    def broken(request: SimRequest) -> Reply:
        raise RuntimeError("responder bug")

    async def main() -> None:
        async with async_sdk(max_retries=0) as client:
            with pytest.raises(anthropic.APIConnectionError):
                await client.messages.create(**ask())

    with handshaking_sim(clock) as sim:
        sim.respond_with(broken)
        clock.run(main())
        assert sim.open_connections == 0
        assert [str(e) for e in sim.pop_failures()] == ["responder bug"]


def test_another_path_on_a_loopback_base_urls_host_never_reaches_the_network() -> None:
    """A simulator on a loopback base_url owns that host and port: a client whose base_url
    adds a path prefix gets an unmatched request, not whatever listens there."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        served = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with AnthropicSimulator(clock=VirtualClock(), base_url=served) as sim:
            with (
                anthropic.Anthropic(
                    api_key="k", base_url=f"{served}/prefix", max_retries=0
                ) as client,
                pytest.raises(anthropic.APIConnectionError),
            ):
                client.messages.create(
                    model="m", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
                )
            [failure] = sim.pop_failures()
            assert isinstance(failure, UnmatchedRequestError)
            assert "AnthropicSimulator owns 127.0.0.1" in str(failure)
            with anthropic.Anthropic(api_key="k", base_url=served) as client:
                reply = client.messages.create(
                    model="m", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
                )
            assert reply.content
