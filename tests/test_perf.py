"""Unit tests of perfkit._perf: percentiles, distributions, counters and the Perf runner."""

from __future__ import annotations

import asyncio
import gc
import math
import re
from collections.abc import Callable
from typing import Any

import pytest

from perfkit._clock import VirtualClock
from perfkit._errors import PerfkitError
from perfkit._perf import (
    PERCENTILES,
    Counters,
    Distribution,
    Perf,
    PerfResult,
    PerfUsageError,
    percentile,
)

# --- percentile ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        # rank = (n - 1) * q / 100, then linear interpolation (NumPy's default, type 7)
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([10.0, 20.0, 30.0, 40.0], 25, 17.5),  # rank 0.75
        ([10.0, 20.0, 30.0, 40.0], 75, 32.5),  # rank 2.25
        ([15.0, 20.0, 35.0, 40.0, 50.0], 40, 29.0),  # np.percentile(..., 40) == 29.0
        ([7.0, 15.0, 36.0, 39.0, 40.0, 41.0], 25, 20.25),  # rank 1.25
        ([7.0, 15.0, 36.0, 39.0, 40.0, 41.0], 50, 37.5),  # rank 2.5
        ([3.0, 1.0, 2.0], 50, 2.0),  # unsorted input, rank lands on an element
        ([5.0], 99, 5.0),
        ([2.0, 4.0], 0, 2.0),
        ([2.0, 4.0], 100, 4.0),
    ],
)
def test_percentile_matches_hand_computed_type_7_values(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == expected


def test_percentile_tail_values_interpolate_between_the_top_two() -> None:
    one_to_ten = [float(v) for v in range(1, 11)]
    # ranks 8.1, 8.55 and 8.91: np.percentile gives 9.1, 9.55 and 9.91
    assert percentile(one_to_ten, 90) == pytest.approx(9.1, abs=1e-12)
    assert percentile(one_to_ten, 95) == pytest.approx(9.55, abs=1e-12)
    assert percentile(one_to_ten, 99) == pytest.approx(9.91, abs=1e-12)
    hundred = [float(v) for v in range(1, 101)]
    assert percentile(hundred, 99) == pytest.approx(99.01, abs=1e-12)


def test_percentile_does_not_reorder_its_input() -> None:
    values = [0.3, 0.1, 0.2]
    percentile(values, 50)
    assert values == [0.3, 0.1, 0.2]


@pytest.mark.parametrize("q", [-1, 100.5, math.nan])
def test_percentile_rejects_q_outside_0_to_100(q: float) -> None:
    with pytest.raises(ValueError, match=rf"^q must be between 0 and 100, got {q!r}$"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)


# --- Distribution --------------------------------------------------------------------------------


def test_distribution_as_dict_has_every_figure() -> None:
    figures = Distribution((0.4, 0.1, 0.3, 0.2)).as_dict(digits=6)
    assert figures == {
        "count": 4,
        "min": 0.1,
        "max": 0.4,
        "mean": 0.25,
        "total": 1.0,
        "p50": 0.25,
        "p90": 0.37,
        "p95": 0.385,
        "p99": 0.397,
    }
    assert list(figures) == ["count", "min", "max", "mean", "total", "p50", "p90", "p95", "p99"]
    assert PERCENTILES == (50, 90, 95, 99)


def test_distribution_sums_exactly() -> None:
    figures = Distribution((0.1,) * 10).as_dict()
    assert figures["total"] == 1.0  # fsum; a plain sum gives 0.9999999999999999
    assert figures["mean"] == 0.1


def test_distribution_rounds_only_when_asked() -> None:
    values = (1 / 3, 2 / 3)
    assert Distribution(values).as_dict()["mean"] == 0.5
    assert Distribution(values).as_dict()["min"] == 1 / 3
    assert Distribution(values).as_dict(digits=3)["min"] == 0.333


def test_an_empty_distribution_has_only_a_count() -> None:
    empty = Distribution(())
    assert empty.count == 0
    assert empty.as_dict() == {"count": 0}
    assert empty.as_dict(digits=6) == {"count": 0}


def test_distribution_percentile_and_count() -> None:
    distribution = Distribution((1.0, 2.0, 3.0, 4.0, 5.0))
    assert distribution.count == 5
    assert distribution.percentile(50) == 3.0
    assert distribution.percentile(90) == pytest.approx(4.6, abs=1e-12)


# --- Counters -----------------------------------------------------------------------------------


def test_counters_report_deltas_sorted_by_name() -> None:
    counters = Counters()
    totals = {"requests": 5, "hits": 10}
    counters.track("requests", lambda: totals["requests"])
    counters.track("hits", lambda: totals["hits"])
    before = counters.snapshot()
    assert before == {"requests": 5, "hits": 10}
    totals["requests"] += 3
    totals["hits"] += 1
    delta = counters.delta(before)
    assert delta == {"hits": 1, "requests": 3}
    assert list(delta) == ["hits", "requests"]


def test_a_counter_tracked_after_the_snapshot_counts_from_zero() -> None:
    counters = Counters()
    before = counters.snapshot()
    counters.track("late", lambda: 7)
    assert counters.delta(before) == {"late": 7}


def test_tracking_a_name_again_replaces_its_source() -> None:
    counters = Counters()
    counters.track("tokens", lambda: 1)
    counters.track("tokens", lambda: 2)
    assert counters.snapshot() == {"tokens": 2}


def test_counters_know_their_names() -> None:
    counters = Counters()
    counters.track("api_requests", lambda: 0)
    assert "api_requests" in counters
    assert "cache_hits" not in counters


@pytest.mark.parametrize("name", ["", None, 3])
def test_a_counter_needs_a_name(name: Any) -> None:
    with pytest.raises(ValueError, match=rf"non-empty name, got {name!r}$"):
        Counters().track(name, lambda: 0)


# --- PerfResult ---------------------------------------------------------------------------------


def test_perf_result_as_dict_is_json_ready() -> None:
    result = PerfResult(
        name="test_x",
        clock="virtual",
        modeled=[0.9, 0.9, 1.2],
        wall=[0.01, 0.02, 0.03],
        cpu=[0.01, 0.01, 0.01],
        samples=[0.3] * 9,
        counters={"api_requests": 9},
        series={"complete": [1.0, 3.0]},
    )
    summary = result.as_dict()
    assert result.rounds == 3
    assert summary["clock"] == "virtual"
    assert summary["rounds"] == 3
    assert summary["modeled"]["mean"] == 1.0
    assert summary["modeled"]["p50"] == 0.9
    assert summary["modeled"]["max"] == 1.2
    assert summary["wall"]["total"] == pytest.approx(0.06)
    assert summary["cpu"]["count"] == 3
    assert summary["samples"]["count"] == 9
    assert summary["samples"]["p99"] == 0.3
    assert summary["counters"] == {"api_requests": 9}
    assert summary["series"]["complete"]["mean"] == 2.0
    assert set(summary) == {
        "clock", "rounds", "modeled", "wall", "cpu", "samples", "series", "counters",
    }  # fmt: skip


def test_an_unused_perf_result_summarises_as_empty() -> None:
    summary = PerfResult(name="t", clock="real").as_dict()
    assert summary["rounds"] == 0
    assert summary["modeled"] == {"count": 0}
    assert summary["counters"] == {}


# --- Perf with a stand-in for pytest-benchmark -----------------------------------------------


class StubBenchmark:
    """What Perf needs of pytest-benchmark's fixture: pedantic mode reading ``_timer``."""

    name = "test_stub"

    def __init__(self) -> None:
        self._timer: Callable[[], float] = lambda: 0.0
        self.extra_info: dict[str, Any] = {}
        self.durations: list[float] = []

    def pedantic(self, target: Callable[[], Any], *, rounds: int, iterations: int) -> Any:
        assert iterations == 1
        result = None
        for _ in range(rounds):
            start = self._timer()
            result = target()
            self.durations.append(self._timer() - start)
        return result


def test_perf_times_a_sync_callable_on_the_clock() -> None:
    clock = VirtualClock()
    benchmark = StubBenchmark()
    perf = Perf(benchmark, clock)

    def work(seconds: float, *, label: str) -> str:
        clock.sleep(seconds)
        return label

    assert perf(work, 0.25, label="done", rounds=4) == "done"
    assert perf.result.modeled == [0.25] * 4
    assert benchmark.durations == [0.25] * 4  # the timer hands pytest-benchmark exact figures
    assert len(perf.result.wall) == len(perf.result.cpu) == 4
    assert perf.result.name == "test_stub"
    assert perf.result.clock == "virtual"


def test_a_round_is_not_charged_for_collecting_what_the_run_made_before_it() -> None:
    # A full collection inside a round scanned every object of the test run (modules,
    # earlier tests' leftovers): by chance one benchmark's CPU tripled in a whole-suite
    # run. What was alive before the round is frozen out of the collector during it.
    heap = [[index] for index in range(200_000)]  # the run's objects, before the round
    perf = Perf(StubBenchmark(), VirtualClock())
    seen: list[int] = []

    def work() -> None:
        seen.append(gc.get_freeze_count())
        gc.collect()  # a full collection, as allocation may trigger one

    perf(work, rounds=3)
    assert min(seen) >= len(heap)
    assert gc.get_freeze_count() == 0  # and back within reach after it


def test_perf_runs_a_coroutine_function_in_virtual_time() -> None:
    clock = VirtualClock()
    perf = Perf(StubBenchmark(), clock)

    async def work() -> int:
        await asyncio.gather(asyncio.sleep(0.3), asyncio.sleep(0.5))
        return 7

    assert perf(work, rounds=2) == 7
    assert perf.result.modeled == [0.5, 0.5]


def test_perf_warmup_rounds_run_but_are_not_recorded() -> None:
    clock = VirtualClock()
    benchmark = StubBenchmark()
    counters = Counters()
    calls: list[float] = []
    counters.track("calls", lambda: len(calls))
    perf = Perf(benchmark, clock, counters)

    def work() -> None:
        seconds = 1.0 if not calls else 0.1  # a slow first call, like a cold cache
        calls.append(seconds)
        clock.sleep(seconds)

    perf(work, rounds=3, warmup_rounds=2)
    assert len(calls) == 5
    assert perf.result.modeled == [0.1, 0.1, 0.1]
    assert perf.result.counters == {"calls": 3}
    assert benchmark.extra_info["perfkit"]["counters"] == {"calls": 3}
    assert benchmark.extra_info["perfkit"]["modeled"]["max"] == 0.1


def test_perf_records_observed_samples() -> None:
    clock = VirtualClock()
    benchmark = StubBenchmark()
    perf = Perf(benchmark, clock)

    def work() -> None:
        for seconds in (0.1, 0.2, 0.3, 0.4):
            clock.sleep(seconds)
            perf.observe(seconds)

    perf(work, rounds=1)
    assert perf.result.samples == [0.1, 0.2, 0.3, 0.4]
    assert perf.result.modeled == [1.0]
    assert benchmark.extra_info["perfkit"]["samples"]["p90"] == 0.37


@pytest.mark.parametrize("seconds", [-0.1, math.nan, math.inf])
def test_observe_rejects_negative_nan_and_infinite(seconds: float) -> None:
    perf = Perf(StubBenchmark(), VirtualClock())
    with pytest.raises(ValueError, match=rf"got {seconds!r}$"):
        perf.observe(seconds)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rounds": 0}, "rounds must be an int >= 1, got 0"),
        ({"rounds": 2.0}, "rounds must be an int >= 1, got 2.0"),
        ({"rounds": True}, "rounds must be an int >= 1, got True"),
        ({"warmup_rounds": -1}, "warmup_rounds must be an int >= 0, got -1"),
        ({"warmup_rounds": "1"}, "warmup_rounds must be an int >= 0, got '1'"),
    ],
)
def test_perf_rejects_bad_round_counts(options: dict[str, Any], message: str) -> None:
    perf = Perf(StubBenchmark(), VirtualClock())
    with pytest.raises(ValueError, match=f"^perf: {re.escape(message)}$"):
        perf(lambda: None, **options)
    perf(lambda: None)  # a rejected call does not use up the benchmark


