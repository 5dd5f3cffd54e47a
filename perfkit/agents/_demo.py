"""Demo tools with modeled I/O latency: what ``perfkit serve`` and the combined
benchmark give their agents to call."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Mapping
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
    definitions = {name: (text, _STRING_INPUT) for name, text in _DEMO_TOOLS.items()}
    return modeled_registry(definitions, _modeled_tool, latency=latency, seed=seed)


def modeled_registry(
    definitions: Mapping[str, tuple[str, dict[str, Any]]],
    make_tool: Callable[[str, float, float, int], Any],
    *,
    latency: tuple[float, float],
    seed: int,
) -> ToolRegistry:
    """A registry of tools (name -> description and input schema) whose functions
    ``make_tool(name, low, high, seed)`` wait a modeled latency in ``latency``."""
    low, high = latency
    if not 0 <= low <= high:
        raise ValueError(
            f"latency must be a (low, high) pair with 0 <= low <= high, got {latency!r}"
        )
    return ToolRegistry(
        Tool(
            name=name,
            function=make_tool(name, low, high, seed),
            description=description,
            input_schema=schema,
        )
        for name, (description, schema) in definitions.items()
    )


def _modeled_tool(name: str, low: float, high: float, seed: int) -> Any:
    async def call(query: str) -> str:
        digest = hashlib.sha256(f"{seed}:{name}:{query}".encode()).digest()
        await asyncio.sleep(round(random.Random(digest).uniform(low, high), 6))
        return f"{name}({query}): result 1 of 1"

    call.__name__ = name
    return call
