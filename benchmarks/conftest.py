"""Benchmark-suite helpers: real-time comparisons are printed at the end of the run."""

from __future__ import annotations

from typing import Any

import pytest

COMPARISONS_KEY = pytest.StashKey[list[tuple[str, dict[str, float], dict[str, float]]]]()
MODELED_KEY = pytest.StashKey[
    list[tuple[str, dict[str, dict[str, float]], dict[str, float], dict[str, Any]]]
]()


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


@pytest.fixture
def modeled_comparison(request: pytest.FixtureRequest) -> Any:
    """Record a comparison of modeled figures (seconds per variant, ratios, and the
    parameters that produced them), shown in the terminal summary."""

    def record(
        title: str,
        figures: dict[str, dict[str, float]],
        ratios: dict[str, float],
        *,
        parameters: dict[str, Any],
    ) -> None:
        found = request.config.stash.setdefault(MODELED_KEY, [])
        found.append((title, figures, ratios, parameters))

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    _write_modeled(terminalreporter, config.stash.get(MODELED_KEY, []))
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


def _write_modeled(reporter: Any, found: list[Any]) -> None:
    if not found:
        return
    reporter.write_sep("-", "modeled comparisons (virtual time, identical on every run)")
    for title, figures, ratios, parameters in found:
        reporter.write_line(title)
        names = list(next(iter(figures.values())))
        reporter.write_line("    " + f"{'':<12}" + "".join(f"{n:>16}" for n in names))
        for variant, row in figures.items():
            cells = "".join(f"{row[n] * 1000:>13,.0f} ms" for n in names)
            reporter.write_line(f"    {variant:<12}{cells}")
        for name, ratio in ratios.items():
            reporter.write_line(f"    {name:<34} {ratio:10.2f}x")
        settings = ", ".join(f"{key}={value}" for key, value in parameters.items())
        reporter.write_line(f"    parameters: {settings}")
