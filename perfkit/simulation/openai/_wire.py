"""The Chat Completions wire format: ``chat.completion`` bodies and streams of
``chat.completion.chunk`` events ending in ``data: [DONE]``.

The shapes follow the installed openai SDK's types (``openai/types/chat/chat_completion.py``,
``chat_completion_chunk.py``, ``completion_usage.py``) and the real responses recorded in
the SDK's repository (openai/openai-python, ``tests/lib/chat/test_completions.py`` and
``.inline-snapshot/external/*.bin``): key order, ``null`` fields, the first chunk's
``role``, a tool call's header chunk with ``arguments: ""``, the finishing chunk with an
empty delta, and the usage chunk with ``choices: []``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from perfkit.simulation._latency import LatencyPlan
from perfkit.simulation.server import Reply, TextBlock, ToolUseBlock, count_tokens, tokenize

SYSTEM_FINGERPRINT = "fp_perfkitsim"
"""Stands in for the backend fingerprint the API reports (``fp_`` and a hex digest)."""
SERVICE_TIER = "default"
"""What the API reports for a request served at the standard tier."""
SERVED_TIERS = {"flex": "flex", "scale": "scale", "priority": "priority", "fast": "priority"}
"""The tier a response reports for a requested ``service_tier`` (the SDK's docstring: the
response shows ``priority`` for ``fast`` or ``priority``; ``auto`` and ``default`` are
served at ``default``)."""
DEFAULT_MODEL = "gpt-simulated"

_COMPACT = (",", ":")


@dataclass(frozen=True)
class RenderedToolCall:
    """One function call of the reply, with its arguments' streamed token pieces."""

    id: str
    name: str
    pieces: tuple[str, ...]

    @property
    def arguments(self) -> str:
        """The arguments JSON as sent: cut short, it is not valid JSON (as on the API)."""
        return "".join(self.pieces)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class RenderedCompletion:
    """A reply rendered for one request: what the API would send, token by token.

    The text of every text block forms the message's ``content`` (``None`` when the
    reply has no text, as recorded for a tool-call-only answer); tool calls follow it."""

    id: str
    model: str
    created: int
    content_pieces: tuple[str, ...] | None
    tool_calls: tuple[RenderedToolCall, ...]
    finish_reason: str
    prompt_tokens: int
    service_tier: str = SERVICE_TIER

    @property
    def content(self) -> str | None:
        return None if self.content_pieces is None else "".join(self.content_pieces)

    @property
    def completion_tokens(self) -> int:
        text = len(self.content_pieces or ())
        return text + sum(len(call.pieces) for call in self.tool_calls)

    def usage(self) -> dict[str, Any]:
        """``usage`` with the detail objects the API sends (all zero: the simulator
        has no cache, audio, reasoning or predicted outputs)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_json() for call in self.tool_calls]
        message["refusal"] = None
        message["annotations"] = []
        return message

    def to_json(self) -> dict[str, Any]:
        """The non-streaming response body."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": self.message(),
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage(),
            "service_tier": self.service_tier,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }


def max_output_tokens(body: Mapping[str, Any]) -> int | None:
    """The request's output budget: ``max_completion_tokens``, else the older
    ``max_tokens`` (None: no limit but the model's)."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def stop_sequences(body: Mapping[str, Any]) -> list[str]:
    """``stop`` as a list: a string or up to four strings."""
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [item for item in stop if isinstance(item, str) and item]
    return []


def render(
    reply: Reply, body: Mapping[str, Any], *, completion_id: str, created: int
) -> RenderedCompletion:
    """Render ``reply`` as the answer to request ``body`` the way the API does:

    - the text stops before the first ``stop`` sequence it contains, with
      ``finish_reason`` ``"stop"`` and no tool call after it (the SDK's docstring: "The
      returned text will not contain the stop sequence");
    - output beyond ``max_completion_tokens`` (or ``max_tokens``) is cut, with
      ``finish_reason`` ``"length"``; a tool call cut short keeps the part of its
      arguments that fits, streamed or not (its arguments are a string on this API);
    - otherwise ``"tool_calls"`` if the reply calls a tool, else ``"stop"``;
    - ``tool_choice: "none"`` drops the reply's tool calls ("the model will not call any
      tool and instead generates a message", the SDK's ``tool_choice`` docstring), and
      ``parallel_tool_calls: false`` keeps only the first ("Whether to enable parallel
      function calling during tool use").

    A tool call's arguments are its input as JSON, compact for a lone call and with a
    space after ``:`` and ``,`` for parallel calls, as the API sent them in recorded
    answers (see :func:`_argument_pieces`)."""
    budget = max_output_tokens(body)
    texts = [block.text for block in reply.blocks if isinstance(block, TextBlock)]
    calls = [block for block in reply.blocks if isinstance(block, ToolUseBlock)]
    if body.get("tool_choice") == "none":
        calls = []
    elif body.get("parallel_tool_calls") is False:
        calls = calls[:1]
    finish_reason = "tool_calls" if calls else "stop"
    content_pieces: tuple[str, ...] | None = None
    used = 0
    if texts:
        text = "".join(texts)
        hit = _first_stop(text, stop_sequences(body))
        if hit is not None:
            text, calls, finish_reason = text[:hit], [], "stop"
        pieces = tokenize(text)
        if budget is not None and len(pieces) > budget:
            pieces, calls, finish_reason = pieces[:budget], [], "length"
        content_pieces = tuple(pieces)
        used = len(pieces)
    tool_calls = []
    suffix = completion_id.removeprefix("chatcmpl-")
    for number, call in enumerate(calls):
        pieces = _argument_pieces(call, compact=len(calls) == 1)
        if budget is not None and used + len(pieces) > budget:
            finish_reason = "length"
            if used == budget:  # no room left for this call at all
                break
            pieces = pieces[: budget - used]
        used += len(pieces)
        call_id = call.id or f"call_{suffix}_{number}"
        tool_calls.append(RenderedToolCall(call_id, call.name, tuple(pieces)))
        if finish_reason == "length":
            break
    prompt_tokens = (
        reply.input_tokens if reply.input_tokens is not None else count_prompt_tokens(body)
    )
    model = body.get("model")
    return RenderedCompletion(
        id=completion_id,
        model=model if isinstance(model, str) and model else DEFAULT_MODEL,
        created=created,
        content_pieces=content_pieces,
        tool_calls=tuple(tool_calls),
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        service_tier=SERVED_TIERS.get(str(body.get("service_tier")), SERVICE_TIER),
    )


_SEPARATOR = "\x00"
"""Marks the spaces ``json.dumps`` puts after ``,`` and ``:`` (never in its output
otherwise: it escapes control characters inside strings)."""


def _argument_pieces(call: ToolUseBlock, *, compact: bool) -> list[str]:
    """A call's arguments JSON in token pieces. A lone call's is compact, as recorded
    (``{"city":"New York City"}``, the SDK's ``test_allows_non_strict_tools_but_no_parsing``
    and ``test_parse_pydantic_tool`` streams), parallel calls' spaced
    (``{"city": "Edinburgh", ...}``, ``test_parse_multiple_pydantic_tools``). Compact or
    not, the pieces are the spaced form's tokens (the simulator's tokenizer splits at
    spaces), so the modeled time does not depend on the spacing."""
    marked = json.dumps(dict(call.input), separators=("," + _SEPARATOR, ":" + _SEPARATOR))
    pieces = tokenize(marked.replace(_SEPARATOR, " "))
    if not compact:
        return pieces
    compacted, start = [], 0
    for piece in pieces:
        compacted.append(marked[start : start + len(piece)].replace(_SEPARATOR, ""))
        start += len(piece)
    return compacted


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [text.index(stop) for stop in stops if stop in text]
    return min(found) if found else None


def count_prompt_tokens(body: Mapping[str, Any]) -> int:
    """A deterministic prompt token count: simulator tokens of every message's text
    (string content or text parts), of the tool calls an assistant made (name and
    arguments), and of the tools' definitions."""
    parts: list[str] = []
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        _collect_content(message.get("content"), parts)
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                parts.extend(str(function[key]) for key in ("name", "arguments") if key in function)
    if body.get("tools"):
        parts.append(json.dumps(body["tools"], sort_keys=True))
    return sum(count_tokens(part) for part in parts)


def _collect_content(content: Any, parts: list[str]) -> None:
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])


def user_texts(body: Mapping[str, Any]) -> list[str]:
    """The text of each user message, newest first ("" for one with no text part)."""
    texts = []
    messages = body.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            parts: list[str] = []
            _collect_content(message.get("content"), parts)
            texts.append(" ".join(parts))
    return texts


