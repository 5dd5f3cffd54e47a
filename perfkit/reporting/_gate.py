"""The regression gate: this run's figures against a committed baseline.

Exact figures (modeled seconds, observed latencies under the virtual clock, counters)
are the same on every run and every machine, so their gate is strict: a figure may not
exceed its baseline by more than ``tolerance`` (0.1% by default), and a counter may not
grow at all (or fall, for a counter where higher is better, such as a hit rate).

Real CPU time is gated noise-aware. It is compared in calibration units (CPU seconds
over the CPU seconds of a fixed workload timed right before and right after the
benchmark's rounds), only for benchmarks that use at least ``cpu_minimum`` seconds per
round, and beyond the drift of the whole run: with five or more such benchmarks, the
median of their ratios (now over baseline) is how much the machine moved (a busy
sibling hyperthread slows memory-heavy code more than the calibration loop), and a
benchmark fails only if it rose by more than the larger of ``cpu_threshold`` (100%: its
CPU time doubled) and four times the relative spread observed (across the run's
ratios, a benchmark's rounds and its calibration's repeats) beyond that drift. It
catches a benchmark whose CPU time blew up (an accidental quadratic loop) without
failing on noise; a slowdown shared by every benchmark looks like a slower machine and
is left to the exact figures.

The gate is strict about what it cannot compare: a benchmark new to the run, one missing
from it (its file is gone, or was collected in full without it), and one no longer
comparable (its rounds or its clock changed, a figure appeared or vanished) fail it, since
each could hide a regression (a renamed benchmark is new and missing at once). The way
past is a refreshed baseline in the same change, which a pull request shows
(:func:`perfkit.reporting.baseline_changes`); ``allow_unmatched`` lists them without
failing. A benchmark merely deselected or skipped is "not run", never a failure. A gate
that compared nothing is neither a pass nor a failure: its status is ``"empty"``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from perfkit._calibration import relative_spread
from perfkit._defaults import DEFAULT_CPU_MINIMUM, DEFAULT_CPU_THRESHOLD, DEFAULT_TOLERANCE
from perfkit._errors import BaselineError
from perfkit.reporting._figures import (
    DIGITS,
    MONEY_FIGURES,
    fallback_priced,
    flat_figures,
    is_duration,
    is_exact,
    money_text,
    require_finite,
)

SPREAD_MULTIPLIER = 4
MIN_BENCHMARKS_FOR_DRIFT = 5
ABSOLUTE_SLACK = 10.0**-DIGITS
"""Figures are rounded to this; a difference below it is rounding, not a regression."""


REFRESH_HINT = "refresh the baseline in this change with --perfkit-update-baseline"
GateStatus = Literal["pass", "fail", "empty"]
GateResultStatus = Literal["pass", "fail", "empty", "updated"]


@dataclass(frozen=True)
class GateSettings:
    """How strict the gate is. ``allow_unmatched`` lists benchmarks that are new, missing
    or no longer comparable without failing on them."""

    tolerance: float = DEFAULT_TOLERANCE
    cpu_threshold: float = DEFAULT_CPU_THRESHOLD
    cpu_minimum: float = DEFAULT_CPU_MINIMUM
    allow_unmatched: bool = False

    def __post_init__(self) -> None:
        for name in ("tolerance", "cpu_threshold", "cpu_minimum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.allow_unmatched, bool):
            raise TypeError(f"allow_unmatched must be True or False, got {self.allow_unmatched!r}")

    def as_dict(self) -> dict[str, float | bool]:
        return {
            "tolerance": self.tolerance,
            "cpu_threshold": self.cpu_threshold,
            "cpu_minimum": self.cpu_minimum,
            "allow_unmatched": self.allow_unmatched,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateSettings:
        """The settings a report's gate section records (missing ones at their default)."""
        names = ("tolerance", "cpu_threshold", "cpu_minimum", "allow_unmatched")
        return cls(**{name: data[name] for name in names if name in data})


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
    drift: float = 1.0
    """For CPU time: how much this whole run's CPU times moved (the median ratio), which
    the allowance is measured beyond."""

    @property
    def change(self) -> float:
        """The relative change, current over baseline minus one (inf from a zero baseline)."""
        if self.baseline == 0:
            return 0.0 if self.current == 0 else math.copysign(math.inf, self.current)
        return self.current / self.baseline - 1

    def message(self) -> str:
        verb = "rose" if self.current >= self.baseline else "fell"
        limit = (
            "counters may not " + ("fall" if self.higher_is_better else "grow")
            if self.figure.startswith("counters.")
            else f"allowed: {'-' if self.higher_is_better else '+'}{self.allowed:.1%}"
        )
        drift = (
            f", {_percent((1 + self.change) / self.drift - 1)} beyond this run's CPU drift of "
            f"{_percent(self.drift - 1)}"
            if self.drift != 1 and not math.isinf(self.change)
            else ""
        )
        return (
            f"{self.benchmark}: {self.figure} {verb} from {value_text(self.figure, self.baseline)} "
            f"to {value_text(self.figure, self.current)} ({_percent(self.change)}{drift}; {limit})"
        )

    def record(self) -> FigureChange:
        """The change as a report records it."""
        return FigureChange(
            benchmark=self.benchmark,
            figure=self.figure,
            baseline=self.baseline,
            current=self.current,
            change=None if math.isinf(self.change) else round(self.change, 6),
            allowed=round(self.allowed, 6),
            message=self.message(),
        )


