"""The simulation layer: a simulated Anthropic API, latency models and Redis for tests."""

from __future__ import annotations

from perfkit.simulation._anthropic import AnthropicSimulator, SimRequest, default_reply
from perfkit.simulation._assistant import SimulatedAssistant
from perfkit.simulation._intercept import is_loopback
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
from perfkit.simulation._redis import (
    RedisServer,
    fake_async_redis,
    fake_redis,
    find_redis_server_binary,
)
from perfkit.simulation._replies import (
    Fault,
    Reply,
    TextBlock,
    ToolUseBlock,
    count_tokens,
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
    "RedisServer",
    "Replay",
    "Reply",
    "SimRequest",
    "SimulatedAssistant",
    "SimulatedNetwork",
    "TextBlock",
    "ToolUseBlock",
    "Uniform",
    "count_tokens",
    "default_reply",
    "fake_async_redis",
    "fake_redis",
    "find_redis_server_binary",
    "is_loopback",
    "tokenize",
]
