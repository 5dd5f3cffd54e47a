"""One benchmark's figures as JSON: what the report shows and the baseline keeps.

An entry groups figures by kind. ``modeled`` (seconds per round on the benchmark's
clock), each observed series (latencies recorded with ``perf.observe``) and
``counters`` are exact under the virtual clock; ``cpu`` and ``wall`` are real seconds
and vary between runs. A figure is named ``"<group>.<statistic>"``: ``modeled.mean``,
``observed.p95``, ``counters.api_requests``, ``cpu.normalized``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

from perfkit._calibration import Calibration, relative_spread
from perfkit._errors import BaselineError
from perfkit._perf import Distribution, PerfResult

DIGITS = 6
"""Exact figures are rounded to the microsecond, which the latency models are quantised to."""
MODELED_STATISTICS = ("mean", "p50", "p95", "p99", "max")
SERIES_STATISTICS = ("count", "mean", "p50", "p90", "p95", "p99", "max")
REAL_GROUPS = frozenset({"cpu", "wall"})
EXACT_GROUPS = frozenset({"modeled", "counters"})


def benchmark_entry(result: PerfResult, calibration: Calibration) -> dict[str, Any]:
    """The JSON figures of one ``perf`` benchmark; its CPU time in units of the calibration
    timed around its rounds, else of the run's ``calibration``."""
    cpu = statistics.median(result.cpu)
    calibration = result.calibration or calibration
    entry: dict[str, Any] = {
        "clock": result.clock,
        "rounds": result.rounds,
        "modeled": _statistics(result.modeled, MODELED_STATISTICS),
        "series": {
            name: _statistics(values, SERIES_STATISTICS)
            for name, values in result.all_series().items()
        },
        "counters": {name: _number(value) for name, value in result.counters.items()},
        "higher_is_better": sorted(result.higher_is_better),
        "cpu": {
            "median": round(cpu, DIGITS),
            "normalized": round(cpu / calibration.seconds, 3) if calibration.seconds else 0.0,
            "spread": max(relative_spread(result.cpu), calibration.spread),
        },
        "wall": {"median": round(statistics.median(result.wall), DIGITS)},
    }
    parameters = dict(result.parameters)
    if USD_PRICES in parameters:
        entry["prices"] = str(parameters.pop(USD_PRICES))
    if parameters:
        entry["parameters"] = parameters
    if result.profiled:
        entry["profiled"] = True
    return entry


def flat_figures(entry: Mapping[str, Any]) -> dict[str, float]:
    """Every figure of an entry by its dotted name (``observed.p95``)."""
    figures = {f"modeled.{name}": value for name, value in entry.get("modeled", {}).items()}
    for series, values in entry.get("series", {}).items():
        figures.update({f"{series}.{name}": value for name, value in values.items()})
    figures.update({f"counters.{name}": value for name, value in entry.get("counters", {}).items()})
    for group in sorted(REAL_GROUPS):
        figures.update({f"{group}.{name}": value for name, value in entry.get(group, {}).items()})
    return figures


def is_exact(entry: Mapping[str, Any], figure: str) -> bool:
    """Whether a figure is the same on every run: counters always, modeled and observed
    figures under the virtual clock; real CPU and wall seconds never."""
    group = figure.partition(".")[0]
    if group in REAL_GROUPS:
        return False
    return group == "counters" or entry.get("clock") == "virtual"


MONEY_FIGURES = frozenset({"counters.usd"})
"""Figures in US dollars: the cost of the simulated usage a benchmark caused."""
USD_PRICES = "usd prices"
"""The parameter (an entry's ``prices`` field) naming the price file a benchmark's cost was
made with: absent for perfkit's shipped prices."""
FALLBACK_PRICED = "usd priced by the fallback row"
"""The parameter naming the models a benchmark's cost was guessed for (no price known)."""


def fallback_priced(entry: Mapping[str, Any]) -> str | None:
    """The models an entry's usd priced by the fallback row, as the report names them (a
    baseline keeps them as ``fallback_priced``); None when every model had a price."""
    kept = entry.get("fallback_priced", entry.get("parameters", {}).get(FALLBACK_PRICED))
    return None if kept is None else str(kept)


def money_text(value: float) -> str:
    """Dollars as the meter rounds them: six decimals (``$0.012345``)."""
    return f"${value:,.6f}"


def is_duration(figure: str) -> bool:
    """Whether a figure is in seconds (everything but counts, counters and ratios)."""
    group, _, name = figure.partition(".")
    return group != "counters" and name not in {"count", "normalized", "spread"}


def non_finite(document: Any) -> tuple[str, str] | None:
    """Where a JSON-like document holds NaN or an infinity, and which (``("<benchmark>:
    counters.hits", "NaN")``); None when every number in it is finite."""
    found = _first_non_finite(document, ())
    if found is None:
        return None
    path, value = found
    constant = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return _location(path), constant


def require_finite(document: Any, source: str) -> None:
    """BaselineError naming the first NaN or infinite number in ``document``: JSON cannot
    hold it, and no comparison can gate it (``NaN > x`` is always false)."""
    found = non_finite(document)
    if found is not None:
        location, constant = found
        raise BaselineError(
            f"{source}: {location} is {constant}; every figure must be a finite number"
        )


def _first_non_finite(document: Any, path: tuple[str, ...]) -> tuple[tuple[str, ...], float] | None:
    if isinstance(document, float):
        return None if math.isfinite(document) else (path, document)
    items: Any
    if isinstance(document, Mapping):
        items = document.items()
    elif isinstance(document, list | tuple):
        items = enumerate(document)
    else:
        return None
    for key, value in items:
        found = _first_non_finite(value, (*path, str(key)))
        if found is not None:
            return found
    return None


def _location(path: tuple[str, ...]) -> str:
    """A figure of a benchmark by its name (``<node id>: observed.p95``), anything else by
    its path in the document (``calibration/seconds``)."""
    if len(path) == 5 and path[0] == "benchmarks" and path[2] == "series":
        return f"{path[1]}: {path[3]}.{path[4]}"
    if len(path) == 4 and path[0] == "benchmarks":
        return f"{path[1]}: {path[2]}.{path[3]}"
    return "/".join(path) or "top level"


def _statistics(values: list[float], names: tuple[str, ...]) -> dict[str, float]:
    figures = Distribution(tuple(values)).as_dict(digits=DIGITS)
    return {name: figures[name] for name in names if name in figures}


def _number(value: float) -> float:
    """Counters as ints when they are whole (``15``, not ``15.0``), for a readable file."""
    return int(value) if float(value).is_integer() else round(value, DIGITS)
