"""What a streamed event costs the simulator: each token's event is framed without a JSON
encoder per event, byte for byte as the generic framing, and a stream read alone on the
virtual clock moves the clock on without a coroutine per chunk, at the same times."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from perfkit import LLMLatency, Reply, VirtualClock
from perfkit.simulation.anthropic import _wire
from perfkit.simulation.server import ScheduledStream

PIECES = [
    " token",
    "",
    'quote " and back\\slash',
    "new\nline\ttab\r\x00\x1f",
    "é ü ß 中文 🙂",
    "\ud800",  # a lone surrogate, as json.dumps escapes it
    "</script>",
]


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize("index", [0, 7, 123])
def test_a_token_event_is_the_same_bytes_as_its_generic_framing(index: int, piece: str) -> None:
    for content, delta in [
        ({"type": "text", "text": ""}, {"type": "text_delta", "text": piece}),
        ({"type": "thinking", "signature": "sig"}, {"type": "thinking_delta", "thinking": piece}),
        (
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            {"type": "input_json_delta", "partial_json": piece},
        ),
    ]:
        expected = _wire.sse_event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )
        assert _wire._delta(index, content, piece) == expected


def test_a_thinking_signature_event_is_the_same_bytes_as_its_generic_framing() -> None:
    content = {"type": "thinking", "signature": 'Eq"sig/+=='}
    expected = _wire.sse_event(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "signature_delta", "signature": 'Eq"sig/+=='},
        },
    )
    assert _wire._delta(2, content, None) == expected


def test_a_long_stream_needs_no_json_encoder_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": []}
    message = _wire.render(Reply.of_tokens(400), body, message_id="msg_1")
    plan = LLMLatency(ttft=0.5, per_token=0.02).plan(message.output_tokens)
    encoders = []
    original = json.JSONEncoder.__init__

    def counted(self: json.JSONEncoder, *args: Any, **kwargs: Any) -> None:
        encoders.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(json.JSONEncoder, "__init__", counted)
    chunks = _wire.stream_chunks(message, plan)
    assert sum(data.count(b"event: content_block_delta\n") for _, data in chunks) == 400
    assert len(encoders) < 20


# --- a scheduled stream on the virtual clock ---------------------------------------------------

CHUNKS = [(0.0, b"start"), (0.5, b"first"), (0.02, b"second"), (0.0, b"with it"), (0.02, b"last")]


def test_a_virtual_stream_read_alone_sleeps_without_a_coroutine_per_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = VirtualClock()
    asleeps = []
    asleep = clock.asleep

    def counted(seconds: float) -> Any:
        asleeps.append(seconds)
        return asleep(seconds)

    monkeypatch.setattr(clock, "asleep", counted)

    async def read() -> list[tuple[float, bytes]]:
        return [(clock.now(), chunk) async for chunk in ScheduledStream(CHUNKS, clock)]

    assert clock.run(read()) == [
        (0.0, b"start"),
        (0.5, b"first"),
        (0.52, b"second"),
        (0.52, b"with it"),
        (0.54, b"last"),
    ]
    assert asleeps == []


def test_virtual_streams_read_side_by_side_keep_their_own_times() -> None:
    clock = VirtualClock()
    seen: list[tuple[float, str]] = []

    async def read(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async for chunk in ScheduledStream(CHUNKS, clock):
            seen.append((clock.now(), f"{name} {chunk.decode()}"))

    async def both() -> None:
        await asyncio.gather(read("a", 0.0), read("b", 0.01))

    clock.run(both())
    assert seen == sorted(seen, key=lambda item: item[0])
    assert [when for when, what in seen if what.startswith("b")] == [0.01, 0.51, 0.53, 0.53, 0.55]
    assert [when for when, what in seen if what.startswith("a")] == [0.0, 0.5, 0.52, 0.52, 0.54]
