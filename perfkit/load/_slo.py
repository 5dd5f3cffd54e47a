"""Service-level objectives for a load test, checked with a measured-vs-target table.

The defaults are the book chapter's production targets: p50 under 1 s, p95 under 2 s,
p99 under 5 s, an error rate under 0.1%, more than 10 requests per second per worker,
and a cache hit rate above 80% (checked when the service reports its cache).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from perfkit.load._constants import PRODUCTION_TARGETS
from perfkit.load._result import LoadResult


@dataclass(frozen=True)
class SLO:
    """Targets for a load test; ``None`` leaves one out. Latency targets are upper bounds
    (seconds), ``min_rps`` and ``cache_hit_rate`` lower bounds, ``error_rate`` an upper
    bound (a fraction: 0.001 is 0.1%). ``workers`` divides the throughput, for a service
    that runs several.

    >>> SLO().check(result).passed  # doctest: +SKIP
    """

    p50: float | None = PRODUCTION_TARGETS["p50"]
    p95: float | None = PRODUCTION_TARGETS["p95"]
    p99: float | None = PRODUCTION_TARGETS["p99"]
    error_rate: float | None = PRODUCTION_TARGETS["error_rate"]
    min_rps: float | None = PRODUCTION_TARGETS["min_rps"]
    cache_hit_rate: float | None = PRODUCTION_TARGETS["cache_hit_rate"]
    workers: int = 1

    def __post_init__(self) -> None:
        for target in fields(self):
            value = getattr(self, target.name)
            if target.name == "workers":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"workers must be an int >= 1, got {value!r}")
            elif value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value < math.inf
            ):
                raise ValueError(f"SLO {target.name} must be a number >= 0 or None, got {value!r}")

    @classmethod
    def names(cls) -> list[str]:
        """The targets an SLO can state."""
        return [target.name for target in fields(cls) if target.name != "workers"]

    def check(self, result: LoadResult, *, cache_hit_rate: float | None = None) -> SLOReport:
        """Every stated target beside what ``result`` measured."""

        def latency(q: float) -> float | None:
            if result.latency.count:
                return result.latency.percentile(q)
            return math.inf if result.requests else None  # all failed: no target is met

        measured: dict[str, float | None] = {
            "p50": latency(50),
            "p95": latency(95),
            "p99": latency(99),
            "error_rate": result.error_rate if result.requests else None,
            "min_rps": result.rps / self.workers,
            "cache_hit_rate": cache_hit_rate,
        }
        rows = [
            SLORow(name, target, measured[name])
            for name in self.names()
            if (target := getattr(self, name)) is not None
        ]
        return SLOReport(rows)


@dataclass(frozen=True)
class SLORow:
    """One target and its measurement (``None`` when it could not be measured)."""

    name: str
    target: float
    measured: float | None

    @property
    def lower_bound(self) -> bool:
        return self.name in ("min_rps", "cache_hit_rate")

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        met = self.measured >= self.target if self.lower_bound else self.measured <= self.target
        return "met" if met else "MISSED"

    def cells(self) -> tuple[str, str, str, str]:
        comparison = ">=" if self.lower_bound else "<="
        return (
            _label(self.name),
            _format(self.name, self.measured),
            f"{comparison} {_format(self.name, self.target)}",
            self.verdict,
        )

    def as_dict(self) -> dict[str, Any]:
        finite = self.measured is not None and math.isfinite(self.measured)
        return {
            "name": self.name,
            "target": self.target,
            "measured": self.measured if finite else None,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class SLOReport:
    """The rows of an SLO check; it passes when no measured target was missed."""

    rows: list[SLORow]

    @property
    def passed(self) -> bool:
        return all(row.verdict != "MISSED" for row in self.rows)

    def table(self) -> list[str]:
        """Measured vs target, one line per SLO."""
        table = [("SLO", "measured", "target", "verdict"), *(row.cells() for row in self.rows)]
        widths = [max(len(line[i]) for line in table) for i in range(4)]
        return [
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in table
        ]

    def as_dict(self) -> list[dict[str, Any]]:
        return [row.as_dict() for row in self.rows]


class SLOViolation(AssertionError):
    """A load test missed one of its service-level objectives (fails the test)."""

    def __init__(self, report: SLOReport, target: str) -> None:
        missed = ", ".join(row.name for row in report.rows if row.verdict == "MISSED")
        lines = [f"{target} missed its SLO ({missed}):", *report.table()]
        super().__init__("\n".join(lines))
        self.report = report


def _label(name: str) -> str:
    return {
        "error_rate": "error rate",
        "min_rps": "throughput per worker",
        "cache_hit_rate": "cache hit rate",
    }.get(name, f"{name} latency")


def _format(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "no success"
    if name in ("error_rate", "cache_hit_rate"):
        return f"{value:.2%}"
    if name == "min_rps":
        return f"{value:,.2f} requests/s"
    return f"{value * 1000:,.0f} ms"
