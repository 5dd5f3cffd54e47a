"""What the simulated API answers: scripted replies (text and tool use) and faults."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from perfkit.simulation._latency import LLMLatency

_TOKEN = re.compile(r"\s*\S+")


def tokenize(text: str) -> list[str]:
    """Split text into the simulator's tokens: one per word, leading whitespace attached.

    The pieces join back to exactly ``text``; deterministic, so token counts are stable.

    >>> tokenize("Hello, simulated world")
    ['Hello,', ' simulated', ' world']
    """
    pieces = _TOKEN.findall(text)
    consumed = sum(len(piece) for piece in pieces)
    if consumed < len(text):
        if pieces:
            pieces[-1] += text[consumed:]
        else:
            pieces = [text]
    return pieces


def count_tokens(text: str) -> int:
    """The number of simulator tokens in ``text``."""
    return len(tokenize(text))


@dataclass(frozen=True)
class TextBlock:
    """A text content block of a reply."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"text must be a str, got {self.text!r}")


@dataclass(frozen=True)
class ToolUseBlock:
    """A ``tool_use`` content block: the model asks to call tool ``name`` with ``input``."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a tool's name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.input, Mapping):
            raise TypeError(f"a tool's input must be a mapping (a JSON object), got {self.input!r}")
        if self.id is not None and not isinstance(self.id, str):
            raise TypeError(f"a tool call's id must be a str or None, got {self.id!r}")
        self.input_json()  # the input must be JSON, as the API sends it

    def input_json(self) -> str:
        """The input as the API streams it in ``input_json_delta`` events."""
        return json.dumps(dict(self.input), separators=(", ", ": "))


@dataclass(frozen=True)
class ThinkingBlock:
    """A ``thinking`` content block (extended thinking): the model's reasoning before it
    answers. A provider shows it only to a request that enables thinking; ``signature``
    is the value the API signs it with (None: the simulator derives a deterministic one).

    >>> ThinkingBlock("The user wants the weather in Paris.").signature is None
    True
    """

    thinking: str
    signature: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.thinking, str):
            raise TypeError(f"thinking must be a str, got {self.thinking!r}")
        if self.signature is not None and not isinstance(self.signature, str):
            raise TypeError(
                f"a thinking block's signature must be a str or None, got {self.signature!r}"
            )


@dataclass(frozen=True)
class RedactedThinkingBlock:
    """A ``redacted_thinking`` block: thinking the API returns encrypted (``data`` is
    opaque). Shown, like a :class:`ThinkingBlock`, only when the request enables thinking;
    its tokens are unknown, so it adds none to the reply's output."""

    data: str

    def __post_init__(self) -> None:
        if not isinstance(self.data, str) or not self.data:
            raise TypeError(f"redacted thinking's data must be a non-empty str, got {self.data!r}")


Block = TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock


class Reply:
    """A scripted assistant message.

    >>> Reply.text("Hi there").output_tokens
    2
    >>> Reply.tool_use("get_weather", {"city": "Paris"}).stop_reason
    'tool_use'
    """

    def __init__(
        self,
        *blocks: Block | str,
        stop_reason: str | None = None,
        input_tokens: int | None = None,
        latency: LLMLatency | None = None,
    ) -> None:
        if not blocks:
            raise ValueError("a Reply needs at least one content block (text or tool_use)")
        self.blocks: tuple[Block, ...] = tuple(
            TextBlock(block) if isinstance(block, str) else _check_block(block) for block in blocks
        )
        if input_tokens is not None and (
            isinstance(input_tokens, bool) or not isinstance(input_tokens, int) or input_tokens < 0
        ):
            raise ValueError(f"input_tokens must be an int >= 0 or None, got {input_tokens!r}")
        self.stop_reason = stop_reason or (
            "tool_use" if any(isinstance(b, ToolUseBlock) for b in self.blocks) else "end_turn"
        )
        self.input_tokens = input_tokens
        self.latency = latency

    @classmethod
    def text(cls, text: str, **kwargs: Any) -> Reply:
        """A reply of one text block."""
        return cls(TextBlock(text), **kwargs)

    @classmethod
    def tool_use(
        cls,
        name: str,
        input: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        text: str | None = None,
        **kwargs: Any,
    ) -> Reply:
        """A reply that calls one tool, optionally after some text."""
        blocks: list[Block] = [TextBlock(text)] if text else []
        blocks.append(ToolUseBlock(name, dict(input or {}), id))
        return cls(*blocks, **kwargs)

    @classmethod
    def of_tokens(cls, tokens: int, *, word: str = "token", **kwargs: Any) -> Reply:
        """A text reply of exactly ``tokens`` tokens (for latency scenarios)."""
        if tokens < 1:
            raise ValueError(f"tokens must be >= 1, got {tokens!r}")
        return cls.text(" ".join([word] * tokens), **kwargs)

    @property
    def output_tokens(self) -> int:
        return sum(_block_tokens(block) for block in self.blocks)

    def __repr__(self) -> str:
        return f"Reply({', '.join(map(repr, self.blocks))}, stop_reason={self.stop_reason!r})"