def error_body(
    message: str,
    error_type: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The API's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


Chunk = tuple[float, bytes]
"""Seconds to wait before sending, then the bytes sent."""


@dataclass(frozen=True)
class RenderedStream:
    """A completion's server-sent events on a latency plan: ``chunks``, ``tokens``, the
    output tokens delivered once each chunk is sent (a running total), and ``first_text``,
    the index of the chunk with the first content token (None: no text is sent)."""

    chunks: list[Chunk]
    tokens: list[int]
    first_text: int | None = None


DONE = b"data: [DONE]\n\n"


def stream_chunks(
    completion: RenderedCompletion,
    plan: LatencyPlan,
    *,
    include_usage: bool = False,
    error_after_tokens: int | None = None,
    error: tuple[str, str] = ("server_error", "The server had an error while processing"),
) -> RenderedStream:
    """The event stream of ``completion``: the first chunk (``role``) when the response
    starts, the first token ``plan.ttft`` later, each next token after a gap of the plan
    (a content piece, or a piece of a tool call's arguments, one chunk each); then the
    chunk with ``finish_reason``, the usage chunk if ``include_usage``, and
    ``data: [DONE]``.

    With ``include_usage`` every chunk carries ``"usage": null`` but the last, as the
    SDK's ``ChatCompletionChunk.usage`` documents. A tool call's header (its id, type,
    name and ``arguments: ""``) goes out with its first argument piece, or in the first
    chunk when the reply opens with it, as recorded. With ``error_after_tokens``, an
    ``error`` event replaces the rest of the stream after that many tokens (the SDK
    raises ``APIError`` on it), and no ``[DONE]`` follows."""
    head = json.dumps(
        {
            "id": completion.id,
            "object": "chat.completion.chunk",
            "created": completion.created,
            "model": completion.model,
            "service_tier": completion.service_tier,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        },
        separators=_COMPACT,
    )
    prefix = f'data: {head[:-1]},"choices":[{{"index":0,"delta":'
    tail = ',"logprobs":null,"finish_reason":null}]' + (',"usage":null' if include_usage else "")
    suffix = tail + "}\n\n"

    def event(delta: dict[str, Any]) -> str:
        return prefix + json.dumps(delta, separators=_COMPACT) + suffix

    opening: dict[str, Any] = {"role": "assistant"}
    if completion.content_pieces is None and completion.tool_calls:
        opening["content"] = None
        opening["tool_calls"] = [_call_header(0, completion.tool_calls[0])]
    else:
        opening["content"] = ""
    opening["refusal"] = None
    chunks: list[Chunk] = [(0.0, event(opening).encode())]
    tokens = [0]
    waits = iter((plan.ttft, *plan.gaps))
    sent = 0

    def send(text: str) -> bool:
        """Send one token's chunk; False once the scripted error replaced it."""
        nonlocal sent
        wait = next(waits, 0.0)
        if sent == error_after_tokens:
            chunks.append((wait, _error_event(error)))
            tokens.append(sent)
            return False
        sent += 1
        chunks.append((wait, text.encode()))
        tokens.append(sent)
        return True

    first_text = len(chunks) if completion.content_pieces else None
    for piece in completion.content_pieces or ():
        if not send(event({"content": piece})):
            return RenderedStream(chunks, tokens, _sent_text(first_text, tokens))
    opened_with_call = "tool_calls" in opening
    for index, call in enumerate(completion.tool_calls):
        opened = index == 0 and opened_with_call
        header = "" if opened else event({"tool_calls": [_call_header(index, call)]})
        for piece in call.pieces:
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            if not send(header + event(delta)):
                return RenderedStream(chunks, tokens, _sent_text(first_text, tokens))
            header = ""
    if error_after_tokens is not None:
        chunks.append((next(waits, 0.0), _error_event(error)))
        tokens.append(sent)
        return RenderedStream(chunks, tokens, _sent_text(first_text, tokens))
    finish = prefix + f'{{}},"logprobs":null,"finish_reason":"{completion.finish_reason}"}}]'
    ending = finish + (',"usage":null' if include_usage else "") + "}\n\n"
    if include_usage:
        usage = json.dumps(completion.usage(), separators=_COMPACT)
        ending += f'data: {head[:-1]},"choices":[],"usage":{usage}}}\n\n'
    chunks.append((0.0, ending.encode() + DONE))
    tokens.append(sent)
    return RenderedStream(chunks, tokens, first_text)


def _sent_text(first_text: int | None, tokens: list[int]) -> int | None:
    """``first_text`` if that chunk carried a token (not the error that replaced it)."""
    if first_text is None or first_text >= len(tokens) or tokens[first_text] == 0:
        return None
    return first_text


def _call_header(index: int, call: RenderedToolCall) -> dict[str, Any]:
    return {
        "index": index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }


def _error_event(error: tuple[str, str]) -> bytes:
    body = json.dumps(error_body(error[1], error[0]), separators=_COMPACT)
    return f"data: {body}\n\n".encode()