def test_perf_runs_one_benchmark_per_test() -> None:
    perf = Perf(StubBenchmark(), VirtualClock())
    perf(lambda: None)
    with pytest.raises(PerfkitError, match="one benchmark per test"):
        perf(lambda: None)


def test_perf_refuses_to_run_inside_an_event_loop() -> None:
    clock = VirtualClock()
    perf = Perf(StubBenchmark(), clock)

    async def inside() -> None:
        perf(lambda: None)

    with pytest.raises(PerfkitError, match="not from inside a running event loop"):
        clock.run(inside())
    assert perf.result.rounds == 0


def test_perf_keeps_what_it_measured_when_a_round_fails() -> None:
    clock = VirtualClock()
    benchmark = StubBenchmark()
    counters = Counters()
    calls: list[int] = []
    counters.track("calls", lambda: len(calls))
    perf = Perf(benchmark, clock, counters)

    def work() -> None:
        calls.append(1)
        clock.sleep(0.2)
        if len(calls) == 2:
            raise RuntimeError("second round fails")

    with pytest.raises(RuntimeError, match="second round fails"):
        perf(work, rounds=3)
    assert perf.result.modeled == [0.2]
    assert benchmark.extra_info["perfkit"]["counters"] == {"calls": 2}


def test_observations_during_warmup_are_not_recorded() -> None:
    clock = VirtualClock()
    perf = Perf(StubBenchmark(), clock)
    warm = iter([True, True, True, False, False])

    def work() -> None:
        seconds = 9.0 if next(warm) else 0.5
        clock.sleep(seconds)
        perf.observe(seconds)

    perf(work, rounds=2, warmup_rounds=3)
    assert perf.result.samples == [0.5, 0.5]


