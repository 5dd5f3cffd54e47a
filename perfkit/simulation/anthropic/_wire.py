"""The Messages API wire format: JSON messages and server-sent event streams.

What each field looks like follows the installed SDK's types (``anthropic/types``) and the
responses recorded from the real API in ``tests/data/anthropic_recordings`` (their README
names each one's source); comments below cite which one a detail follows."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from perfkit.simulation._latency import LatencyPlan
from perfkit.simulation.anthropic._prompt_cache import CacheUsage, PromptBlock, prompt_blocks
from perfkit.simulation.server import (
    RedactedThinkingBlock,
    Reply,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    count_tokens,
    tokenize,
)

SERVICE_TIER = "standard"
"""``usage.service_tier``: every recorded response is ``"standard"`` (the simulator models
no priority tier)."""
INFERENCE_GEO = "not_available"
"""``usage.inference_geo`` as the newest recordings report it (sdk_parse_exchange.json)."""
_SERVER_TOOL_PREFIXES = ("web_search_", "web_fetch_", "code_execution_")


@dataclass(frozen=True)
class RenderedBlock:
    """One content block as the API returns it, with its streamed token pieces.
    ``complete`` is false for a tool call that ``max_tokens`` cut short."""

    content: dict[str, Any]
    pieces: tuple[str, ...]
    complete: bool = True
    hidden: bool = False
    """Thinking decoded (billed, and taking its time) but not shown: ``display: "omitted"``."""


@dataclass(frozen=True)
class RenderedMessage:
    """A reply rendered for one request: what the API would send, token by token."""

    id: str
    model: str
    blocks: tuple[RenderedBlock, ...]
    stop_reason: str
    stop_sequence: str | None
    input_tokens: int
    server_tools: bool = False
    cache: CacheUsage | None = None

    @property
    def output_tokens(self) -> int:
        """Every block's tokens, thinking included (it is billed as output: the SDK's
        ``Usage.output_tokens`` is "the inclusive, authoritative total")."""
        return sum(len(block.pieces) for block in self.blocks)

    def usage(self, output_tokens: int | None = None) -> dict[str, Any]:
        """``usage`` as the newest recorded responses carry it (``anthropic/types/usage.py``):
        the cache counts, their ``cache_creation`` breakdown by TTL, ``service_tier`` and
        ``inference_geo``; ``server_tool_use`` only where the request offers a server tool
        (sdk_runner_ratelimit_exchange.json has it, the plain tool-use recordings not)."""
        cache = self.cache if self.cache is not None else CacheUsage(self.input_tokens)
        usage: dict[str, Any] = {
            **cache.usage_fields(),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            "service_tier": SERVICE_TIER,
            "inference_geo": INFERENCE_GEO,
        }
        if self.server_tools:
            usage["server_tool_use"] = {"web_search_requests": 0, "web_fetch_requests": 0}
        return usage

    def delta_usage(self) -> dict[str, Any]:
        """``message_delta.usage``: cumulative counts, the input and cache counts repeated
        as newer streams do (sdk_runner_stream_exchange.json; ``MessageDeltaUsage``)."""
        usage = self.usage()
        fields = (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
            "server_tool_use",
        )
        return {name: usage[name] for name in fields if name in usage}

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


def thinking_budget(body: Mapping[str, Any]) -> int | None:
    """The request's thinking budget when it enables extended thinking
    (``{"type": "enabled", "budget_tokens": N}``, ``ThinkingConfigEnabledParam``), else None."""
    thinking = body.get("thinking")
    if not isinstance(thinking, Mapping) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    return budget if isinstance(budget, int) and not isinstance(budget, bool) else None


def render(
    reply: Reply,
    body: Mapping[str, Any],
    *,
    message_id: str,
    model: str | None = None,
    cache: CacheUsage | None = None,
) -> RenderedMessage:
    """Render ``reply`` as the answer to request ``body``, honouring ``max_tokens``,
    ``stop_sequences`` and ``thinking`` the way the API does; ``model`` is the id to answer
    with (the request's model by default); ``cache`` the prompt cache's accounting of the
    input (its uncached rest is ``input_tokens``, unless the reply scripts them).

    Thinking blocks show only when the request enables thinking, capped at its
    ``budget_tokens``; their tokens count toward ``max_tokens`` like any output. With
    thinking enabled, a reply scripted without any thinking block thinks first anyway (see
    :func:`implied_thought`): the API opens every such reply with one. A tool call
    cut by ``max_tokens`` keeps the input the SDK accumulates from the JSON streamed so far
    (``jiter.from_json(..., partial_mode=True)``, as ``anthropic/lib/streaming/_messages.py``
    does), streamed or not, so both agree."""
    budget = body.get("max_tokens")
    budget = budget if isinstance(budget, int) and budget > 0 else None
    thinking = thinking_budget(body)
    settings = body.get("thinking")
    mode = settings.get("type") if isinstance(settings, Mapping) else None
    # "adaptive": "Claude decides when and how much to think" (message_create_params.py): a
    # scripted thinking block is shown, uncapped by any budget, and none is implied.
    shows_thinking = thinking is not None or mode == "adaptive"
    # ThinkingConfig*Param.display: "omitted" redacts the thinking, keeps its signature.
    omitted = (
        shows_thinking and isinstance(settings, Mapping) and (settings.get("display") == "omitted")
    )
    stops = [s for s in body.get("stop_sequences") or [] if isinstance(s, str) and s]
    stop_reason, stop_sequence = reply.stop_reason, None
    blocks: list[RenderedBlock] = []
    used = 0
    replied = reply.blocks
    if (
        thinking is not None
        and not _continues_tool_loop(body)
        and not any(isinstance(b, (ThinkingBlock, RedactedThinkingBlock)) for b in replied)
    ):
        replied = (ThinkingBlock(implied_thought(reply)), *replied)
    for block in replied:
        if isinstance(block, ThinkingBlock):
            if not shows_thinking:
                continue
            pieces = tokenize(block.thinking)[:thinking]
            if budget is not None and used + len(pieces) > budget:
                pieces = pieces[: budget - used]
                stop_reason, stop_sequence = "max_tokens", None
            used += len(pieces)
            signature = block.signature or _signature(block.thinking)
            shown = "".join(pieces) if not omitted else ""
            content = {"type": "thinking", "thinking": shown, "signature": signature}
            blocks.append(RenderedBlock(content, tuple(pieces), hidden=omitted))
            if stop_reason == "max_tokens":
                break
        elif isinstance(block, RedactedThinkingBlock):
            if shows_thinking:
                blocks.append(RenderedBlock({"type": "redacted_thinking", "data": block.data}, ()))
        elif isinstance(block, TextBlock):
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
            blocks.append(_tool_block(block, blocks, budget, used, message_id))
            used += len(blocks[-1].pieces)
            if not blocks[-1].complete:
                stop_reason, stop_sequence = "max_tokens", None
                break
    if reply.input_tokens is not None:
        input_tokens = reply.input_tokens
    else:
        input_tokens = cache.input_tokens if cache is not None else count_input_tokens(body)
    return RenderedMessage(
        id=message_id,
        model=model if model is not None else str(body.get("model", "claude-simulated")),
        blocks=tuple(blocks),
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        input_tokens=input_tokens,
        server_tools=_offers_server_tool(body),
        cache=cache,
    )


def implied_thought(reply: Reply) -> str:
    """The thinking of a reply scripted without any, for a request that enables thinking.

    The extended-thinking guide: with thinking enabled an assistant turn opens with a
    thinking block (the model thinks once per turn: an answer to tool results, continuing
    the turn, has none unless interleaved thinking is on), and the API refuses a tool-use
    loop whose turn does not ("a final `assistant` message must start with a thinking
    block"), so a bare scripted tool call would make the agent's next request fail where
    the real API's answer would not.

    >>> implied_thought(Reply.tool_use("get_weather", {"city": "Paris"}))
    'I should call get_weather.'
    """
    call = next((block for block in reply.blocks if isinstance(block, ToolUseBlock)), None)
    return f"I should call {call.name}." if call is not None else "A direct answer will do."


def _continues_tool_loop(body: Mapping[str, Any]) -> bool:
    """Whether the request answers tool results: its last message is a user turn holding
    a ``tool_result``, so the reply continues the assistant turn that called the tools."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, Mapping) else None
    return isinstance(content, list) and any(
        isinstance(block, Mapping) and block.get("type") == "tool_result" for block in content
    )


def _tool_block(
    block: ToolUseBlock,
    rendered: list[RenderedBlock],
    budget: int | None,
    used: int,
    message_id: str,
) -> RenderedBlock:
    pieces = tokenize(block.input_json())
    tool_input: dict[str, Any] = dict(block.input)
    complete = budget is None or used + len(pieces) <= budget
    if not complete:
        pieces = pieces[: max(0, (budget or 0) - used)]
        tool_input = partial_json_input("".join(pieces))
    content = {
        "type": "tool_use",
        "id": block.id or f"toolu_{message_id.removeprefix('msg_')}_{len(rendered)}",
        "name": block.name,
        "input": tool_input,
        # A tool the model calls itself: recorded on every current tool_use block
        # (sdk_tool_use_response.txt, sdk_runner_stream_exchange.json).
        "caller": {"type": "direct"},
    }
    return RenderedBlock(content, tuple(pieces), complete)


def partial_json_input(partial: str) -> dict[str, Any]:
    """The tool input the SDK reads from the JSON streamed so far: values complete so far,
    an unfinished string left out (jiter's partial mode, which the SDK's stream
    accumulator uses); ``{}`` when nothing of it arrived."""
    from jiter import from_json  # the SDK's own JSON parser (a dependency of anthropic)

    parsed = from_json(partial.encode(), partial_mode=True) if partial else None
    return parsed if isinstance(parsed, dict) else {}


def _signature(thinking: str) -> str:
    """A deterministic stand-in for the API's opaque signature (base64, as recorded)."""
    digest = hashlib.sha256(thinking.encode()).digest()
    return base64.b64encode(b"\x12\x08perfkit" + digest + digest).decode()


def _offers_server_tool(body: Mapping[str, Any]) -> bool:
    tools = body.get("tools")
    return isinstance(tools, list) and any(
        isinstance(tool, Mapping)
        and isinstance(tool.get("type"), str)
        and tool["type"].startswith(_SERVER_TOOL_PREFIXES)
        for tool in tools
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
    text of a system or message block (a tool call's input as JSON). A ``cache_control``
    marker is not the prompt's: the API bills a prompt the same with or without it."""
    if block.section == "tools":
        definition = block.content
        if isinstance(definition, dict) and "cache_control" in definition:
            definition = {k: v for k, v in definition.items() if k != "cache_control"}
        return count_tokens(json.dumps(definition, sort_keys=True))
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


def error_body(error_type: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """The API's error body, with the request's id at the top level when given (the SDK's
    ``ErrorResponse``: ``type``, ``error``, ``request_id``; the API's documented shape)."""
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


Chunk = tuple[float, bytes]
"""Seconds to wait before sending, then the bytes sent."""

_PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def stream_chunks(
    message: RenderedMessage,
    plan: LatencyPlan,
    *,
    error_after_tokens: int | None = None,
    error: tuple[str, str] = ("overloaded_error", "Overloaded"),
) -> list[Chunk]:
    """The event stream of ``message``: ``message_start`` when the response starts, the
    first token ``plan.ttft`` later, each next token after a gap of the plan (thinking
    tokens first, decoded like any other output).

    As recorded: ``ping`` right after the first ``content_block_start``; a tool block's
    input opens with an empty ``input_json_delta``; a thinking block ends with one
    ``signature_delta``; a tool call cut by ``max_tokens`` gets no ``content_block_stop``
    (sdk_incomplete_partial_json_response.txt).

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
    chunks: list[Chunk] = [(0.0, sse_event("message_start", start))]
    waits = iter((plan.ttft, *plan.gaps))
    sent = 0
    for index, block in enumerate(message.blocks):
        pending = _block_start(index, block.content) + (_PING if index == 0 else b"")
        if block.hidden:  # omitted thinking: decoded in modeled time, sent as its signature
            thought = len(block.pieces)
            if error_after_tokens is not None and sent + thought >= error_after_tokens:
                # The error comes a token's time after the last token, shown or not.
                thought = error_after_tokens - sent
                wait = sum(next(waits, 0.0) for _ in range(thought + 1))
                chunks.append((wait, pending + _error_event(error)))
                return chunks
            wait = sum(next(waits, 0.0) for _ in range(thought))
            sent += thought
            stop = sse_event("content_block_stop", {"type": "content_block_stop", "index": index})
            chunks.append((wait, pending + _delta(index, block.content, None) + stop))
            continue
        for piece in block.pieces:
            if sent == error_after_tokens:
                chunks.append((next(waits, 0.0), pending + _error_event(error)))
                return chunks
            chunks.append((next(waits, 0.0), pending + _delta(index, block.content, piece)))
            pending = b""
            sent += 1
        if block.content["type"] == "thinking":
            pending += _delta(index, block.content, None)
        if block.complete:
            pending += sse_event(
                "content_block_stop", {"type": "content_block_stop", "index": index}
            )
        chunks.append((0.0, pending))
    if error_after_tokens is not None:
        chunks.append((next(waits, 0.0), _error_event(error)))
        return chunks
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": message.stop_reason, "stop_sequence": message.stop_sequence},
        "usage": message.delta_usage(),
    }
    chunks.append(
        (
            0.0,
            sse_event("message_delta", delta) + sse_event("message_stop", {"type": "message_stop"}),
        )
    )
    return chunks


def tokens_in(chunk: bytes) -> int:
    """The output tokens a chunk of :func:`stream_chunks` delivers: its deltas, but for a
    tool block's opening empty ``input_json_delta`` and a thinking block's signature."""
    return (
        chunk.count(b"event: content_block_delta\n")
        - chunk.count(b'"partial_json":""}')
        - chunk.count(b'"type":"signature_delta"')
    )


def _block_start(index: int, content: dict[str, Any]) -> bytes:
    empty: dict[str, Any]
    if content["type"] == "text":
        empty = {"type": "text", "text": ""}
    elif content["type"] == "thinking":
        empty = {"type": "thinking", "thinking": "", "signature": ""}
    elif content["type"] == "redacted_thinking":
        empty = content  # streamed whole, in its start (RedactedThinkingBlock has no delta)
    else:
        empty = {**content, "input": {}}
    event = sse_event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": empty},
    )
    if content["type"] == "tool_use":
        event += _delta(index, content, "")
    return event


_DELTA = (
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    '"delta":{"type":"%s","%s":%s}}\n\n'
)
"""A ``content_block_delta`` as :func:`sse_event` frames it, filled in for every streamed
token: a JSON encoder per event cost more than all the rest of the simulator's work."""


def _delta(index: int, content: dict[str, Any], piece: str | None) -> bytes:
    """A ``content_block_delta`` of block ``index``: the next piece, or (``None``) the
    thinking block's signature."""
    if content["type"] == "text":
        kind, field, value = "text_delta", "text", piece
    elif content["type"] == "thinking":
        kind, field, value = (
            ("signature_delta", "signature", content["signature"])
            if piece is None
            else ("thinking_delta", "thinking", piece)
        )
    else:
        kind, field, value = "input_json_delta", "partial_json", piece
    return (_DELTA % (index, kind, field, json.dumps(value))).encode()


def _error_event(error: tuple[str, str]) -> bytes:
    return sse_event("error", error_body(*error))


@dataclass(frozen=True)
class RateLimit:
    """One of the API's rate limits as its ``anthropic-ratelimit-*`` headers report it."""

    limit: int
    remaining: int
    reset: datetime


RATE_LIMIT_KINDS = ("requests", "input-tokens", "output-tokens", "tokens")
"""The limits a recorded 200 reports, in the headers' order (sdk_runner_ratelimit_exchange.json)."""

GENEROUS_LIMITS = {
    "requests": 4_000,
    "input-tokens": 2_000_000,
    "output-tokens": 400_000,
    "tokens": 2_400_000,
}
"""Limits reported when no rate-limit model is configured: generous per-minute figures
(``tokens`` is input plus output, as in the recording: 38000 = 30000 + 8000)."""


def unlimited(now: datetime) -> dict[str, RateLimit]:
    """The rate limits of a simulator that limits nothing: each generous limit untouched
    (remaining = limit), reset now."""
    return {kind: RateLimit(limit, limit, now) for kind, limit in GENEROUS_LIMITS.items()}


def rate_limit_headers(limits: Mapping[str, RateLimit]) -> dict[str, str]:
    """The ``anthropic-ratelimit-{kind}-{limit,remaining,reset}`` headers of ``limits``;
    resets in RFC 3339, UTC, to the second, as recorded (``2026-02-25T20:02:37Z``)."""
    headers = {}
    for kind in RATE_LIMIT_KINDS:
        if kind in limits:
            limit = limits[kind]
            prefix = f"anthropic-ratelimit-{kind}"
            headers[f"{prefix}-limit"] = str(limit.limit)
            headers[f"{prefix}-remaining"] = str(limit.remaining)
            reset = limit.reset.astimezone(UTC)
            headers[f"{prefix}-reset"] = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
    return headers


def should_retry(status: int) -> bool:
    """The API's ``x-should-retry`` for an error status: true where a retry may succeed
    (408, 409, 429 and 5xx, the statuses the SDK retries by itself), false otherwise."""
    return status in (408, 409, 429) or status >= 500
