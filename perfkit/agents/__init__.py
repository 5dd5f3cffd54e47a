"""Agents: a naive baseline and a fully optimized agent with one interface, and their tools."""

from __future__ import annotations

from perfkit.agents._agent import (
    MAX_MESSAGE_CHARS,
    Agent,
    AgentError,
    AgentReply,
    NaiveAgent,
    OptimizedAgent,
)
from perfkit.agents._demo import DEMO_TOOL_LATENCY, demo_tools
from perfkit.agents._history import ConversationStore, estimate_tokens
from perfkit.agents._support import SUPPORT_SYSTEM_PROMPT, support_tools
from perfkit.agents._tools import Tool, ToolRegistry

__all__ = [
    "DEMO_TOOL_LATENCY",
    "MAX_MESSAGE_CHARS",
    "SUPPORT_SYSTEM_PROMPT",
    "Agent",
    "AgentError",
    "AgentReply",
    "ConversationStore",
    "NaiveAgent",
    "OptimizedAgent",
    "Tool",
    "ToolRegistry",
    "demo_tools",
    "estimate_tokens",
    "support_tools",
]