def test_setup_runs_before_every_round_outside_time_and_counters() -> None:
    clock = VirtualClock()
    counters = Counters()
    requests: list[str] = []
    counters.track("requests", lambda: len(requests))
    perf = Perf(StubBenchmark(), clock, counters)

    async def prime() -> None:
        requests.append("setup")
        await clock.asleep(5.0)

    def work() -> None:
        requests.append("work")
        clock.sleep(0.25)

    perf(work, rounds=3, warmup_rounds=1, setup=prime)
    assert requests == ["setup", "work"] * 4
    assert perf.result.modeled == [0.25, 0.25, 0.25]
    assert perf.result.counters == {"requests": 3}


def test_setup_must_be_callable() -> None:
    perf = Perf(StubBenchmark(), VirtualClock())
    with pytest.raises(TypeError, match="perf needs setup as a callable; got 42"):
        perf(lambda: None, setup=42)  # type: ignore[arg-type]


class DisabledBenchmark(StubBenchmark):
    """pytest-benchmark with --benchmark-disable: pedantic would run the target once."""

    disabled = True

    def pedantic(self, target: Callable[[], Any], *, rounds: int, iterations: int) -> Any:
        return target()  # once, whatever the rounds


def test_a_disabled_benchmark_still_runs_and_records_every_round() -> None:
    clock = VirtualClock()
    benchmark = DisabledBenchmark()
    perf = Perf(benchmark, clock)
    assert perf(lambda: clock.sleep(0.3) or "done", rounds=5) == "done"
    assert perf.result.modeled == [0.3] * 5
    assert benchmark.extra_info["perfkit"]["rounds"] == 5


