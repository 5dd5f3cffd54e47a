"""Benchmark-suite helpers: real-time comparisons are printed at the end of the run."""

from __future__ import annotations

from typing import Any

import pytest

COMPARISONS_KEY = pytest.StashKey[list[tuple[str, dict[str, float], dict[str, float]]]]()


@pytest.fixture
def comparison(request: pytest.FixtureRequest, benchmark: Any) -> Any:
    """Record a side-by-side comparison: shown in the terminal summary and saved in
    pytest-benchmark's ``extra_info``."""

    def record(seconds_per_call: dict[str, float], ratios: dict[str, float]) -> None:
        benchmark.extra_info["seconds_per_call"] = seconds_per_call
        benchmark.extra_info["ratios"] = ratios
        found = request.config.stash.setdefault(COMPARISONS_KEY, [])
        found.append((request.node.nodeid, seconds_per_call, ratios))

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    comparisons = config.stash.get(COMPARISONS_KEY, [])
    if not comparisons:
        return
    terminalreporter.write_sep("-", "real-time comparisons (measured side by side, this run)")
    for nodeid, seconds_per_call, ratios in comparisons:
        terminalreporter.write_line(nodeid)
        for name, seconds in seconds_per_call.items():
            terminalreporter.write_line(f"    {name:<34} {seconds * 1e6:10.3f} µs per call")
        for name, ratio in ratios.items():
            terminalreporter.write_line(f"    {name:<34} {ratio:10.3f}x")


@pytest.fixture(autouse=True)
def _every_connection_closed(no_open_connections: None) -> None:
    """After every benchmark, zero connections opened through tracked pools remain open."""
