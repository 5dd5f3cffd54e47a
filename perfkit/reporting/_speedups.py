"""The speedup report's rows: a baseline and an optimized benchmark, side by side.

A benchmark suite declares its rows by implementing the ``pytest_perfkit_speedups``
hook (in a ``conftest.py``), returning :class:`Speedup` objects; each names two
benchmarks, the figure to compare and, optionally, the :class:`Claim` it checks::

    def pytest_perfkit_speedups(config):
        return [
            Speedup(
                "async", "3 API calls",
                baseline="test_api_calls.py::test_three_api_calls[sequential]",
                optimized="test_api_calls.py::test_three_api_calls[concurrent]",
                claim=Claim.factor(3),
            ),
        ]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from perfkit.reporting._figures import flat_figures, is_exact

ClaimUnit = Literal["x", "%"]
Verdict = Literal["inside", "above", "below", "no claim", "not run"]
DEFAULT_CLAIM_TOLERANCE = 0.05
"""Claims are quoted rounded ("3.3x"): a measurement within 5% of one is inside it."""


@dataclass(frozen=True)
class Claim:
    """What a source claims for a speedup: a factor (``3x``, ``10-100x``) or a share of
    time saved (``15%``). A point claim is met within ``tolerance``; a range, between
    its ends (widened by ``tolerance``)."""

    low: float
    high: float
    unit: ClaimUnit = "x"
    text: str = ""
    tolerance: float = DEFAULT_CLAIM_TOLERANCE

    def __post_init__(self) -> None:
        if self.unit not in ("x", "%"):
            raise ValueError(f"a claim's unit is 'x' or '%', got {self.unit!r}")
        if not (0 < self.low <= self.high < math.inf):
            raise ValueError(
                f"a claim needs 0 < low <= high < inf, got low={self.low!r}, high={self.high!r}"
            )
        if self.unit == "%" and self.high >= 100:
            raise ValueError(f"a share of time saved is below 100%, got {self.high!r}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance!r}")
        if not self.text:
            object.__setattr__(self, "text", self._default_text())

    @classmethod
    def factor(cls, low: float, high: float | None = None, *, text: str = "") -> Claim:
        """``Claim.factor(3)`` is "3x"; ``Claim.factor(10, 100)`` is "10-100x"."""
        return cls(low, low if high is None else high, "x", text)

    @classmethod
    def percent(cls, low: float, high: float | None = None, *, text: str = "") -> Claim:
        """``Claim.percent(15)``: the optimized run takes 15% less time."""
        return cls(low, low if high is None else high, "%", text)

    def measure(self, factor: float) -> float:
        """The measured speedup in this claim's unit."""
        if self.unit == "x":
            return factor
        return (1 - 1 / factor) * 100 if factor > 0 else -math.inf

    def verdict(self, factor: float) -> Verdict:
        """Whether a measured factor (baseline / optimized) is inside, above or below."""
        measured = self.measure(factor)
        if measured < self.low * (1 - self.tolerance):
            return "below"
        if measured > self.high * (1 + self.tolerance):
            return "above"
        return "inside"

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "low": self.low, "high": self.high, "unit": self.unit}

    def _default_text(self) -> str:
        ends = [f"{end:,g}" for end in (self.low, self.high)]
        return ("-".join(dict.fromkeys(ends))) + self.unit


@dataclass(frozen=True)
class Speedup:
    """One row of the speedup report: ``baseline`` / ``optimized`` of one figure.

    Benchmarks are named by node id, or by its tail (``test_x.py::test_y[a]``);
    ``figure`` is a dotted figure name (``modeled.mean``, ``observed.p95``,
    ``counters.api_connections``), and ``optimized_figure`` another one for the
    optimized side when the two must differ (a cache hit has no modeled wait, so its
    real wall time is what there is to compare)."""

    technique: str
    scenario: str
    baseline: str
    optimized: str
    figure: str = "modeled.mean"
    optimized_figure: str | None = None
    claim: Claim | None = None
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("technique", "scenario", "baseline", "optimized"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"a Speedup's {name} must be a non-empty string")
        for figure in (self.figure, self.optimized_figure or self.figure):
            group, dot, statistic = figure.partition(".")
            if not (group and dot and statistic):
                raise ValueError(
                    f"a figure is named '<group>.<statistic>' (modeled.mean, observed.p95, "
                    f"counters.api_requests); got {figure!r}"
                )
        if self.claim is not None and not isinstance(self.claim, Claim):
            raise TypeError(f"claim must be a Claim, got {self.claim!r}")