def test_perf_awaits_any_awaitable_a_function_returns() -> None:
    clock = VirtualClock()
    perf = Perf(StubBenchmark(), clock)

    class Sleeper:
        def __await__(self) -> Any:
            return clock.asleep(0.7).__await__()

    perf(Sleeper, rounds=2)
    assert perf.result.modeled == [0.7, 0.7]


def test_a_counter_source_must_be_callable() -> None:
    with pytest.raises(TypeError, match="counter 'hits' needs a callable source, got 3"):
        Counters().track("hits", 3)  # type: ignore[arg-type]


def test_a_counter_says_which_way_is_better() -> None:
    counters = Counters()
    counters.track("api_requests", lambda: 1)
    counters.track("hit_rate", lambda: 0.5, better="higher")
    assert counters.better("api_requests") == "lower"
    assert counters.better("hit_rate") == "higher"
    assert counters.better("never_tracked") == "lower"
    with pytest.raises(ValueError, match="better must be one of lower, higher; got 'up'"):
        counters.track("x", lambda: 1, better="up")  # type: ignore[arg-type]


def test_observed_series_are_kept_apart_and_named_safely() -> None:
    perf = Perf(StubBenchmark(), VirtualClock())
    with pytest.raises(
        ValueError,
        match="series must be a Python identifier other than counters, cpu, modeled, wall",
    ):
        perf.observe(1.0, series="modeled")
    with pytest.raises(ValueError, match="got 'two words'"):
        perf.observe(1.0, series="two words")

    def round_() -> None:
        perf.observe(0.5)
        perf.observe(2.0, series="complete")

    perf.counters.track("hit_rate", lambda: 1.0, better="higher")
    perf.describe(users=3)
    perf(round_, rounds=2)
    assert perf.result.samples == [0.5, 0.5]
    assert perf.result.series == {"complete": [2.0, 2.0]}
    assert perf.result.all_series() == {"observed": [0.5, 0.5], "complete": [2.0, 2.0]}
    assert perf.result.higher_is_better == frozenset({"hit_rate"})
    assert perf.result.parameters == {"users": 3}


