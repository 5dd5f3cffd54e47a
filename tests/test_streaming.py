"""Stream metrics through the real SDK's parsing, and the SSE relay."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx
import pytest
from loopback_asgi import running_uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from perfkit import AnthropicSimulator, LLMLatency, RealClock, Reply, VirtualClock
from perfkit.pooling import SharedAsyncClient, async_anthropic_client
from perfkit.streaming import StreamMetrics, ameasure, measure, relay_sse

LATENCY = LLMLatency(ttft=0.5, per_token=0.02)
REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-5",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Write me a story"}],
}


def assert_modeled(metrics: StreamMetrics, *, ttft: float = 0.5) -> None:
    assert metrics.ttft == ttft
    assert metrics.end_to_end == round(ttft + 99 * 0.02, 6)
    assert metrics.output_tokens == 100
    assert metrics.gaps == (0.02,) * 99
    assert metrics.tpot == 0.02
    assert metrics.tokens_per_second == pytest.approx(100 / metrics.end_to_end)


def test_async_raw_stream_metrics_equal_the_model_exactly() -> None:
    clock = VirtualClock()

    async def main() -> StreamMetrics:
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            sent_at = clock.now()
            stream = await client.messages.create(**REQUEST, stream=True)
            return await ameasure(stream, clock, sent_at=sent_at)

    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.respond_with(Reply.of_tokens(100))
        assert_modeled(clock.run(main()))


def test_sync_messages_stream_metrics_equal_the_model_exactly() -> None:
    clock = VirtualClock()
    with (
        AnthropicSimulator(latency=LATENCY, clock=clock) as sim,
        anthropic.Anthropic(api_key="test") as client,
    ):
        sim.respond_with(Reply.of_tokens(100))
        sent_at = clock.now()
        with client.messages.stream(**REQUEST) as stream:
            assert_modeled(measure(stream, clock, sent_at=sent_at))


def test_ttft_counts_from_the_intended_send_time() -> None:
    clock = VirtualClock()
    with (
        AnthropicSimulator(latency=LATENCY, clock=clock) as sim,
        anthropic.Anthropic(api_key="test") as client,
    ):
        sim.respond_with(Reply.of_tokens(100))
        meant_to_send = clock.now()
        clock.advance(0.3)  # queued behind other work before it went out
        with client.messages.create(**REQUEST, stream=True) as stream:
            assert_modeled(measure(stream, clock, sent_at=meant_to_send), ttft=0.8)


def test_a_stream_without_content_has_no_ttft_or_tpot() -> None:
    metrics = measure(
        [{"type": "message_start", "message": {"usage": {"output_tokens": 0}}}], VirtualClock()
    )
    assert (metrics.ttft, metrics.tpot, metrics.output_tokens) == (None, None, 0)


def parse(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in frames:
        name, data = frame.decode().rstrip("\n").split("\n")
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def test_relay_sends_every_event_as_sse() -> None:
    clock = VirtualClock()

    async def main() -> list[bytes]:
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            stream = await client.messages.create(**REQUEST, stream=True)
            return [frame async for frame in relay_sse(stream)]

    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.respond_with(Reply.text("Once upon a time"))
        events = parse(clock.run(main()))
        assert sim.last_request.completed
    assert events[0][0] == "message_start"
    assert events[-1] == ("message_stop", {"type": "message_stop"})
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "Once upon a time"


def test_a_client_that_disconnects_stops_the_upstream_request() -> None:
    clock = VirtualClock()

    async def main(sim: AnthropicSimulator) -> int:
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            stream = await client.messages.create(**REQUEST, stream=True)
            relay = relay_sse(stream)
            received = [await anext(relay) for _ in range(3)]
            await relay.aclose()  # what an ASGI server does when the client goes away
            # closed by the relay itself, while the client and its pool are still open
            assert sim.last_request.completed_at is not None
            return len(received)

    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.respond_with(Reply.of_tokens(100))
        assert clock.run(main(sim)) == 3
        upstream = sim.last_request
    assert upstream.completed is False
    assert upstream.output_tokens < 100
    assert clock.now() < 2.48  # it did not run to the end


def test_a_real_client_disconnect_through_uvicorn_stops_the_upstream_request() -> None:
    """A browser that goes away mid-stream: uvicorn and Starlette cancel the relay, which
    ends the upstream API request while the shared client stays open."""

    shared = SharedAsyncClient(lambda: async_anthropic_client(api_key="test"))

    async def chat(request: Request) -> StreamingResponse:
        stream = await shared.get().messages.create(**REQUEST, stream=True)
        return StreamingResponse(relay_sse(stream), media_type="text/event-stream")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with shared.lifespan():  # the client outlives every request
            yield

    app = Starlette(routes=[Route("/chat", chat)], lifespan=lifespan)
    latency = LLMLatency(ttft=0.05, per_token=0.05)  # 100 tokens: 5 s if it ran to the end
    with AnthropicSimulator(latency=latency, clock=RealClock()) as sim:
        sim.respond_with(Reply.of_tokens(100))
        with running_uvicorn(app) as url, httpx.Client() as browser:
            with browser.stream("GET", f"{url}/chat") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.iter_lines()
                deltas = 0
                while deltas < 3:
                    deltas += next(lines) == "event: content_block_delta"
            # the browser has hung up after three tokens
            deadline = time.monotonic() + 3
            while sim.last_request.completed_at is None and time.monotonic() < deadline:
                time.sleep(0.01)
        upstream = sim.last_request
    assert upstream.completed is False
    assert upstream.completed_at is not None  # the upstream stream was closed early...
    assert upstream.output_tokens < 100  # ...before the reply was generated
