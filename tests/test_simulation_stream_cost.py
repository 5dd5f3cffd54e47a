"""What a streamed event costs the simulator: each token's event is framed without a JSON
encoder per event, byte for byte as the generic framing, and the stream's chunks are
delivered with the same timing and callbacks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from perfkit import LLMLatency, Reply
from perfkit.simulation.anthropic import _wire

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