@dataclass(frozen=True)
class FigureChange:
    """A figure the gate found moved, as a report records it: ``change`` is the relative
    change (None from a zero baseline), ``allowed`` the largest one the gate allowed."""

    benchmark: str
    figure: str
    baseline: float
    current: float
    change: float | None
    allowed: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "figure": self.figure,
            "baseline": self.baseline,
            "current": self.current,
            "change": self.change,
            "allowed": self.allowed,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FigureChange:
        return cls(
            benchmark=data["benchmark"],
            figure=data["figure"],
            baseline=data["baseline"],
            current=data["current"],
            change=data["change"],
            allowed=data["allowed"],
            message=data["message"],
        )


@dataclass(frozen=True)
class GateResult:
    """The gate's section of a report: which ``baseline`` file, with which ``settings``,
    its ``status`` (``"pass"``, ``"fail"``, ``"empty"`` when nothing was compared, or
    ``"updated"`` when the run refreshed the baseline instead), and what it found."""

    baseline: str
    settings: GateSettings
    status: GateResultStatus
    compared: int = 0
    regressions: tuple[FigureChange, ...] = ()
    improvements: tuple[FigureChange, ...] = ()
    new: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    not_run: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    reason: str | None = None
    """Why nothing was gated (status ``"empty"``)."""

    @classmethod
    def nothing_gated(
        cls, baseline: str, reason: str, settings: GateSettings | None = None
    ) -> GateResult:
        """A run that gated nothing against ``baseline``, saying why."""
        return cls(baseline, settings or GateSettings(), "empty", reason=reason)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "baseline": self.baseline,
            "settings": self.settings.as_dict(),
            "status": self.status,
            "compared": self.compared,
            "regressions": [change.to_json() for change in self.regressions],
            "improvements": [change.to_json() for change in self.improvements],
            "new": list(self.new),
            "missing": list(self.missing),
            "not_run": list(self.not_run),
            "skipped": list(self.skipped),
        }
        if self.reason is not None:
            document["reason"] = self.reason
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(
            baseline=data["baseline"],
            settings=GateSettings.from_json(data.get("settings", {})),
            status=data["status"],
            compared=data.get("compared", 0),
            regressions=tuple(FigureChange.from_json(c) for c in data["regressions"]),
            improvements=tuple(FigureChange.from_json(c) for c in data["improvements"]),
            new=tuple(data["new"]),
            missing=tuple(data["missing"]),
            not_run=tuple(data["not_run"]),
            skipped=tuple(data["skipped"]),
            reason=data.get("reason"),
        )


@dataclass
class GateOutcome:
    """What the gate found: regressions fail it, and so do benchmarks it could not match
    with the baseline (new, missing, or no longer comparable) unless ``allow_unmatched``;
    improvements and benchmarks not run are for information."""

    regressions: list[Change] = field(default_factory=list)
    improvements: list[Change] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Benchmarks or figures that could not be compared, with the reason."""
    compared: list[str] = field(default_factory=list)
    """The benchmarks whose figures were compared with their baseline entry."""
    allow_unmatched: bool = False

    @property
    def unmatched(self) -> bool:
        """Whether some benchmark or figure could not be matched with the baseline."""
        return bool(self.new or self.missing or self.skipped)

    @property
    def status(self) -> GateStatus:
        """``"fail"``, ``"empty"`` (nothing was compared: not a pass) or ``"pass"``."""
        if self.regressions or (self.unmatched and not self.allow_unmatched):
            return "fail"
        return "pass" if self.compared else "empty"

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def result(self, baseline: str, settings: GateSettings) -> GateResult:
        """The report's gate section: this outcome against ``baseline``."""
        return GateResult(
            baseline=baseline,
            settings=settings,
            status=self.status,
            compared=len(self.compared),
            regressions=tuple(change.record() for change in self.regressions),
            improvements=tuple(change.record() for change in self.improvements),
            new=tuple(self.new),
            missing=tuple(self.missing),
            not_run=tuple(self.not_run),
            skipped=tuple(self.skipped),
            reason=self._nothing_compared() if self.status == "empty" else None,
        )

    def _nothing_compared(self) -> str:
        if self.new or self.skipped:
            return "none of this run's benchmarks could be compared with a baseline entry"
        not_run = f" ({len(self.not_run)} of its benchmarks deselected or skipped)"
        return "this run measured none of the baseline's benchmarks" + (
            not_run if self.not_run else ""
        )