async def _one_call() -> None:
    await asyncio.sleep(0.1)


def test_a_coroutine_object_is_refused_with_the_fix_and_closed() -> None:
    perf = Perf(None, VirtualClock())
    coroutine = _one_call()
    with pytest.raises(PerfUsageError, match=r"pass the function, not its call: perf\(_one_call"):
        perf(coroutine, rounds=2)
    assert coroutine.cr_frame is None  # closed: no "never awaited" warning
    perf(_one_call, rounds=2)  # a refused call does not use up the benchmark
    assert perf.result.modeled == [0.1, 0.1]


def test_without_pytest_benchmark_perf_times_every_round_itself() -> None:
    clock = VirtualClock()
    perf = Perf(None, clock)
    assert perf(_one_call, rounds=3, warmup_rounds=1) is None
    assert perf.result.modeled == [0.1] * 3
    assert len(perf.result.wall) == len(perf.result.cpu) == 3


def test_pytest_benchmark_is_fetched_only_when_perf_runs() -> None:
    fetched: list[StubBenchmark] = []

    def factory() -> StubBenchmark:
        fetched.append(StubBenchmark())
        return fetched[-1]

    perf = Perf(None, VirtualClock(), benchmark_factory=factory)
    with pytest.raises(PerfUsageError):
        perf(lambda: None, rounds=0)
    assert fetched == []
    perf(_one_call, rounds=2)
    assert fetched[0].durations == [0.1, 0.1]
    assert fetched[0].extra_info["perfkit"]["rounds"] == 2


def test_a_result_survives_the_trip_from_a_worker_as_plain_data() -> None:
    import json

    perf = Perf(None, VirtualClock(), calibrate=True)
    perf.counters.track("hits", lambda: 3, better="higher")
    perf.describe(users=4)
    perf(_one_call, rounds=2)
    perf.observe(0.5)
    plain = json.loads(json.dumps(perf.result.to_plain()))
    assert PerfResult.from_plain(plain) == perf.result


def test_describe_takes_json_values_only() -> None:
    from decimal import Decimal

    perf = Perf(None, VirtualClock())
    perf.describe(users=100, arrivals="poisson", rates=[1, 2])
    with pytest.raises(PerfUsageError, match=r"perf\.describe takes JSON values"):
        perf.describe(amount=Decimal("1.5"))
    assert perf.result.parameters == {"users": 100, "arrivals": "poisson", "rates": [1, 2]}


def test_a_misspelt_perf_option_is_refused_not_handed_to_the_function() -> None:
    perf = Perf(None, VirtualClock())
    calls: list[object] = []

    def work(**options: object) -> None:
        calls.append(options)

    with pytest.raises(PerfUsageError, match=r"perf got round=3, which .*work does not take: did"):
        perf(work, round=3)
    assert calls == []

    def takes_round(round: int) -> int:  # a function's own keyword still reaches it
        return round

    assert perf(takes_round, round=3, rounds=2) == 3
