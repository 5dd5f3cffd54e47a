"""Reassembling messages from stream events, and replaying messages as events."""

from __future__ import annotations

from typing import Any

import pytest

from perfkit.cache._streams import MessageAssembler, RecordingStream, ReplayedStream, replay_events

MESSAGE: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-5",
    "content": [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 9},
}


def test_replayed_events_reassemble_to_the_message() -> None:
    assembler = MessageAssembler()
    for event in replay_events(MESSAGE):
        assembler.feed(event)
    assert assembler.complete
    assert assembler.message == MESSAGE


def test_replay_events_follow_the_api_order() -> None:
    kinds = [event["type"] for event in replay_events(MESSAGE)]
    assert kinds == [
        "message_start",
        *["content_block_start", "content_block_delta", "content_block_stop"] * 2,
        "message_delta",
        "message_stop",
    ]
    assert replay_events(MESSAGE)[0]["message"]["stop_reason"] is None


def test_an_unfinished_stream_is_not_complete_and_records_nothing() -> None:
    stored: list[dict[str, Any]] = []
    events = replay_events(MESSAGE)[:-1]  # no message_stop
    recording = RecordingStream(iter(events), stored.append)
    assert list(recording) == events
    assert stored == []


def test_a_finished_stream_hands_over_the_reassembled_message() -> None:
    stored: list[dict[str, Any]] = []
    assert len(list(RecordingStream(iter(replay_events(MESSAGE)), stored.append))) == 9
    assert stored == [MESSAGE]


@pytest.mark.parametrize("usage_delta", [{"output_tokens": 9, "input_tokens": None}])
def test_null_usage_fields_in_message_delta_keep_the_start_counts(usage_delta: Any) -> None:
    assembler = MessageAssembler()
    for event in replay_events(MESSAGE):
        if event["type"] == "message_delta":
            event = {**event, "usage": usage_delta}
        assembler.feed(event)
    assert assembler.message["usage"] == {"input_tokens": 12, "output_tokens": 9}


async def test_a_replayed_stream_iterates_sync_and_async() -> None:
    replayed = ReplayedStream(["a", "b"])
    with replayed:
        assert list(replayed) == ["a", "b"]
    async with replayed:
        assert [event async for event in replayed] == ["a", "b"]


def test_a_tool_call_cut_by_max_tokens_keeps_the_input_the_sdk_parses() -> None:
    """A tool block cut by max_tokens gets no content_block_stop (the SDK's recorded
    incomplete_partial_json stream): its input is what the SDK accumulates, the partial
    JSON parsed leniently, not ``{}``."""
    assembler = MessageAssembler()
    tool = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
    for event in [
        {"type": "message_start", "message": {"id": "m", "content": [], "usage": {}}},
        {"type": "content_block_start", "index": 0, "content_block": tool},
        {"type": "content_block_delta", "index": 0, "delta": _json_delta("")},
        {"type": "content_block_delta", "index": 0, "delta": _json_delta('{"city": "Paris", ')},
        {"type": "content_block_delta", "index": 0, "delta": _json_delta('"days": 3, "unit": "ce')},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {}},
        {"type": "message_stop"},
    ]:
        assembler.feed(event)
    assert assembler.complete
    assert assembler.message["content"][0]["input"] == {"city": "Paris", "days": 3}


def _json_delta(piece: str) -> dict[str, Any]:
    return {"type": "input_json_delta", "partial_json": piece}