@dataclass(frozen=True)
class Selection:
    """What a run covered: every benchmark id it collected (selected or deselected), the
    files it collected in full (not narrowed to some of their tests with ``file::test``),
    and, when known, the directory the ids are relative to."""

    collected: frozenset[str] = frozenset()
    complete_files: frozenset[str] = frozenset()
    root: Path | None = None

    def vanished(self, nodeid: str) -> bool:
        """Whether a benchmark no longer exists: its file is gone, or its file was
        collected in full without it."""
        file = _file_of(nodeid)
        if self.root is not None and not (self.root / file).is_file():
            return True
        return file in self.complete_files and nodeid not in self.collected


def compare(
    entries: Mapping[str, Mapping[str, Any]],
    baseline: Mapping[str, Any],
    *,
    settings: GateSettings | None = None,
    calibration_spread: float = 0.0,
    selection: Selection | None = None,
    source: str = "the baseline",
) -> GateOutcome:
    """Gate this run's benchmark ``entries`` against a loaded ``baseline`` document
    (named ``source`` in errors).

    A baseline benchmark this run did not measure is "missing" if it no longer exists
    (see :class:`Selection`), "not run" if the run collected it (deselected or skipped),
    and out of this run's scope otherwise. A baseline that shares benchmarks with the run
    but none on the same clock is a mismatch, and NaN or an infinity on either side
    cannot be gated (BaselineError)."""
    settings = settings or GateSettings()
    selection = selection or Selection()
    require_finite({"benchmarks": entries}, "this run")
    require_finite(baseline, source)
    outcome = GateOutcome(allow_unmatched=settings.allow_unmatched)
    expected: Mapping[str, Mapping[str, Any]] = baseline["benchmarks"]
    noise = max(calibration_spread, float(baseline.get("calibration", {}).get("spread", 0.0)))
    cpu_pairs = []
    shared = sorted(set(entries) & set(expected))
    for nodeid in sorted(entries):
        if nodeid not in expected:
            outcome.new.append(nodeid)
        elif _compare_entry(nodeid, entries[nodeid], expected[nodeid], settings, outcome):
            outcome.compared.append(nodeid)
            cpu_pairs.append((nodeid, entries[nodeid], expected[nodeid]))
    if shared and all(entries[n].get("clock") != expected[n].get("clock") for n in shared):
        clocks = sorted({str(expected[n].get("clock")) for n in shared})
        raise BaselineError(
            f"the baseline was measured on the {' and '.join(clocks)} clock and this run on "
            f"the {entries[shared[0]].get('clock')} clock: nothing can be compared"
        )
    _compare_cpu(cpu_pairs, settings, noise, outcome)
    for nodeid in sorted(set(expected) - set(entries)):
        if selection.vanished(nodeid):
            outcome.missing.append(nodeid)
        elif nodeid in selection.collected:
            outcome.not_run.append(nodeid)
    return outcome


def _compare_entry(
    nodeid: str,
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    settings: GateSettings,
    outcome: GateOutcome,
) -> bool:
    """Gate one benchmark's exact figures; whether its CPU time is comparable too."""
    if current.get("clock") != baseline.get("clock"):
        outcome.skipped.append(
            f"{nodeid}: measured on the {current.get('clock')} clock, the baseline on the "
            f"{baseline.get('clock')} clock (not comparable)"
        )
        return False
    if current.get("rounds") != baseline.get("rounds"):
        outcome.skipped.append(
            f"{nodeid}: measured over {current.get('rounds')} round(s), the baseline over "
            f"{baseline.get('rounds')} (counters are totals over the rounds: refresh the baseline)"
        )
        return False
    now, then = flat_figures(current), flat_figures(baseline)
    better_higher = set(current.get("higher_is_better", ())) | set(
        baseline.get("higher_is_better", ())
    )
    for figure in sorted(then):
        if not _gated(baseline, figure):
            continue
        if figure not in now:
            outcome.skipped.append(f"{nodeid}: {figure} is in the baseline but was not measured")
            continue
        if figure in MONEY_FIGURES and not _priced_alike(nodeid, current, baseline, outcome):
            continue
        higher = figure.startswith("counters.") and figure.partition(".")[2] in better_higher
        allowed = 0.0 if figure.startswith("counters.") else settings.tolerance
        _judge(Change(nodeid, figure, then[figure], now[figure], allowed, higher), outcome)
    for figure in sorted(set(now) - set(then)):
        if _gated(current, figure):
            outcome.skipped.append(f"{nodeid}: {figure} was measured but is not in the baseline")
    return True


