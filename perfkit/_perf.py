"""The machinery behind the ``perf`` fixture: async-aware benchmarks on a perfkit clock."""

from __future__ import annotations

import asyncio
import difflib
import gc
import inspect
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from perfkit._calibration import (
    REPEATS_AROUND_A_BENCHMARK,
    Calibration,
    summarise,
    time_workload,
)
from perfkit._clock import Clock
from perfkit._defaults import ClockMode
from perfkit._errors import PerfkitError
from perfkit._profiling import BenchmarkProfiler, ProfileFiles
from perfkit._validation import check_count

PERCENTILES = (50, 90, 95, 99)
OBSERVED = "observed"
"""The name of the series ``perf.observe(seconds)`` records into by default."""
RESERVED_SERIES = frozenset({OBSERVED, "modeled", "wall", "cpu", "counters"})
Better = Literal["lower", "higher"]
BETTER: tuple[Better, ...] = ("lower", "higher")
T = TypeVar("T")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` by linear interpolation between closest ranks
    (NumPy's default, Hyndman & Fan type 7).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q!r}")
    if not values:
        raise ValueError("percentile of an empty sequence is undefined")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Distribution:
    """Summary statistics of a list of durations in seconds."""

    values: tuple[float, ...]

    @property
    def count(self) -> int:
        return len(self.values)

    def percentile(self, q: float) -> float:
        return percentile(self.values, q)

    def as_dict(self, digits: int | None = None) -> dict[str, float | int]:
        """min, max, mean, total and the percentiles; ``digits`` rounds every figure."""
        if not self.values:
            return {"count": 0}
        figures: dict[str, float] = {
            "min": min(self.values),
            "max": max(self.values),
            "mean": math.fsum(self.values) / len(self.values),
            "total": math.fsum(self.values),
        }
        figures.update({f"p{q}": self.percentile(q) for q in PERCENTILES})
        if digits is not None:
            figures = {key: round(value, digits) for key, value in figures.items()}
        return {"count": len(self.values), **figures}


class Counters:
    """Named counters a benchmark reports as deltas (API requests, cache hits, ...).

    Fixtures register a source (a callable returning the current total); the ``perf``
    fixture reads every source before and after the measured rounds.

    >>> counters = Counters()
    >>> hits = [0]
    >>> counters.track("cache_hits", lambda: hits[0])
    >>> before = counters.snapshot(); hits[0] += 3
    >>> counters.delta(before)
    {'cache_hits': 3}
    """

    def __init__(self) -> None:
        self._sources: dict[str, Callable[[], float]] = {}
        self._better: dict[str, Better] = {}
        self._lock = threading.Lock()

    def track(self, name: str, source: Callable[[], float], *, better: Better = "lower") -> None:
        """Report ``source()`` (a running total) as counter ``name``. ``better`` says which
        way is an improvement: most counters count a cost (requests, connections), so
        ``"lower"``; a hit rate is ``"higher"``. The regression gate reads it."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a counter needs a non-empty name, got {name!r}")
        if not callable(source):
            raise TypeError(f"counter {name!r} needs a callable source, got {source!r}")
        if better not in BETTER:
            raise ValueError(f"better must be one of {', '.join(BETTER)}; got {better!r}")
        with self._lock:
            self._sources[name] = source
            self._better[name] = better

    def better(self, name: str) -> Better:
        """Which way counter ``name`` improves: ``"lower"`` or ``"higher"``."""
        with self._lock:
            return self._better.get(name, "lower")

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            sources = dict(self._sources)
        return {name: source() for name, source in sources.items()}

    def delta(self, before: Mapping[str, float]) -> dict[str, float]:
        after = self.snapshot()
        return {name: value - before.get(name, 0) for name, value in sorted(after.items())}

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._sources


@dataclass
class PerfResult:
    """What one ``perf`` benchmark measured."""

    name: str
    clock: ClockMode
    modeled: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    """Named series of latencies (``perf.observe(seconds, series=name)``)."""
    higher_is_better: frozenset[str] = frozenset()
    """The counters that improve when they grow (a hit rate)."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """What produced the figures (a workload's settings), shown in the report."""
    calibration: Calibration | None = None
    """The CPU calibration timed around the rounds (``Perf(calibrate=True)``)."""
    profiled: bool = False
    """Whether a profiler ran during the rounds (its CPU time is then no measure)."""

    @property
    def rounds(self) -> int:
        return len(self.modeled)

    def to_plain(self) -> dict[str, Any]:
        """Every figure as plain data (lists, dicts, numbers), as a pytest-xdist worker
        hands it to the controller; :meth:`from_plain` rebuilds the result."""
        return {
            "name": self.name,
            "clock": self.clock,
            "modeled": list(self.modeled),
            "wall": list(self.wall),
            "cpu": list(self.cpu),
            "samples": list(self.samples),
            "counters": dict(self.counters),
            "series": {name: list(values) for name, values in self.series.items()},
            "higher_is_better": sorted(self.higher_is_better),
            "parameters": dict(self.parameters),
            "calibration": None if self.calibration is None else self.calibration.as_dict(),
            "profiled": self.profiled,
        }

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> PerfResult:
        calibration = data["calibration"]
        return cls(
            name=data["name"],
            clock=data["clock"],
            modeled=list(data["modeled"]),
            wall=list(data["wall"]),
            cpu=list(data["cpu"]),
            samples=list(data["samples"]),
            counters=dict(data["counters"]),
            series={name: list(values) for name, values in data["series"].items()},
            higher_is_better=frozenset(data["higher_is_better"]),
            parameters=dict(data["parameters"]),
            calibration=None if calibration is None else Calibration(**calibration),
            profiled=bool(data["profiled"]),
        )

    def all_series(self) -> dict[str, list[float]]:
        """Every observed series by name: the default one first, if anything was observed."""
        found = {OBSERVED: self.samples} if self.samples else {}
        return {**found, **self.series}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what lands in pytest-benchmark's ``extra_info``)."""
        return {
            "clock": self.clock,
            "rounds": self.rounds,
            "modeled": Distribution(tuple(self.modeled)).as_dict(digits=6),
            "wall": Distribution(tuple(self.wall)).as_dict(),
            "cpu": Distribution(tuple(self.cpu)).as_dict(),
            "samples": Distribution(tuple(self.samples)).as_dict(digits=6),
            "series": {
                name: Distribution(tuple(values)).as_dict(digits=6)
                for name, values in self.series.items()
            },
            "counters": dict(self.counters),
        }


class _RoundTimer:
    """pytest-benchmark's timer for ``perf``: reads 0 before a round and the round's
    modeled seconds after it, so the recorded duration is exact (no float drift from
    subtracting two large clock readings)."""

    def __init__(self, mode: ClockMode) -> None:
        self._mode = mode
        self._duration: float | None = None

    def finish(self, seconds: float) -> None:
        self._duration = seconds

    def __call__(self) -> float:
        duration, self._duration = self._duration, None
        return 0.0 if duration is None else duration

    def __repr__(self) -> str:
        return f"perfkit.{self._mode}_clock"


class PerfUsageError(PerfkitError, TypeError, ValueError):
    """``perf`` was called the wrong way (the plugin reports it as one line naming the fix)."""


class Perf:
    """Benchmarks a sync callable or a coroutine function on a perfkit clock.

    Under the virtual clock it records modeled seconds (exact, the same on every run)
    and, separately, the real wall and CPU seconds the code took. Use it as the
    ``perf`` fixture::

        def test_three_calls(perf, anthropic_sim):
            result = perf(make_three_calls, rounds=5)
            assert perf.result.modeled == [0.9] * 5

    ``benchmark`` is pytest-benchmark's fixture, or None: with one, the rounds are also
    recorded into it (its table and JSON show the modeled seconds of each round); a
    callable returning it (``benchmark_factory``) fetches it only when perf is used.
    """

    def __init__(
        self,
        benchmark: Any,
        clock: Clock,
        counters: Counters | None = None,
        *,
        profiler: BenchmarkProfiler | None = None,
        calibrate: bool = False,
        benchmark_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._benchmark = benchmark
        self._benchmark_factory = benchmark_factory
        self.clock = clock
        self.counters = counters if counters is not None else Counters()
        self.result = PerfResult(name=str(getattr(benchmark, "name", "perf")), clock=clock.mode)
        self._used = False
        self._recording = False
        self._profiler = profiler
        self._calibrate = calibrate
        self.result.profiled = profiler is not None
        self.profile_files: ProfileFiles | None = None

    def __call__(
        self,
        function: Callable[..., Any],
        *args: Any,
        rounds: int = 1,
        warmup_rounds: int = 0,
        setup: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``function(*args, **kwargs)`` ``rounds`` times (after ``warmup_rounds``
        unmeasured ones) and return the last result. Coroutine functions run in a new
        event loop per round, on the clock. ``setup`` (sync or async) runs before every
        round, outside the measurement and the counters."""
        _check_target("the function to benchmark", function)
        _check_keywords(function, kwargs)
        if setup is not None:
            _check_target("setup", setup)
        try:
            check_count("rounds", rounds)
            check_count("warmup_rounds", warmup_rounds, minimum=0)
        except ValueError as error:
            raise PerfUsageError(f"perf: {error}") from None
        if self._used:
            raise PerfUsageError("perf can run one benchmark per test; split the test in two")
        if in_event_loop():
            raise PerfUsageError(
                "perf runs coroutines in event loops of its own, so call it from a "
                "synchronous test (def test_...), not from inside a running event loop"
            )
        self._used = True
        if self._benchmark is None and self._benchmark_factory is not None:
            self._benchmark = self._benchmark_factory()
        for _ in range(warmup_rounds):
            if setup is not None:
                self._call(setup, (), {})
            self._call(function, args, kwargs)
        timer = _RoundTimer(self.clock.mode)
        counted: dict[str, float] = {}
        calibration = self._time_calibration()

        def measured_round() -> Any:
            if setup is not None:
                self._call(setup, (), {})
            before = self.counters.snapshot()
            # The objects made before the round (the whole test run's: modules, fixtures,
            # earlier tests' leftovers) are frozen out of the collector's reach, so a full
            # collection that falls inside the round costs what the round made, not what
            # the run made before it (one such collection tripled a benchmark's CPU).
            # Freezing costs nothing; collecting first would cost a full collection.
            gc.freeze()
            self._recording = True
            start_modeled = self.clock.now()
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            try:
                if self._profiler is None:
                    value = self._call(function, args, kwargs)
                else:
                    value = self._profiler.runcall(self._call, function, args, kwargs)
            finally:
                cpu = time.process_time() - start_cpu
                wall = time.perf_counter() - start_wall
                gc.unfreeze()
                modeled = self.clock.elapsed(start_modeled)
                self._recording = False
                for name, delta in self.counters.delta(before).items():
                    counted[name] = counted.get(name, 0) + delta
            self.result.modeled.append(modeled)
            self.result.wall.append(wall)
            self.result.cpu.append(cpu)
            timer.finish(modeled)
            return value

        try:
            if self._benchmark is None:
                value = None
                for _ in range(rounds):
                    value = measured_round()
            elif getattr(self._benchmark, "disabled", False):
                # pytest-benchmark runs a disabled benchmark's target once; perf keeps its
                # rounds, since its figures (modeled time, counters) are what tests assert.
                def every_round() -> Any:
                    return [measured_round() for _ in range(rounds)][-1]

                value = self._benchmark.pedantic(every_round, rounds=1, iterations=1)
            else:
                self._benchmark._timer = timer
                value = self._benchmark.pedantic(measured_round, rounds=rounds, iterations=1)
        finally:
            calibration += self._time_calibration()
            self.result.calibration = summarise(calibration) if calibration else None
            self.result.counters = dict(sorted(counted.items()))
            self.result.higher_is_better = frozenset(
                name for name in counted if self.counters.better(name) == "higher"
            )
            if self._benchmark is not None:
                self._benchmark.extra_info["perfkit"] = self.result.as_dict()
            if self._profiler is not None:
                self.profile_files = self._profiler.write()
        return value

    def _time_calibration(self) -> list[float]:
        """The CPU calibration workload, timed beside the rounds when asked for: the gate
        divides CPU seconds by it, so a machine busier during this benchmark than during
        the baseline's does not read as slower code."""
        return time_workload(REPEATS_AROUND_A_BENCHMARK) if self._calibrate else []

    def observe(self, seconds: float, *, series: str = OBSERVED) -> None:
        """Record the latency of one operation inside a measured round (for percentiles
        over requests rather than over rounds); ignored during warm-up rounds. A named
        ``series`` keeps a second kind of latency apart (time to the complete reply)."""
        if not 0 <= seconds < math.inf:
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        if series != OBSERVED and (series in RESERVED_SERIES or not series.isidentifier()):
            raise ValueError(
                f"series must be a Python identifier other than "
                f"{', '.join(sorted(RESERVED_SERIES - {OBSERVED}))}; got {series!r}"
            )
        if not self._recording:
            return
        if series == OBSERVED:
            self.result.samples.append(float(seconds))
        else:
            self.result.series.setdefault(series, []).append(float(seconds))

    def describe(self, **parameters: Any) -> None:
        """Record what produced this benchmark's figures (shown in the report's JSON):
        numbers, strings, booleans, None, and lists and dicts of them."""
        try:
            json.dumps(parameters, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise PerfUsageError(
                f"perf.describe takes JSON values (numbers, strings, lists, dicts): {error}"
            ) from None
        self.result.parameters.update(parameters)

    def _call(self, function: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        value = function(*args, **kwargs)
        if inspect.isawaitable(value):
            value = self.clock.run(_awaited(value))
        return value


PERF_KEYWORDS = ("rounds", "warmup_rounds", "setup")


def _check_keywords(function: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """A misspelt perf option (``round=3``) would go to the function: refuse it when the
    function takes no such keyword."""
    for name in kwargs:
        close = difflib.get_close_matches(name, PERF_KEYWORDS, n=1, cutoff=0.7)
        if close and not _takes_keyword(function, name):
            raise PerfUsageError(
                f"perf got {name}={kwargs[name]!r}, which {_name(function)} does not take: "
                f"did you mean {close[0]}=?"
            )


def _takes_keyword(function: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return True
    # Only a parameter of that name: a close miss of rounds= sent on through **kwargs would
    # run one round without a word.
    return name in parameters


def _name(function: object) -> str:
    return str(getattr(function, "__qualname__", type(function).__name__))


def _check_target(what: str, target: object) -> None:
    """A callable to run each round: a coroutine object (``perf(fetch())``) runs once at
    most, so it is refused with the fix, and closed so it warns of nothing."""
    if inspect.isawaitable(target):
        if inspect.iscoroutine(target):
            target.close()
        name = getattr(target, "__qualname__", type(target).__name__)
        raise PerfUsageError(
            f"perf got {what} as an awaitable ({name}), which runs once at most: pass the "
            f"function, not its call: perf({name.rpartition('.')[2]}, ...) rather than "
            f"perf({name.rpartition('.')[2]}(), ...)"
        )
    if not callable(target):
        raise PerfUsageError(f"perf needs {what} as a callable; got {target!r}")


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def in_event_loop() -> bool:
    """Whether the caller runs inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
