"""Agents: a naive baseline and a fully optimized agent with one interface, and their tools."""

from __future__ import annotations

from perfkit.agents._agent import (
    MAX_MESSAGE_CHARS,
    AgentError,
    AgentReply,
    NaiveAgent,
    OptimizedAgent,
)
from perfkit.agents._history import ConversationStore, estimate_tokens
from perfkit.agents._tools import Tool, ToolRegistry

__all__ = [
    "MAX_MESSAGE_CHARS",
    "AgentError",
    "AgentReply",
    "ConversationStore",
    "NaiveAgent",
    "OptimizedAgent",
    "Tool",
    "ToolRegistry",
    "estimate_tokens",
]
