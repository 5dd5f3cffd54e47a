"""perfkit: deterministic performance testing for LLM agents.

Simulated Anthropic API with modeled latency, virtual time, Redis for tests, and a
pytest plugin with an async-aware ``perf`` benchmark fixture.
"""

from __future__ import annotations

from perfkit._clock import Clock, RealClock, VirtualClock, make_clock
from perfkit._errors import (
    BaselineError,
    ClockError,
    PerfkitError,
    RedisServerError,
    SimulatorError,
    UnmatchedRequestError,
)
from perfkit._perf import Counters, Distribution, Perf, PerfResult, percentile
from perfkit.reporting import Claim, GateSettings, Speedup
from perfkit.simulation import (
    AnthropicSimulator,
    Fault,
    Fixed,
    LatencyModel,
    LLMLatency,
    LogNormal,
    Normal,
    RedisServer,
    Replay,
    Reply,
    SimRequest,
    SimulatedAssistant,
    Uniform,
    fake_async_redis,
    fake_redis,
)

__version__ = "0.1.0"

__all__ = [
    "AnthropicSimulator",
    "BaselineError",
    "Claim",
    "Clock",
    "ClockError",
    "Counters",
    "Distribution",
    "Fault",
    "Fixed",
    "GateSettings",
    "LLMLatency",
    "LatencyModel",
    "LogNormal",
    "Normal",
    "Perf",
    "PerfResult",
    "PerfkitError",
    "RealClock",
    "RedisServer",
    "RedisServerError",
    "Replay",
    "Reply",
    "SimRequest",
    "SimulatedAssistant",
    "SimulatorError",
    "Speedup",
    "UnmatchedRequestError",
    "Uniform",
    "VirtualClock",
    "fake_async_redis",
    "fake_redis",
    "make_clock",
    "percentile",
]
