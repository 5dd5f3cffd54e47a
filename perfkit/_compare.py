"""Side-by-side real-time comparisons that a noisy machine cannot tilt.

Candidates are timed in interleaved rounds (A, B, A, B, ...), so a burst of load hits
them alike, and each keeps its best round: noise only ever adds time, so the minimum
is the most faithful estimate of a call's own cost.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any


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
    for name, value in (("number", number), ("repeat", repeat)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
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
