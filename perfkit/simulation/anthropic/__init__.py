"""The simulated Anthropic API: the Messages API and its wire format, on the
simulated-server core (``perfkit.simulation.server``)."""

from __future__ import annotations

from perfkit.simulation.anthropic._assistant import SimulatedAssistant
from perfkit.simulation.anthropic._rate_limits import RateLimits
from perfkit.simulation.anthropic._simulator import (
    DEFAULT_BASE_URL,
    AnthropicSimulator,
    default_reply,
    user_texts,
)
from perfkit.simulation.anthropic._wire import (
    RenderedBlock,
    RenderedMessage,
    count_input_tokens,
    error_body,
    render,
    sse_event,
    stream_chunks,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "AnthropicSimulator",
    "RateLimits",
    "RenderedBlock",
    "RenderedMessage",
    "SimulatedAssistant",
    "count_input_tokens",
    "default_reply",
    "error_body",
    "render",
    "sse_event",
    "stream_chunks",
    "user_texts",
]