@dataclass(frozen=True)
class Side:
    """One side of a speedup row: the benchmark, the figure compared, its value in this run
    (None when the benchmark did not run) and whether it is exact."""

    benchmark: str
    figure: str
    value: float | None
    deterministic: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "figure": self.figure,
            "value": self.value,
            "deterministic": self.deterministic,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Side:
        return cls(data["benchmark"], data["figure"], data["value"], data["deterministic"])


@dataclass(frozen=True)
class SpeedupRow:
    """A row of the speedup report as this run measured it: ``factor`` is baseline over
    optimized (None when a side did not run, or the optimized figure is 0)."""

    technique: str
    scenario: str
    baseline: Side
    optimized: Side
    factor: float | None
    percent_saved: float | None
    claim: Claim | None
    verdict: Verdict
    deterministic: bool
    note: str

    def to_json(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "scenario": self.scenario,
            "baseline": self.baseline.to_json(),
            "optimized": self.optimized.to_json(),
            "factor": self.factor,
            "percent_saved": self.percent_saved,
            "claim": self.claim.as_dict() if self.claim else None,
            "verdict": self.verdict,
            "deterministic": self.deterministic,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpeedupRow:
        claim = data["claim"]  # as a report holds it: text, low, high, unit
        return cls(
            technique=data["technique"],
            scenario=data["scenario"],
            baseline=Side.from_json(data["baseline"]),
            optimized=Side.from_json(data["optimized"]),
            factor=data["factor"],
            percent_saved=data["percent_saved"],
            claim=Claim(claim["low"], claim["high"], claim["unit"], claim["text"])
            if claim
            else None,
            verdict=data["verdict"],
            deterministic=data["deterministic"],
            note=data["note"],
        )


def as_rows(rows: Sequence[SpeedupRow | Mapping[str, Any]]) -> list[SpeedupRow]:
    """Rows as :class:`SpeedupRow`, whether typed already or read from a report file."""
    return [row if isinstance(row, SpeedupRow) else SpeedupRow.from_json(row) for row in rows]


def find_benchmark(benchmark: str, ids: Iterable[str]) -> str | None:
    """The node id ``benchmark`` names (itself, or a node id it is the tail of)."""
    matches = [nodeid for nodeid in ids if nodeid == benchmark or nodeid.endswith("/" + benchmark)]
    if len(matches) > 1:
        raise ValueError(f"{benchmark!r} names several benchmarks: {', '.join(sorted(matches))}")
    return matches[0] if matches else None


def speedup_rows(
    speedups: Sequence[Speedup], entries: Mapping[str, Mapping[str, Any]]
) -> list[SpeedupRow]:
    """The report's rows, computed from this run's benchmark entries."""
    return [_row(speedup, entries) for speedup in speedups]


def _row(speedup: Speedup, entries: Mapping[str, Mapping[str, Any]]) -> SpeedupRow:
    base = _side(speedup.baseline, speedup.figure, entries)
    best = _side(speedup.optimized, speedup.optimized_figure or speedup.figure, entries)
    row = SpeedupRow(
        technique=speedup.technique,
        scenario=speedup.scenario,
        baseline=base,
        optimized=best,
        factor=None,
        percent_saved=None,
        claim=speedup.claim,
        verdict="not run",
        deterministic=base.deterministic and best.deterministic,
        note=speedup.note,
    )
    before, after = base.value, best.value
    if before is None or after is None:
        return row
    # Equal figures (0 vs 0 too) are no change; a drop to 0 is an unbounded factor.
    factor = 1.0 if before == after else (before / after if after else math.inf)
    return replace(
        row,
        factor=round(factor, 4) if math.isfinite(factor) else None,
        percent_saved=round((1 - after / before) * 100, 3) if before else 0.0,
        verdict=speedup.claim.verdict(factor) if speedup.claim else "no claim",
    )


def _side(benchmark: str, figure: str, entries: Mapping[str, Mapping[str, Any]]) -> Side:
    nodeid = find_benchmark(benchmark, entries)
    entry = entries.get(nodeid, {}) if nodeid else {}
    value = flat_figures(entry).get(figure) if entry else None
    return Side(nodeid or benchmark, figure, value, is_exact(entry or {"clock": "virtual"}, figure))
