"""Side-by-side real-time comparisons that a noisy machine cannot tilt.

Two estimators, each for its kind of call:

* :func:`interleaved_best` for CPU-bound calls (a cache hit in memory): candidates are
  timed in interleaved rounds (A, B, A, B, ...), so a burst of load hits them alike, and
  each keeps its best round: noise only ever adds time, so the minimum is the most
  faithful estimate of a call's own cost.
* :func:`alternating_medians` for calls that wait on another process (a Redis round
  trip): there the best case depends on how the scheduler happened to place two
  processes on the cores, which varies between runs far more than the code does, so
  single calls alternate (A, B, A, B, ...) and each candidate's median is compared.
"""

from __future__ import annotations

import asyncio
import inspect
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from perfkit._validation import check_count


def interleaved_best(
    candidates: Mapping[str, Callable[[], Any]], *, number: int = 1000, repeat: int = 15
) -> dict[str, float]:
    """Seconds per call of each candidate: the best of ``repeat`` interleaved rounds of
    ``number`` calls. Coroutine functions are awaited, all in one event loop.

    >>> best = interleaved_best({"noop": lambda: None}, number=10, repeat=3)
    >>> best["noop"] < 0.001
    True
    """
    if not candidates:
        raise ValueError("interleaved_best needs at least one candidate")
    check_count("number", number)
    check_count("repeat", repeat)
    return asyncio.run(_interleave(candidates, number, repeat))


async def _interleave(
    candidates: Mapping[str, Callable[[], Any]], number: int, repeat: int
) -> dict[str, float]:
    """One event loop for every round: some async caches are bound to their loop."""
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(repeat):
        for name, function in candidates.items():
            is_async = inspect.iscoroutinefunction(function)
            start = time.perf_counter()
            for _ in range(number):
                if is_async:
                    await function()
                else:
                    function()
            best[name] = min(best[name], (time.perf_counter() - start) / number)
    return best


def alternating_medians(
    candidates: Mapping[str, Callable[[], Any]], *, calls: int = 2000
) -> dict[str, float]:
    """Median seconds per call of each candidate, timed one call at a time, in turn.

    >>> medians = alternating_medians({"noop": lambda: None}, calls=5)
    >>> medians["noop"] < 0.001
    True
    """
    if not candidates:
        raise ValueError("alternating_medians needs at least one candidate")
    check_count("calls", calls)
    for name, function in candidates.items():
        if inspect.iscoroutinefunction(function):
            raise TypeError(
                f"alternating_medians times sync calls; {name!r} is a coroutine function"
            )
    durations: dict[str, list[float]] = {name: [] for name in candidates}
    clock = time.perf_counter
    for _ in range(calls):
        for name, function in candidates.items():
            start = clock()
            function()
            durations[name].append(clock() - start)
    return {name: statistics.median(times) for name, times in durations.items()}
