"""Streamed Messages replies through a cache: record a live stream into the message it
reassembles to, and replay a cached message as the stream of events it came from."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any


class MessageAssembler:
    """Reassembles the final message from raw stream events (dicts or SDK models).

    >>> assembler = MessageAssembler()
    >>> text = {"type": "text", "text": ""}
    >>> delta = {"type": "text_delta", "text": "Hi"}
    >>> for event in [
    ...     {"type": "message_start", "message": {"id": "m", "content": [], "usage": {}}},
    ...     {"type": "content_block_start", "index": 0, "content_block": text},
    ...     {"type": "content_block_delta", "index": 0, "delta": delta},
    ...     {"type": "content_block_stop", "index": 0},
    ...     {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
    ...     {"type": "message_stop"},
    ... ]:
    ...     assembler.feed(event)
    >>> assembler.message["content"], assembler.complete
    ([{'type': 'text', 'text': 'Hi'}], True)
    """

    def __init__(self) -> None:
        self.message: dict[str, Any] = {}
        self._partial_json: dict[int, str] = {}
        self.complete = False

    def feed(self, event: Any) -> None:
        data = event if isinstance(event, dict) else event.model_dump(mode="json")
        kind = data.get("type")
        if kind == "message_start":
            self.message = dict(data["message"])
            self.message["content"] = []
        elif kind == "content_block_start":
            block = dict(data["content_block"])
            if block.get("type") == "tool_use":
                self._partial_json[data["index"]] = ""
            self.message["content"].append(block)
        elif kind == "content_block_delta":
            self._apply_delta(data["index"], data["delta"])
        elif kind == "content_block_stop" and data["index"] in self._partial_json:
            text = self._partial_json.pop(data["index"])
            self.message["content"][data["index"]]["input"] = json.loads(text) if text else {}
        elif kind == "message_delta":
            self.message.update(data.get("delta") or {})
            # message_delta carries cumulative counts; fields it leaves null keep theirs.
            counts = {k: v for k, v in (data.get("usage") or {}).items() if v is not None}
            self.message["usage"] = {**self.message.get("usage", {}), **counts}
        elif kind == "message_stop":
            # A tool block cut by max_tokens gets no content_block_stop: its input is the
            # partial JSON parsed leniently, as the SDK's own accumulator does.
            for index in sorted(self._partial_json):
                text = self._partial_json.pop(index)
                self.message["content"][index]["input"] = _partial_input(text)
            self.complete = True

    def _apply_delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self.message["content"][index]
        if delta.get("type") == "text_delta":
            block["text"] = block.get("text", "") + delta["text"]
        elif delta.get("type") == "input_json_delta":
            self._partial_json[index] += delta["partial_json"]
        elif delta.get("type") == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta["thinking"]
        elif delta.get("type") == "signature_delta":
            block["signature"] = delta["signature"]


def _partial_input(text: str) -> Any:
    if not text:
        return {}
    from jiter import from_json  # the anthropic SDK's own dependency

    return from_json(text.encode(), partial_mode=True)


def replay_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw stream events of ``message``, one delta per content block."""
    usage = dict(message.get("usage") or {})
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message.get("content") or []):
        empty, delta = _split_block(block)
        events.append({"type": "content_block_start", "index": index, "content_block": empty})
        if delta is not None:
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message.get("stop_reason"),
                "stop_sequence": message.get("stop_sequence"),
            },
            "usage": {"output_tokens": usage.get("output_tokens", 0)},
        }
    )
    events.append({"type": "message_stop"})
    return events


def _split_block(block: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    kind = block.get("type")
    if kind == "text":
        return {**block, "text": ""}, {"type": "text_delta", "text": block.get("text", "")}
    if kind == "tool_use":
        partial = json.dumps(block.get("input") or {})
        return {**block, "input": {}}, {"type": "input_json_delta", "partial_json": partial}
    return block, None


class RecordingStream:
    """Wraps the SDK's stream: yields its events unchanged and, once the whole stream has
    arrived, hands the reassembled message to ``on_complete`` (a cut stream stores nothing)."""

    def __init__(self, stream: Any, on_complete: Callable[[dict[str, Any]], Any]) -> None:
        self._stream = stream
        self._on_complete = on_complete
        self._assembler = MessageAssembler()
        self.response = getattr(stream, "response", None)

    def __iter__(self) -> Iterator[Any]:
        for event in self._stream:
            self._assembler.feed(event)
            yield event
        if self._assembler.complete:
            self._on_complete(self._assembler.message)

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for event in self._stream:
            self._assembler.feed(event)
            yield event
        if self._assembler.complete:
            await self._on_complete(self._assembler.message)

    def close(self) -> Any:
        """Close the underlying stream (awaitable for an async one, like the SDK's)."""
        return self._stream.close()

    async def aclose(self) -> None:
        await self._stream.close()

    def __enter__(self) -> RecordingStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> RecordingStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class ReplayedStream:
    """A cached message served as the stream of SDK events it would have arrived as."""

    def __init__(self, events: list[Any], *, is_async: bool = False) -> None:
        self._events = events
        self._is_async = is_async
        self.response = None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._events)

    async def __aiter__(self) -> AsyncIterator[Any]:
        for event in self._events:
            yield event

    def close(self) -> Any:
        """Nothing to release; awaitable when replaying for an async client."""
        return self.aclose() if self._is_async else None

    async def aclose(self) -> None:
        return None

    def __enter__(self) -> ReplayedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    async def __aenter__(self) -> ReplayedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None
