"""Tests of perfkit.cache._breaker: the circuit breaker's state machine, on virtual time."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable

import pytest

from perfkit._clock import RealClock, VirtualClock
from perfkit.cache._breaker import (
    DEFAULT_COOL_DOWN,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_HALF_OPEN_PROBES,
    BreakerStats,
    CircuitBreaker,
)


def make_breaker(
    *, failure_threshold: int = 3, cool_down: float = 10.0, half_open_probes: int = 1
) -> tuple[CircuitBreaker, VirtualClock]:
    clock = VirtualClock()
    breaker = CircuitBreaker(
        failure_threshold=failure_threshold,
        cool_down=cool_down,
        clock=clock,
        half_open_probes=half_open_probes,
    )
    return breaker, clock


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def count_allowed(breaker: CircuitBreaker, calls: int) -> int:
    return sum(breaker.allow() for _ in range(calls))


# --- closed -------------------------------------------------------------------------------------


def test_a_new_breaker_is_closed_and_allows_calls() -> None:
    breaker, _clock = make_breaker()
    assert breaker.state == "closed"
    assert count_allowed(breaker, 100) == 100
    assert breaker.stats() == BreakerStats("closed", opened=0, rejected=0, consecutive_failures=0)


def test_defaults() -> None:
    breaker = CircuitBreaker()
    assert (breaker.failure_threshold, breaker.cool_down, breaker.half_open_probes) == (
        DEFAULT_FAILURE_THRESHOLD,
        DEFAULT_COOL_DOWN,
        DEFAULT_HALF_OPEN_PROBES,
    )
    assert (DEFAULT_FAILURE_THRESHOLD, DEFAULT_COOL_DOWN, DEFAULT_HALF_OPEN_PROBES) == (5, 30.0, 1)
    assert isinstance(breaker.clock, RealClock)


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker, _clock = make_breaker(failure_threshold=3)
    fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.stats().consecutive_failures == 2
    fail(breaker, 1)
    assert breaker.stats().state == "open"
    assert not breaker.allow()
    assert breaker.stats() == BreakerStats("open", opened=1, rejected=1, consecutive_failures=3)


def test_a_success_in_between_resets_the_failure_count() -> None:
    breaker, _clock = make_breaker(failure_threshold=3)
    fail(breaker, 2)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.stats().consecutive_failures == 0
    fail(breaker, 2)
    assert breaker.state == "closed"
    fail(breaker, 1)
    assert breaker.stats().state == "open"


def test_a_threshold_of_one_opens_on_the_first_failure() -> None:
    breaker, _clock = make_breaker(failure_threshold=1)
    fail(breaker, 1)
    assert breaker.state == "open"


# --- open ---------------------------------------------------------------------------------------


def test_refuses_calls_for_the_cool_down_and_counts_them() -> None:
    breaker, clock = make_breaker(failure_threshold=2, cool_down=10.0)
    fail(breaker, 2)
    assert count_allowed(breaker, 5) == 0
    clock.advance(9.999999)
    assert count_allowed(breaker, 2) == 0
    assert breaker.state == "open"
    assert breaker.stats() == BreakerStats("open", opened=1, rejected=7, consecutive_failures=2)


def test_results_reported_while_open_are_ignored() -> None:
    # Calls allowed before the breaker opened can finish after it did.
    breaker, clock = make_breaker(failure_threshold=1, cool_down=10.0)
    assert breaker.allow()
    assert breaker.allow()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.stats() == BreakerStats("open", opened=1, rejected=0, consecutive_failures=1)
    clock.advance(10.0)  # a late failure did not start a new cool-down
    assert breaker.state == "half_open"


# --- half-open ----------------------------------------------------------------------------------


def test_becomes_half_open_when_the_cool_down_is_over() -> None:
    breaker, clock = make_breaker(failure_threshold=1, cool_down=10.0)
    fail(breaker, 1)
    clock.advance(10.0)
    assert breaker.state == "half_open"
    assert breaker.stats().state == "half_open"


@pytest.mark.parametrize("probes", [1, 3])
def test_half_open_lets_exactly_half_open_probes_through(probes: int) -> None:
    breaker, clock = make_breaker(failure_threshold=1, cool_down=10.0, half_open_probes=probes)
    fail(breaker, 1)
    clock.advance(10.0)
    assert count_allowed(breaker, 10) == probes
    assert breaker.stats() == BreakerStats(
        "half_open", opened=1, rejected=10 - probes, consecutive_failures=1
    )


def test_a_probe_success_closes_the_breaker_and_resets_failures() -> None:
    breaker, clock = make_breaker(failure_threshold=2, cool_down=10.0)
    fail(breaker, 2)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.stats() == BreakerStats("closed", opened=1, rejected=0, consecutive_failures=0)
    assert count_allowed(breaker, 10) == 10
    fail(breaker, 1)
    assert breaker.state == "closed"  # a fresh count: one failure is below the threshold


def test_a_probe_failure_reopens_with_a_cool_down_measured_from_the_reopening() -> None:
    breaker, clock = make_breaker(failure_threshold=2, cool_down=10.0)
    fail(breaker, 2)  # opens at t=0
    clock.advance(10.0)
    assert breaker.allow()
    clock.advance(4.0)  # the probe takes 4 s, then fails at t=14
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.stats().opened == 2
    clock.advance(9.999999)
    assert not breaker.allow()
    clock.advance(0.000001)  # t=24: ten seconds after re-opening, not after the first opening
    assert breaker.stats().state == "half_open"
    assert breaker.allow()


def test_a_probe_slot_whose_result_is_never_reported_is_freed_after_a_cool_down() -> None:
    breaker, clock = make_breaker(failure_threshold=1, cool_down=10.0)
    fail(breaker, 1)
    clock.advance(10.0)
    assert breaker.allow()  # this probe's caller is cancelled and never reports
    clock.advance(10.0)
    assert not breaker.allow()
    clock.advance(0.000001)
    assert breaker.allow()
    assert not breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"


def test_a_zero_cool_down_probes_at_once_but_still_one_probe_at_a_time() -> None:
    breaker, _clock = make_breaker(failure_threshold=1, cool_down=0)
    fail(breaker, 1)
    assert breaker.state == "half_open"
    assert count_allowed(breaker, 3) == 1


# --- reset and repr -----------------------------------------------------------------------------


def test_reset_returns_to_a_new_breaker() -> None:
    breaker, clock = make_breaker(failure_threshold=1)
    fail(breaker, 1)
    breaker.allow()
    breaker.reset()
    assert breaker.stats() == BreakerStats("closed", opened=0, rejected=0, consecutive_failures=0)
    assert breaker.allow()
    clock.advance(100.0)
    fail(breaker, 1)
    assert breaker.state == "open"  # the new cool-down starts now, not at the old opening
    assert not breaker.allow()


def test_repr_shows_state_and_settings() -> None:
    breaker, _clock = make_breaker(failure_threshold=1, cool_down=2.5, half_open_probes=2)
    assert repr(breaker) == (
        "CircuitBreaker(state='closed', failure_threshold=1, cool_down=2.5, half_open_probes=2)"
    )
    fail(breaker, 1)
    assert repr(breaker).startswith("CircuitBreaker(state='open',")


def test_stats_are_a_frozen_snapshot() -> None:
    breaker, _clock = make_breaker()
    stats = breaker.stats()
    with pytest.raises(AttributeError):
        stats.opened = 3  # type: ignore[misc]
    fail(breaker, 1)
    assert stats.consecutive_failures == 0


# --- threads ------------------------------------------------------------------------------------


def run_in_threads(threads: int, work: Callable[[], None]) -> None:
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as error:
            errors.append(error)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []


def test_concurrent_failures_are_all_counted() -> None:
    breaker, _clock = make_breaker(failure_threshold=10**9)

    def work() -> None:
        for _ in range(2_000):
            breaker.allow()
            breaker.record_failure()

    run_in_threads(8, work)
    assert breaker.stats() == BreakerStats(
        "closed", opened=0, rejected=0, consecutive_failures=16_000
    )


def test_concurrent_calls_open_once_and_account_for_every_call() -> None:
    breaker, _clock = make_breaker(failure_threshold=50, cool_down=3600.0)
    allowed: list[int] = []

    def work() -> None:
        count = 0
        for _ in range(1_000):
            if breaker.allow():
                count += 1
                breaker.record_failure()
        allowed.append(count)

    run_in_threads(8, work)
    stats = breaker.stats()
    assert stats.state == "open"
    assert stats.opened == 1
    # Failures reported after the breaker opened are ignored, so the count stops there.
    assert stats.consecutive_failures == 50
    assert sum(allowed) + stats.rejected == 8_000
    assert sum(allowed) >= 50


def test_concurrent_callers_in_half_open_get_exactly_the_probes() -> None:
    breaker, clock = make_breaker(failure_threshold=1, cool_down=1.0, half_open_probes=3)
    fail(breaker, 1)
    clock.advance(1.0)
    results: list[bool] = []
    run_in_threads(16, lambda: results.extend(breaker.allow() for _ in range(50)))
    assert results.count(True) == 3
    assert breaker.stats().rejected == 16 * 50 - 3


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3", None])
@pytest.mark.parametrize("name", ["failure_threshold", "half_open_probes"])
def test_counts_must_be_ints_of_at_least_one(name: str, value: object) -> None:
    message = f"{name} must be an int >= 1, got {value!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        CircuitBreaker(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-0.1, math.inf, math.nan, True, "30", None])
def test_cool_down_must_be_a_finite_number_of_seconds(value: object) -> None:
    message = f"cool_down must be a finite number of seconds >= 0, got {value!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        CircuitBreaker(cool_down=value)  # type: ignore[arg-type]


def test_cool_down_accepts_ints_and_zero() -> None:
    assert CircuitBreaker(cool_down=0).cool_down == 0.0
    assert CircuitBreaker(cool_down=5).cool_down == 5.0
