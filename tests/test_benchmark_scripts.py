"""The cost benchmarks that run as scripts (benchmarks/per_event_cost.py and
benchmarks/combined_scaling.py), run here in a cheap mode so that they cannot rot: they
print what they promise, and their exit status follows the bound."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent


def script(name: str) -> ModuleType:
    """benchmarks/<name>.py as a module."""
    path = REPOSITORY / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_script_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


CHEAP = ["--rounds", "1", "--requests", "1", "--tokens", "12"]


@pytest.mark.slow
def test_the_per_event_benchmark_prints_each_cost_and_its_ratio_to_the_sdks_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = script("per_event_cost").main([*CHEAP, "--bound", "1000"])
    out = capsys.readouterr().out
    assert status == 0, out
    events, chunks = map(int, re.findall(r"(\d+) events in (\d+) chunks each", out)[0])
    assert events > chunks > 12  # a chunk per token, and more events than chunks
    for mode in ("sync", "async"):
        for reading in ("create", "stream"):
            assert re.search(rf"{mode} {reading} sdk +[\d.]+ +[\d.]+\n", out), out
            for side in ("virtual", "real"):
                pattern = rf"{mode} {reading} {side} +[\d.]+ +[\d.]+ +[\d.]+x +[\d.]+x\n"
                assert re.search(pattern, out), out
    assert "every ratio on the virtual clock within 1000.0x" in out


def test_the_per_event_benchmark_fails_above_its_bound(
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = [*CHEAP, "--mode", "sync", "--reading", "create", "--bound", "0.001"]
    status = script("per_event_cost").main(arguments)
    out = capsys.readouterr().out
    assert status == 1, out
    assert re.search(r"sync create virtual .* ABOVE 0.001x", out), out
    assert "above the goal of 0.001x: sync create virtual" in out
    assert "async" not in out


@pytest.mark.slow
def test_the_per_event_benchmark_profiles_a_side(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = [*CHEAP, "--mode", "async", "--reading", "create", "--profile", "virtual"]
    assert script("per_event_cost").main([*arguments, "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "async create virtual:" in out
    assert "Ordered by: internal time" in out


@pytest.mark.slow
def test_the_scaling_benchmark_compares_the_combined_workload_at_two_sizes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = script("combined_scaling").main(["--users", "1", "--factor", "2"])
    out = capsys.readouterr().out
    for kind in ("naive", "optimized"):
        assert re.search(rf"{kind} +1 users +\d+ chats", out), out
        assert re.search(rf"{kind} +2 users +\d+ chats", out), out
        assert re.search(rf"{kind} +2x the users: +[\d.]+x the wall time", out), out
    assert re.search(r"both +2x the users: +[\d.]+x the wall time", out), out
    ratios = [float(ratio) for ratio in re.findall(r"([\d.]+)x the wall time", out)]
    assert status == (1 if max(ratios) > 2 else 0), out
