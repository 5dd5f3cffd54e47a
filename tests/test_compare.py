"""interleaved_best: side-by-side timing of sync and async candidates."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from perfkit._compare import alternating_medians, interleaved_best


def test_it_times_sync_and_async_candidates_in_one_run() -> None:
    calls = {"sync": 0, "async": 0}

    def sync_candidate() -> None:
        calls["sync"] += 1

    async def async_candidate() -> None:
        calls["async"] += 1
        await asyncio.sleep(0)

    best = interleaved_best({"sync": sync_candidate, "async": async_candidate}, number=7, repeat=3)
    assert calls == {"sync": 21, "async": 21}
    assert set(best) == {"sync", "async"}
    assert all(0 < seconds < 0.01 for seconds in best.values())


def test_a_slower_candidate_measures_slower() -> None:
    best = interleaved_best(
        {"fast": lambda: None, "slow": lambda: time.sleep(0.001)}, number=3, repeat=2
    )
    assert best["slow"] >= 0.001 > best["fast"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"number": 0}, "number must be an int >= 1, got 0"),
        ({"repeat": 1.5}, "repeat must be an int >= 1, got 1.5"),
    ],
)
def test_bad_counts_are_value_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        interleaved_best({"noop": lambda: None}, **options)


def test_no_candidates_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        interleaved_best({})


def test_alternating_medians_times_each_call_in_turn() -> None:
    order: list[str] = []
    medians = alternating_medians(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, calls=3
    )
    assert order == ["a", "b"] * 3
    assert set(medians) == {"a", "b"}
    assert all(0 < seconds < 0.01 for seconds in medians.values())


def test_alternating_medians_sees_the_slower_call() -> None:
    medians = alternating_medians(
        {"fast": lambda: None, "slow": lambda: time.sleep(0.001)}, calls=3
    )
    assert medians["slow"] >= 0.001 > medians["fast"]


def test_alternating_medians_rejects_bad_input() -> None:
    async def coroutine_function() -> None:
        return None

    with pytest.raises(ValueError, match="at least one candidate"):
        alternating_medians({})
    with pytest.raises(ValueError, match="calls must be an int >= 1, got 0"):
        alternating_medians({"noop": lambda: None}, calls=0)
    with pytest.raises(TypeError, match="'c' is a coroutine function"):
        alternating_medians({"c": coroutine_function})
