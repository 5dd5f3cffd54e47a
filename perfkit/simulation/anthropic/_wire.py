"""The Messages API wire format: JSON messages and server-sent event streams."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from perfkit.simulation._latency import LatencyPlan
from perfkit.simulation.anthropic._prompt_cache import CacheUsage, PromptBlock, prompt_blocks
from perfkit.simulation.server import Reply, TextBlock, count_tokens, tokenize


@dataclass(frozen=True)
class RenderedBlock:
    """One content block as the API returns it, with its streamed token pieces."""

    content: dict[str, Any]
    pieces: tuple[str, ...]


@dataclass(frozen=True)
class RenderedMessage:
    """A reply rendered for one request: what the API would send, token by token."""

    id: str
    model: str
    blocks: tuple[RenderedBlock, ...]
    stop_reason: str
    stop_sequence: str | None
    input_tokens: int
    cache: CacheUsage | None = None

    @property
    def output_tokens(self) -> int:
        return sum(len(block.pieces) for block in self.blocks)

    def usage(self, output_tokens: int | None = None) -> dict[str, Any]:
        """The ``usage`` object, its keys in the recorded order."""
        cache = self.cache if self.cache is not None else CacheUsage(self.input_tokens)
        return {
            **cache.usage_fields(),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
        }

    def to_json(self) -> dict[str, Any]:
        """The non-streaming response body."""
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [block.content for block in self.blocks],
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": self.usage(),
        }


def render(
    reply: Reply,
    body: Mapping[str, Any],
    *,
    message_id: str,
    cache: CacheUsage | None = None,
) -> RenderedMessage:
    """Render ``reply`` as the answer to request ``body``, honouring ``max_tokens`` and
    ``stop_sequences`` the way the API does. A tool call cut by ``max_tokens`` streams the
    part of its input JSON that fits; its parsed ``input`` is then empty.

    ``cache`` is the prompt cache's accounting of the request: ``input_tokens`` is then
    the uncached rest (unless the reply pins it)."""
    budget = body.get("max_tokens")
    budget = budget if isinstance(budget, int) and budget > 0 else None
    stops = [s for s in body.get("stop_sequences") or [] if isinstance(s, str) and s]
    stop_reason, stop_sequence = reply.stop_reason, None
    blocks: list[RenderedBlock] = []
    used = 0
    for index, block in enumerate(reply.blocks):
        if isinstance(block, TextBlock):
            text = block.text
            hit = _first_stop(text, stops)
            if hit is not None:
                text = text[: text.index(hit)]
                stop_reason, stop_sequence = "stop_sequence", hit
            pieces = tokenize(text)
            if budget is not None and used + len(pieces) > budget:
                pieces = pieces[: budget - used]
                stop_reason, stop_sequence = "max_tokens", None
            used += len(pieces)
            blocks.append(RenderedBlock({"type": "text", "text": "".join(pieces)}, tuple(pieces)))
            if stop_reason in ("stop_sequence", "max_tokens"):
                break
        else:
            pieces = tokenize(block.input_json())
            tool_input = dict(block.input)
            if budget is not None and used + len(pieces) > budget:
                pieces, tool_input = pieces[: budget - used], {}
                stop_reason, stop_sequence = "max_tokens", None
            used += len(pieces)
            content = {
                "type": "tool_use",
                "id": block.id or f"toolu_{message_id.removeprefix('msg_')}_{index}",
                "name": block.name,
                "input": tool_input,
            }
            blocks.append(RenderedBlock(content, tuple(pieces)))
            if stop_reason == "max_tokens":
                break
    if reply.input_tokens is not None:
        input_tokens = reply.input_tokens
    else:
        input_tokens = cache.input_tokens if cache is not None else count_input_tokens(body)
    return RenderedMessage(
        id=message_id,
        model=str(body.get("model", "claude-simulated")),
        blocks=tuple(blocks),
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        input_tokens=input_tokens,
        cache=cache,
    )


def _first_stop(text: str, stops: list[str]) -> str | None:
    found = [(text.index(s), s) for s in stops if s in text]
    return min(found)[1] if found else None


def count_input_tokens(body: Mapping[str, Any]) -> int:
    """A deterministic input token count: simulator tokens of system, messages and tools,
    the sum of the prompt's blocks (so the prompt cache's counts add up to it)."""
    return sum(prompt_block_tokens(block) for block in prompt_blocks(body))


def prompt_block_tokens(block: PromptBlock) -> int:
    """The simulator tokens of one block of the prompt: a tool's definition as JSON, the
    text of a system or message block (a tool call's input as JSON)."""
    if block.section == "tools":
        return count_tokens(json.dumps(block.content, sort_keys=True))
    parts: list[str] = []
    _collect_text(block.content, parts)
    return sum(count_tokens(part) for part in parts)


def _collect_text(value: Any, parts: list[str]) -> None:
    if isinstance(value, str):
        parts.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect_text(item, parts)
    elif isinstance(value, dict):
        for key in ("text", "content", "input"):
            if key in value:
                item = value[key]
                _collect_text(json.dumps(item) if key == "input" else item, parts)


def sse_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event, exactly as the API frames it."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """The API's error body."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


Chunk = tuple[float, bytes]
"""Seconds to wait before sending, then the bytes sent."""


def stream_chunks(
    message: RenderedMessage,
    plan: LatencyPlan,
    *,
    error_after_tokens: int | None = None,
    error: tuple[str, str] = ("overloaded_error", "Overloaded"),
) -> list[Chunk]:
    """The event stream of ``message``: ``message_start`` and ``ping`` when the response
    starts, the first token ``plan.ttft`` later, each next token after a gap of the plan.

    With ``error_after_tokens``, an ``error`` event replaces the rest of the stream
    after that many tokens."""
    # The API reports the first output token in message_start's usage.
    usage = message.usage(1 if message.output_tokens else 0)
    start = {
        "type": "message_start",
        "message": {
            **message.to_json(),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        },
    }
    chunks: list[Chunk] = [
        (0.0, sse_event("message_start", start) + sse_event("ping", {"type": "ping"}))
    ]
    waits = iter((plan.ttft, *plan.gaps))
    sent = 0
    for index, block in enumerate(message.blocks):
        pending = sse_event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": _empty(block.content)},
        )
        for piece in block.pieces:
            if sent == error_after_tokens:
                chunks.append((next(waits, 0.0), pending + _error_event(error)))
                return chunks
            chunks.append((next(waits, 0.0), pending + _delta(index, block.content, piece)))
            pending = b""
            sent += 1
        chunks.append(
            (
                0.0,
                pending
                + sse_event("content_block_stop", {"type": "content_block_stop", "index": index}),
            )
        )
    if error_after_tokens is not None:
        chunks.append((next(waits, 0.0), _error_event(error)))
        return chunks
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": message.stop_reason, "stop_sequence": message.stop_sequence},
        "usage": {"output_tokens": message.output_tokens},
    }
    chunks.append(
        (
            0.0,
            sse_event("message_delta", delta) + sse_event("message_stop", {"type": "message_stop"}),
        )
    )
    return chunks


def _empty(content: dict[str, Any]) -> dict[str, Any]:
    if content["type"] == "text":
        return {"type": "text", "text": ""}
    return {**content, "input": {}}


def _delta(index: int, content: dict[str, Any], piece: str) -> bytes:
    if content["type"] == "text":
        delta = {"type": "text_delta", "text": piece}
    else:
        delta = {"type": "input_json_delta", "partial_json": piece}
    return sse_event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _error_event(error: tuple[str, str]) -> bytes:
    return sse_event("error", error_body(*error))
