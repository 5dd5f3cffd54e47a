"""perfkit: deterministic performance testing for LLM agents.

Simulated Anthropic API with modeled latency, virtual time, Redis for tests, and a
pytest plugin with an async-aware ``perf`` benchmark fixture.

Names load on first use (PEP 562): ``import perfkit`` costs nothing heavy, so the
pytest plugin and the CLI stay cheap until a simulator, a cache or a report is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfkit._lazy import lazy_names

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
    from perfkit._pricing import (
        METER,
        PriceTable,
        Usage,
        load_prices,
        price_table,
        use_prices,
    )
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
    "perfkit._pricing": (
        "METER",
        "PriceTable",
        "Usage",
        "load_prices",
        "price_table",
        "use_prices",
    ),
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
__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())


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
    "METER",
    "Normal",
    "Perf",
    "PerfResult",
    "PerfkitError",
    "PriceTable",
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
    "Usage",
    "VirtualClock",
    "fake_async_redis",
    "fake_redis",
    "load_prices",
    "make_clock",
    "percentile",
    "price_table",
    "use_prices",
]
