"""The curated public surface: what ``import perfkit`` offers, pinned."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import perfkit
import perfkit.load
import perfkit.reporting
import perfkit.simulation

EXPECTED_PERFKIT = [
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


EXPECTED_REPORTING = [
    "BaselineChange",
    "Claim",
    "FigureChange",
    "GateResult",
    "GateSettings",
    "Report",
    "RunOutcome",
    "Selection",
    "Speedup",
    "SpeedupRow",
    "baseline_changes",
    "baseline_changes_markdown",
    "baseline_diff",
    "empty_gate",
    "find_benchmark",
    "finish_run",
    "gate_lines",
    "gate_report",
    "json_schema",
    "load_baseline",
    "load_report",
    "markdown",
    "scope_of",
    "svg_chart",
    "terminal_lines",
    "update_baseline",
    "write_report",
    "write_text",
]


EXPECTED_LOAD = [
    "PERCENTILES",
    "PRODUCTION_TARGETS",
    "SLO",
    "ClosedModel",
    "LatencyHistogram",
    "LoadResult",
    "LoadTester",
    "OpenModel",
    "Progress",
    "Request",
    "RequestFactory",
    "SLOReport",
    "SLORow",
    "SLOViolation",
    "run",
    "run_load",
]


def test_load_all_is_pinned() -> None:
    assert perfkit.load.__all__ == EXPECTED_LOAD


def test_reporting_all_is_pinned() -> None:
    assert perfkit.reporting.__all__ == EXPECTED_REPORTING


EXPECTED_SIMULATION = [
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


def test_simulation_all_is_pinned() -> None:
    assert perfkit.simulation.__all__ == EXPECTED_SIMULATION


def test_perfkit_all_is_pinned_and_sorted() -> None:
    assert perfkit.__all__ == EXPECTED_PERFKIT
    assert sorted(perfkit.__all__, key=str.lower) == sorted(EXPECTED_PERFKIT, key=str.lower)


@pytest.mark.parametrize("module", [perfkit, perfkit.simulation], ids=lambda m: m.__name__)
def test_every_exported_name_exists(module: object) -> None:
    missing = [name for name in module.__all__ if not hasattr(module, name)]  # type: ignore[attr-defined]
    assert missing == []


def test_simulation_exports_everything_perfkit_reexports_from_it() -> None:
    simulation_names = set(perfkit.simulation.__all__)
    for name in perfkit.__all__:
        value = getattr(perfkit, name)
        if getattr(value, "__module__", "").startswith("perfkit.simulation"):
            assert name in simulation_names, name


def test_error_tree() -> None:
    assert issubclass(perfkit.UnmatchedRequestError, perfkit.SimulatorError)
    assert issubclass(perfkit.UnmatchedRequestError, AssertionError)
    errors = (
        perfkit.ClockError, perfkit.SimulatorError, perfkit.RedisServerError, perfkit.BaselineError,
    )  # fmt: skip
    for error in errors:
        assert issubclass(error, perfkit.PerfkitError)


# Importing perfkit.__main__ runs the command line; importing perfkit.locust imports
# locust, which monkey-patches sockets, ssl and threading with gevent for the rest of the
# test session (tests/test_locust.py runs it in Locust's own processes instead).
_NOT_IMPORTED = {"perfkit.__main__", "perfkit.locust"}


def _modules() -> list[str]:
    names = ["perfkit"]
    for info in pkgutil.walk_packages(perfkit.__path__, prefix="perfkit."):
        if info.name not in _NOT_IMPORTED:
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    failures, _attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


def test_every_public_name_loads_lazily_from_its_home() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, perfkit\n"
        "heavy = [m for m in ('anthropic', 'httpx', 'redis', 'fakeredis', 'jsonschema') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "for name in perfkit.__all__:\n"
        "    getattr(perfkit, name)\n"
        "assert 'httpx' in sys.modules\n"  # the simulation layer's, so the probe sees loads
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
    assert sorted(name for names in perfkit._HOMES.values() for name in names) == sorted(
        perfkit.__all__
    )
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = perfkit.Nope  # type: ignore[attr-defined]
