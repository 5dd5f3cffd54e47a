"""The regression gate: this run's figures against a committed baseline.

Exact figures (modeled seconds, observed latencies under the virtual clock, counters)
are the same on every run and every machine, so their gate is strict: a figure may not
exceed its baseline by more than ``tolerance`` (0.1% by default), and a counter may not
grow at all (or fall, for a counter where higher is better, such as a hit rate).

Real CPU time is gated noise-aware. It is compared in calibration units (CPU seconds
over the CPU seconds of a fixed workload timed right before and right after the
benchmark's rounds, so a machine that is busier now than when the baseline was taken does
not read as slower code), only for benchmarks that use at least ``cpu_minimum`` seconds
per round, and the allowed rise is the larger of ``cpu_threshold`` (100%: the CPU time
doubled) and four times the relative spread observed (across a benchmark's rounds and its
calibration's repeats, in the baseline's run and in this one). It catches gross CPU
regressions (an accidental quadratic loop) without ever failing on noise; the exact
figures catch everything else.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from perfkit.reporting._figures import (
    DIGITS,
    flat_figures,
    is_duration,
    is_exact,
)

DEFAULT_TOLERANCE = 0.001
DEFAULT_CPU_THRESHOLD = 1.0
DEFAULT_CPU_MINIMUM = 0.02
SPREAD_MULTIPLIER = 4
ABSOLUTE_SLACK = 10.0**-DIGITS
"""Figures are rounded to this; a difference below it is rounding, not a regression."""
UNGATED_STATISTICS = frozenset({"count"})


@dataclass(frozen=True)
class GateSettings:
    """How strict the gate is."""

    tolerance: float = DEFAULT_TOLERANCE
    cpu_threshold: float = DEFAULT_CPU_THRESHOLD
    cpu_minimum: float = DEFAULT_CPU_MINIMUM

    def __post_init__(self) -> None:
        for name in ("tolerance", "cpu_threshold", "cpu_minimum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")

    def as_dict(self) -> dict[str, float]:
        return {
            "tolerance": self.tolerance,
            "cpu_threshold": self.cpu_threshold,
            "cpu_minimum": self.cpu_minimum,
        }


@dataclass(frozen=True)
class Change:
    """One figure that moved past what the gate allows (worse or better)."""

    benchmark: str
    figure: str
    baseline: float
    current: float
    allowed: float
    """The largest relative rise (or fall, for higher-is-better figures) allowed."""
    higher_is_better: bool = False

    @property
    def change(self) -> float:
        """The relative change, current over baseline minus one (inf from a zero baseline)."""
        if self.baseline == 0:
            return 0.0 if self.current == 0 else math.copysign(math.inf, self.current)
        return self.current / self.baseline - 1

    def message(self) -> str:
        verb = "rose" if self.current > self.baseline else "fell"
        limit = (
            "counters may not " + ("fall" if self.higher_is_better else "grow")
            if self.figure.startswith("counters.")
            else f"allowed: {'-' if self.higher_is_better else '+'}{self.allowed:.1%}"
        )
        return (
            f"{self.benchmark}: {self.figure} {verb} from {_value(self.figure, self.baseline)} "
            f"to {_value(self.figure, self.current)} ({_percent(self.change)}; {limit})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "figure": self.figure,
            "baseline": self.baseline,
            "current": self.current,
            "change": None if math.isinf(self.change) else round(self.change, 6),
            "allowed": round(self.allowed, 6),
            "message": self.message(),
        }


@dataclass
class GateOutcome:
    """What the gate found: regressions fail it; everything else is for information."""

    regressions: list[Change] = field(default_factory=list)
    improvements: list[Change] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Benchmarks or figures that could not be compared, with the reason."""

    @property
    def passed(self) -> bool:
        return not self.regressions

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "pass" if self.passed else "fail",
            "regressions": [change.as_dict() for change in self.regressions],
            "improvements": [change.as_dict() for change in self.improvements],
            "new": list(self.new),
            "missing": list(self.missing),
            "not_run": list(self.not_run),
            "skipped": list(self.skipped),
        }