def _check_block(block: object) -> Block:
    if isinstance(block, (TextBlock, ToolUseBlock, ThinkingBlock, RedactedThinkingBlock)):
        return block
    raise TypeError(
        "a reply block must be a str, TextBlock, ToolUseBlock, ThinkingBlock or "
        f"RedactedThinkingBlock, got {block!r}"
    )


def _block_tokens(block: Block) -> int:
    if isinstance(block, TextBlock):
        return count_tokens(block.text)
    if isinstance(block, ThinkingBlock):
        return count_tokens(block.thinking)
    if isinstance(block, RedactedThinkingBlock):
        return 0
    return count_tokens(block.input_json())


FaultKind = Literal["http_error", "connection_error", "timeout", "stream_error"]


@dataclass(frozen=True)
class Fault:
    """A failure the simulator injects in place of a reply.

    >>> Fault.rate_limit(retry_after=1).status
    429
    """

    kind: FaultKind
    status: int = 0
    error_type: str = ""
    message: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    after: float | None = None
    after_tokens: int = 0
    reply: Reply | None = None

    @classmethod
    def http_error(
        cls,
        status: int,
        error_type: str,
        message: str = "",
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Any error status with the API's error body."""
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status!r}")
        return cls(
            "http_error",
            status,
            error_type,
            message or f"simulated {error_type}",
            dict(headers or {}),
        )

    @classmethod
    def rate_limit(
        cls, *, retry_after: float | None = None, retry_after_ms: float | None = None
    ) -> Fault:
        """429 ``rate_limit_error``, with ``retry-after`` (seconds) or ``retry-after-ms``."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["retry-after"] = _format_number("retry_after", retry_after)
        if retry_after_ms is not None:
            headers["retry-after-ms"] = _format_number("retry_after_ms", retry_after_ms)
        return cls.http_error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
            headers=headers,
        )

    @classmethod
    def overloaded(cls) -> Fault:
        """529 ``overloaded_error``."""
        return cls.http_error(529, "overloaded_error", "Overloaded")

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """A 5xx ``api_error``."""
        if not 500 <= status <= 599:
            raise ValueError(f"status must be a 5xx status, got {status!r}")
        return cls.http_error(status, "api_error", "Internal server error")

    @classmethod
    def connection_error(cls) -> Fault:
        """The connection fails before any response (``httpx.ConnectError``)."""
        return cls("connection_error", message="simulated connection failure")

    @classmethod
    def timeout(cls, after: float | None = None) -> Fault:
        """No response: the client's read timeout expires (or ``after`` seconds pass).

        The wait is modeled on the simulator's clock: free on the virtual clock, real on
        the real clock, where the anthropic SDK's default timeout is 600 s per attempt,
        so give the client a short timeout (or pass ``after``) for real-clock runs."""
        if after is not None:
            _format_number("after", after)
        return cls("timeout", message="simulated read timeout", after=after)

    @classmethod
    def stream_error(
        cls,
        *,
        after_tokens: int = 0,
        error_type: str = "overloaded_error",
        message: str = "Overloaded",
        reply: Reply | None = None,
    ) -> Fault:
        """An ``error`` event in the middle of a stream, after ``after_tokens`` tokens."""
        if after_tokens < 0:
            raise ValueError(f"after_tokens must be >= 0, got {after_tokens!r}")
        return cls(
            "stream_error",
            error_type=error_type,
            message=message,
            after_tokens=after_tokens,
            reply=reply,
        )


def _format_number(name: str, value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return str(int(value)) if float(value).is_integer() else str(value)
