"""Streaming: measure an Anthropic stream as the user perceives it, and relay it as SSE.

Times are taken on a perfkit clock from the moment the request was meant to be sent:
TTFT to the first content token (``ping`` and ``message_start`` don't count), the gaps
between successive content chunks, end-to-end time, and TPOT = (end-to-end - TTFT) /
(tokens - 1). Tokens are counted from the stream's ``usage``, not from chunks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from perfkit._clock import Clock

CONTENT_DELTAS = frozenset({"text_delta", "input_json_delta", "thinking_delta"})


@dataclass(frozen=True)
class StreamMetrics:
    """What one streamed reply cost, in seconds on the clock it was measured with."""

    ttft: float | None
    end_to_end: float
    output_tokens: int
    gaps: tuple[float, ...]

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first: (end-to-end - TTFT) / (tokens - 1)."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return round((self.end_to_end - self.ttft) / (self.output_tokens - 1), 9)

    @property
    def tokens_per_second(self) -> float | None:
        """Output tokens per second of end-to-end time."""
        return self.output_tokens / self.end_to_end if self.end_to_end > 0 else None


class StreamTimer:
    """Feeds on raw stream events (SDK objects or dicts) and times them on ``clock``.

    >>> from perfkit import VirtualClock
    >>> clock = VirtualClock()
    >>> timer = StreamTimer(clock)
    >>> clock.advance(0.5)
    >>> timer.observe({"type": "content_block_delta", "delta": {"type": "text_delta"}})
    >>> timer.observe({"type": "message_delta", "usage": {"output_tokens": 1}})
    >>> timer.finish().ttft
    0.5
    """

    def __init__(self, clock: Clock, *, sent_at: float | None = None) -> None:
        self.clock = clock
        self.sent_at = clock.now() if sent_at is None else sent_at
        self._first: float | None = None
        self._last: float | None = None
        self._gaps: list[float] = []
        self._tokens = 0

    def observe(self, event: Any) -> None:
        kind = _field(event, "type")
        if (
            kind == "content_block_delta"
            and _field(_field(event, "delta"), "type") in CONTENT_DELTAS
        ):
            now = self.clock.elapsed(self.sent_at)
            if self._first is None:
                self._first = now
            elif self._last is not None:
                self._gaps.append(round(now - self._last, 9))
            self._last = now
        usage = _field(event, "usage") if kind == "message_delta" else None
        if kind == "message_start":
            usage = _field(_field(event, "message"), "usage")
        tokens = _field(usage, "output_tokens") if usage is not None else None
        if isinstance(tokens, int):
            self._tokens = tokens  # cumulative in the API's usage

    def finish(self) -> StreamMetrics:
        return StreamMetrics(
            ttft=self._first,
            end_to_end=self.clock.elapsed(self.sent_at),
            output_tokens=self._tokens,
            gaps=tuple(self._gaps),
        )


def measure(events: Iterable[Any], clock: Clock, *, sent_at: float | None = None) -> StreamMetrics:
    """Consume a sync stream of raw events (e.g. ``client.messages.create(stream=True)``)."""
    timer = StreamTimer(clock, sent_at=sent_at)
    for event in events:
        timer.observe(event)
    return timer.finish()


async def ameasure(
    events: AsyncIterable[Any], clock: Clock, *, sent_at: float | None = None
) -> StreamMetrics:
    """Consume an async stream of raw events and measure it."""
    timer = StreamTimer(clock, sent_at=sent_at)
    async for event in events:
        timer.observe(event)
    return timer.finish()


async def relay_sse(stream: Any) -> AsyncIterator[bytes]:
    """Relay an async Anthropic stream to a web client as ``text/event-stream`` frames
    (hand it to an ASGI streaming response). When the client goes away, the consumer
    stops iterating; the upstream stream is then closed, which ends the API request."""
    try:
        async for event in stream:
            data = _as_data(event)
            yield f"event: {data.get('type', 'message')}\ndata: {json.dumps(data)}\n\n".encode()
    finally:
        await stream.close()


def _field(value: Any, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _as_data(event: Any) -> dict[str, Any]:
    if isinstance(event, dict):
        return event
    return dict(event.model_dump(mode="json", exclude_none=True))