def compare(
    entries: Mapping[str, Mapping[str, Any]],
    baseline: Mapping[str, Any],
    *,
    settings: GateSettings | None = None,
    calibration_spread: float = 0.0,
    collected: Collection[str] | None = None,
) -> GateOutcome:
    """Gate this run's benchmark ``entries`` against a loaded ``baseline`` document.

    ``collected`` is every benchmark id this run collected (selected or not): a baseline
    benchmark that was collected but not measured was deselected or skipped ("not run"),
    one whose file ran but that was not collected no longer exists ("missing"). Without
    it, every unmeasured baseline benchmark counts as not run."""
    settings = settings or GateSettings()
    outcome = GateOutcome()
    expected: Mapping[str, Mapping[str, Any]] = baseline["benchmarks"]
    noise = max(calibration_spread, float(baseline.get("calibration", {}).get("spread", 0.0)))
    for nodeid in sorted(entries):
        if nodeid not in expected:
            outcome.new.append(nodeid)
            continue
        _compare_entry(nodeid, entries[nodeid], expected[nodeid], settings, noise, outcome)
    files = {_file_of(nodeid) for nodeid in collected or ()}
    for nodeid in sorted(set(expected) - set(entries)):
        if collected is not None and nodeid not in collected and _file_of(nodeid) in files:
            outcome.missing.append(nodeid)
        elif collected is None or nodeid in collected:
            outcome.not_run.append(nodeid)
    return outcome


def _compare_entry(
    nodeid: str,
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    settings: GateSettings,
    noise: float,
    outcome: GateOutcome,
) -> None:
    if current.get("clock") != baseline.get("clock"):
        outcome.skipped.append(
            f"{nodeid}: measured on the {current.get('clock')} clock, the baseline on the "
            f"{baseline.get('clock')} clock (not comparable)"
        )
        return
    now, then = flat_figures(current), flat_figures(baseline)
    better_higher = set(current.get("higher_is_better", ())) | set(
        baseline.get("higher_is_better", ())
    )
    for figure in sorted(then):
        if not is_exact(baseline, figure) or figure.rpartition(".")[2] in UNGATED_STATISTICS:
            continue
        if figure not in now:
            outcome.skipped.append(f"{nodeid}: {figure} is in the baseline but was not measured")
            continue
        higher = figure.startswith("counters.") and figure.partition(".")[2] in better_higher
        allowed = 0.0 if figure.startswith("counters.") else settings.tolerance
        _judge(Change(nodeid, figure, then[figure], now[figure], allowed, higher), outcome)
    _compare_cpu(nodeid, current, baseline, settings, noise, outcome)


def _judge(change: Change, outcome: GateOutcome) -> None:
    slack = ABSOLUTE_SLACK + abs(change.baseline) * change.allowed
    worse = (
        change.baseline - change.current
        if change.higher_is_better
        else change.current - change.baseline
    )
    if worse > slack:
        outcome.regressions.append(change)
    elif -worse > slack:
        outcome.improvements.append(change)


def _compare_cpu(
    nodeid: str,
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    settings: GateSettings,
    noise: float,
    outcome: GateOutcome,
) -> None:
    now, then = current.get("cpu", {}), baseline.get("cpu", {})
    if "normalized" not in now or "normalized" not in then:
        return
    if now.get("median", 0.0) < settings.cpu_minimum or then["normalized"] <= 0:
        return  # too little CPU to tell from noise
    spread = max(noise, float(now.get("spread", 0.0)), float(then.get("spread", 0.0)))
    allowed = max(settings.cpu_threshold, SPREAD_MULTIPLIER * spread)
    change = Change(nodeid, "cpu.normalized", then["normalized"], now["normalized"], allowed)
    if change.current > change.baseline * (1 + allowed):
        outcome.regressions.append(change)


def _file_of(nodeid: str) -> str:
    return nodeid.partition("::")[0]


def _value(figure: str, value: float) -> str:
    if figure == "cpu.normalized":
        return f"{value:,.3g} calibration units"
    if is_duration(figure):
        return f"{value * 1000:,.3f} ms"
    return f"{value:,g}"


def _percent(change: float) -> str:
    if math.isinf(change):
        return "from zero"
    return f"{change:+,.1%}"
