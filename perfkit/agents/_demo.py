"""Demo tools with modeled I/O latency: what ``perfkit serve`` and the combined
benchmark give their agents to call."""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

from perfkit.agents._tools import Tool, ToolRegistry

DEMO_TOOL_LATENCY = (0.1, 0.5)
"""Seconds a demo tool waits (uniform between the two, drawn per input): a database
query or an internal API call."""

_STRING_INPUT = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 500}},
    "required": ["query"],
}
_DEMO_TOOLS = {
    "get_weather": "The current weather for a place.",
    "search_docs": "Search the product documentation.",
    "lookup_order": "Find an order and its delivery status.",
}


def demo_tools(*, latency: tuple[float, float] = DEMO_TOOL_LATENCY, seed: int = 0) -> ToolRegistry:
    """Three async tools (``get_weather``, ``search_docs``, ``lookup_order``) that each
    wait a modeled I/O latency, the same for the same input on every run.

    >>> import asyncio
    >>> tools = demo_tools(latency=(0.0, 0.0))
    >>> call = {"type": "tool_use", "id": "t1", "name": "get_weather",
    ...         "input": {"query": "Paris"}}
    >>> asyncio.run(tools.run([call]))[0]["content"]
    'get_weather(Paris): result 1 of 1'
    """
    low, high = latency
    if not 0 <= low <= high:
        raise ValueError(
            f"latency must be a (low, high) pair with 0 <= low <= high, got {latency!r}"
        )
    return ToolRegistry(
        Tool(
            name=name,
            function=_modeled_tool(name, low, high, seed),
            description=description,
            input_schema=_STRING_INPUT,
        )
        for name, description in _DEMO_TOOLS.items()
    )


def _modeled_tool(name: str, low: float, high: float, seed: int) -> Any:
    async def call(query: str) -> str:
        digest = hashlib.sha256(f"{seed}:{name}:{query}".encode()).digest()
        await asyncio.sleep(round(random.Random(digest).uniform(low, high), 6))
        return f"{name}({query}): result 1 of 1"

    call.__name__ = name
    return call
