"""A CPU calibration measured in the same run, so CPU times compare across runs and loads.

CPU seconds depend on the machine and on what else it is doing (a busy sibling
hyperthread, another process's cache traffic, frequency scaling). Dividing a benchmark's
CPU time by the CPU time of a fixed pure-Python workload, timed right before and right
after the benchmark's rounds, cancels most of that: the gate compares "calibration
units", not seconds. The workload is repeated and summarised by its median, and its
relative median absolute deviation says how noisy the measurement was.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from perfkit._validation import check_count

DEFAULT_REPEATS = 9
REPEATS_AROUND_A_BENCHMARK = 2
"""Runs of the workload before and after each benchmark's rounds (about 20 ms each side)."""


@dataclass(frozen=True)
class Calibration:
    """The median CPU seconds of the calibration workload, and its relative spread."""

    seconds: float
    spread: float
    repeats: int

    def as_dict(self) -> dict[str, float | int]:
        return {"seconds": self.seconds, "spread": self.spread, "repeats": self.repeats}


def relative_spread(values: list[float]) -> float:
    """The median absolute deviation of ``values`` over their median (0 for fewer than 2).

    >>> relative_spread([1.0, 1.1, 0.9, 1.0])
    0.05
    """
    if len(values) < 2:
        return 0.0
    middle = statistics.median(values)
    if middle <= 0:
        return 0.0
    return round(statistics.median(abs(value - middle) for value in values) / middle, 6)


def calibrate(
    repeats: int = DEFAULT_REPEATS, cpu_time: Callable[[], float] = time.process_time
) -> Calibration:
    """Time the calibration workload ``repeats`` times in CPU seconds."""
    return summarise(time_workload(repeats, cpu_time))


def time_workload(repeats: int, cpu_time: Callable[[], float] = time.process_time) -> list[float]:
    """The CPU seconds of ``repeats`` runs of the calibration workload."""
    check_count("repeats", repeats)
    durations = []
    for _ in range(repeats):
        start = cpu_time()
        _workload()
        durations.append(cpu_time() - start)
    return durations


def summarise(durations: list[float]) -> Calibration:
    """A calibration from timed runs of the workload: their median and relative spread."""
    return Calibration(
        seconds=statistics.median(durations),
        spread=relative_spread(durations),
        repeats=len(durations),
    )


def _workload() -> int:
    """About 10 ms of the interpreter work agents do: dicts, strings, calls, JSON-ish data."""
    total = 0
    for n in range(25_000):
        text, tags = f"token {n}", [n % 7, n % 11]
        record = {"id": n, "text": text, "tags": tags}
        total += len(text) + sum(tags) + len(record)
    return total