def _priced_alike(
    nodeid: str, current: Mapping[str, Any], baseline: Mapping[str, Any], outcome: GateOutcome
) -> bool:
    """Whether two entries' usd were made with the same prices, and the same models priced
    by the fallback row; if not, the figure is not comparable (a cheaper price file, or a
    model renamed to one no row knows, would hide a cost regression)."""
    if current.get("prices") != baseline.get("prices"):
        outcome.skipped.append(
            f"{nodeid}: counters.usd was priced with {_prices_text(current)}, the baseline's "
            f"with {_prices_text(baseline)} (not comparable: run with the baseline's prices, "
            "or refresh the baseline)"
        )
        return False
    now, then = fallback_priced(current), fallback_priced(baseline)
    if now != then:
        outcome.skipped.append(
            f"{nodeid}: counters.usd was priced by the fallback row for {now or 'no model'}, "
            f"the baseline's for {then or 'no model'} (not comparable: a guessed price is "
            "no saving; price the model with --perfkit-prices, or refresh the baseline)"
        )
        return False
    return True


def _prices_text(entry: Mapping[str, Any]) -> str:
    prices = entry.get("prices")
    return "perfkit's shipped prices" if prices is None else f"the price file of {prices}"


def _gated(entry: Mapping[str, Any], figure: str) -> bool:
    """Whether the gate compares a figure of this entry exactly (how many latencies a
    series observed is not gated: more is not worse)."""
    group, _, statistic = figure.partition(".")
    return is_exact(entry, figure) and (group == "counters" or statistic != "count")


def _judge(change: Change, outcome: GateOutcome) -> None:
    # Counters may not move at all: any difference of their rounded values is one, at
    # least a unit of the last digit, which float subtraction may leave a hair below it.
    rounding = ABSOLUTE_SLACK / 2 if change.figure.startswith("counters.") else ABSOLUTE_SLACK
    slack = rounding + abs(change.baseline) * change.allowed
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
    pairs: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]],
    settings: GateSettings,
    noise: float,
    outcome: GateOutcome,
) -> None:
    """Gate CPU time in calibration units, beyond the drift of the whole run: with enough
    benchmarks to tell, the median of their ratios (now over baseline) is how much the
    machine, not the code, moved, and one benchmark must stand out from it to fail."""
    gated = [
        (nodeid, current["cpu"], baseline["cpu"])
        for nodeid, current, baseline in pairs
        if not current.get("profiled")  # a profiler multiplies CPU time
        and "normalized" in current.get("cpu", {})
        and current["cpu"].get("median", 0.0) >= settings.cpu_minimum  # less is noise
        and baseline["cpu"].get("normalized", 0.0) > 0
    ]
    ratios = [now["normalized"] / then["normalized"] for _, now, then in gated]
    drift, spread = 1.0, 0.0
    if len(ratios) >= MIN_BENCHMARKS_FOR_DRIFT:
        # Only a shared slowdown is forgiven: after an optimisation that made most
        # benchmarks cheaper, the unchanged ones must not read as slower.
        drift, spread = max(1.0, statistics.median(ratios)), relative_spread(ratios)
    for (nodeid, now, then), ratio in zip(gated, ratios, strict=True):
        noisiest = max(noise, spread, float(now.get("spread", 0.0)), float(then["spread"]))
        allowed = max(settings.cpu_threshold, SPREAD_MULTIPLIER * noisiest)
        if ratio / drift > 1 + allowed:
            outcome.regressions.append(
                Change(
                    nodeid,
                    "cpu.normalized",
                    then["normalized"],
                    now["normalized"],
                    allowed,
                    drift=round(drift, 6),
                )
            )


def _file_of(nodeid: str) -> str:
    return nodeid.partition("::")[0]


def value_text(figure: str, value: float) -> str:
    """A figure exactly enough to see a gated change (a microsecond is 0.001 ms)."""
    if figure == "cpu.normalized":
        return f"{value:,.3g} calibration units"
    if figure in MONEY_FIGURES:
        return money_text(value)
    if is_duration(figure):
        return f"{value * 1000:,.3f} ms"
    return f"{value:,g}"


def _percent(change: float) -> str:
    if math.isinf(change):
        return "from zero"
    return f"{change:+,.1%}"
