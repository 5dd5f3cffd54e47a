"""perfkit: deterministic performance testing for LLM agents.

Simulated Anthropic API with modeled latency, virtual time, Redis for tests, and a
pytest plugin with an async-aware ``perf`` benchmark fixture.

Names load on first use (PEP 562): ``import perfkit`` costs nothing heavy, so the
pytest plugin and the CLI stay cheap until a simulator, a cache or a report is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "perfkit._clock": ("Clock", "RealClock", "VirtualClock", "make_clock"),
    "perfkit._errors": (
        "BaselineError",
        "ClockError",
        "PerfkitError",
        "RedisServerError",
        "SimulatorError",
        "UnmatchedRequestError",
    ),
    "perfkit._perf": ("Counters", "Distribution", "Perf", "PerfResult", "percentile"),
    "perfkit.reporting": ("Claim", "GateSettings", "Speedup"),
    "perfkit.simulation": (
        "AnthropicSimulator",
        "Fault",
        "Fixed",
        "LLMLatency",
        "LatencyModel",
        "LogNormal",
        "Normal",
        "RedisServer",
        "Replay",
        "Reply",
        "SimRequest",
        "SimulatedAssistant",
        "Uniform",
        "fake_async_redis",
        "fake_redis",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'perfkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
