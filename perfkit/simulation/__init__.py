"""The simulation layer: simulated LLM APIs (Anthropic's Messages API and OpenAI's Chat
Completions API on a provider-neutral simulated-server core), latency models, a simulated
network and Redis for tests."""

from __future__ import annotations

from perfkit.simulation._latency import (
    Fixed,
    LatencyModel,
    LatencyPlan,
    LLMLatency,
    LogNormal,
    Normal,
    Replay,
    Uniform,
)
from perfkit.simulation._network import SimulatedNetwork
from perfkit.simulation._profile import latency_from_profile, latency_to_profile
from perfkit.simulation._redis import (
    RedisServer,
    fake_async_redis,
    fake_redis,
    find_redis_server_binary,
)
from perfkit.simulation.anthropic import (
    AnthropicSimulator,
    RateLimits,
    SimulatedAssistant,
    default_reply,
)
from perfkit.simulation.openai import OpenAISimulator
from perfkit.simulation.server import (
    Fault,
    RedactedThinkingBlock,
    Reply,
    SimRequest,
    SimulatedServer,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    count_tokens,
    is_loopback,
    tokenize,
)

__all__ = [
    "AnthropicSimulator",
    "Fault",
    "Fixed",
    "LLMLatency",
    "LatencyModel",
    "LatencyPlan",
    "LogNormal",
    "Normal",
    "OpenAISimulator",
    "RateLimits",
    "RedactedThinkingBlock",
    "RedisServer",
    "Replay",
    "Reply",
    "SimRequest",
    "SimulatedAssistant",
    "SimulatedNetwork",
    "SimulatedServer",
    "TextBlock",
    "ThinkingBlock",
    "ToolUseBlock",
    "Uniform",
    "count_tokens",
    "default_reply",
    "fake_async_redis",
    "fake_redis",
    "find_redis_server_binary",
    "is_loopback",
    "latency_from_profile",
    "latency_to_profile",
    "tokenize",
]
