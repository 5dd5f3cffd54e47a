"""Latencies in an HDR histogram: every value kept to 3 significant digits, so
percentiles are lossless to within 0.1% however many requests were recorded."""

from __future__ import annotations

import math

from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # an hour
SIGNIFICANT_DIGITS = 3


class LatencyHistogram:
    """Durations in seconds, recorded at microsecond resolution up to an hour.

    >>> histogram = LatencyHistogram()
    >>> for ms in range(1, 101):
    ...     histogram.record(ms / 1000)
    >>> round(histogram.percentile(50), 4), round(histogram.percentile(99), 4)
    (0.05, 0.099)
    """

    def __init__(self) -> None:
        self._histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        self._total_us = 0  # the exact mean, without a walk over every bucket

    def record(self, seconds: float) -> None:
        """Record one duration, to the microsecond (at most an hour)."""
        if not 0 <= seconds < math.inf:
            raise ValueError(f"a duration must be a finite number >= 0, got {seconds!r}")
        microseconds = min(round(seconds * 1e6), HIGHEST_US)
        self._histogram.record_value(microseconds)
        self._total_us += microseconds

    @property
    def count(self) -> int:
        return int(self._histogram.get_total_count())

    def percentile(self, q: float) -> float:
        """The value at the ``q``-th percentile, to 3 significant digits (the top of the
        histogram bucket holding that rank, as HDR histograms report it); 0 when nothing
        was recorded."""
        if not 0 <= q <= 100:
            raise ValueError(f"q must be between 0 and 100, got {q!r}")
        if not self.count:
            return 0.0
        return float(self._histogram.get_value_at_percentile(q)) / 1e6

    @property
    def mean(self) -> float:
        """The exact mean, to the microsecond (hdrh's walks every bucket up to the max:
        tenths of a second of CPU for latencies of seconds, after each test)."""
        return self._total_us / self.count / 1e6 if self.count else 0.0

    @property
    def max(self) -> float:
        return float(self._histogram.get_max_value()) / 1e6 if self.count else 0.0

    def as_dict(self) -> dict[str, float]:
        """count, mean, max and the percentiles p50, p90, p95, p99 and p99.9, in seconds."""
        figures = {"count": float(self.count), "mean": self.mean, "max": self.max}
        for q in PERCENTILES:
            figures[f"p{q:g}"] = self.percentile(q)
        return {name: round(value, 6) for name, value in figures.items()}
