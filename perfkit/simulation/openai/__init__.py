"""The simulated OpenAI Chat Completions API (``POST /v1/chat/completions``) on the
provider-neutral simulated-server core, for the official openai SDK and any
OpenAI-compatible client."""

from __future__ import annotations

from perfkit.simulation.openai._simulator import DEFAULT_BASE_URL, OpenAISimulator, default_reply
from perfkit.simulation.openai._validation import RequestError, validate
from perfkit.simulation.openai._wire import (
    RenderedCompletion,
    RenderedStream,
    RenderedToolCall,
    count_prompt_tokens,
    error_body,
    render,
    stream_chunks,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "OpenAISimulator",
    "RenderedCompletion",
    "RenderedStream",
    "RenderedToolCall",
    "RequestError",
    "count_prompt_tokens",
    "default_reply",
    "error_body",
    "render",
    "stream_chunks",
    "validate",
]
