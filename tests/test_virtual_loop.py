"""Tests of perfkit._virtual_loop's shortcuts through virtual time: a virtual-time loop turns
only as often as something can happen, and every callback still runs at the time and in
the order plain looptime gives it."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import looptime
import pytest

from perfkit._clock import VirtualClock
from perfkit._virtual_loop import skip_ahead

Trace = list[tuple[float, str]]


def count_turns(loop: asyncio.AbstractEventLoop) -> list[int]:
    """A counter of ``loop``'s turns from now on (each turn polls the selector once)."""
    turns = [0]
    selector: Any = loop._selector  # type: ignore[attr-defined]
    select = selector.select

    def counting(timeout: float | None) -> Any:
        turns[0] += 1
        return select(timeout)

    selector.select = counting
    return turns


def test_a_sleep_nothing_else_waits_on_costs_no_turn_of_the_loop() -> None:
    clock = VirtualClock()

    async def sleeper() -> int:
        turns = count_turns(asyncio.get_running_loop())
        for _ in range(200):
            await clock.asleep(0.01)
        return turns[0]

    turns = clock.run(sleeper())
    assert clock.now() == 2.0
    assert turns < 10  # looptime alone: about 45 turns per sleep


def test_concurrent_sleepers_cost_a_few_turns_per_jump_of_time() -> None:
    async def sleepers() -> tuple[int, float]:
        turns = count_turns(asyncio.get_running_loop())
        await asyncio.gather(*(tick(0.010, 100), tick(0.015, 100)))
        return turns[0], asyncio.get_running_loop().time()

    turns, end = VirtualClock().run(sleepers())
    assert end == 1.5
    assert turns < 4 * 200  # at most 200 jumps; looptime alone: about 45 turns per jump


async def tick(seconds: float, times: int) -> None:
    for _ in range(times):
        await asyncio.sleep(seconds)


def test_a_watched_socket_keeps_looptimes_idle_turns() -> None:
    """While a socket is watched, I/O may still arrive in real time: looptime polls it
    for a while before each jump, as without perfkit."""

    async def sleepers() -> int:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        loop.add_reader(ours, lambda: None)
        try:
            turns = count_turns(loop)
            await asyncio.gather(tick(0.010, 10), tick(0.015, 10))
            return turns[0]
        finally:
            loop.remove_reader(ours)
            ours.close()
            theirs.close()

    assert VirtualClock().run(sleepers()) > 30 * 15


def test_a_running_executor_job_keeps_a_sleep_in_step_with_real_time() -> None:
    """A job in a worker thread takes real time: looptime moves virtual time in step with
    it, and a virtual sleep must not jump ahead of the job."""
    clock = VirtualClock()
    release = threading.Event()

    async def sleeper() -> float:
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, release.wait, 5)
        loop.call_later(0.2, release.set)
        start = time.perf_counter()
        await clock.asleep(0.1)
        waited = time.perf_counter() - start
        await job
        return waited

    assert clock.run(sleeper()) >= 0.05


def test_a_pending_cancellation_is_not_slept_through() -> None:
    clock = VirtualClock()

    async def cancelled() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await clock.asleep(1.0)

    async def main() -> float:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(cancelled())
        return asyncio.get_running_loop().time()

    assert clock.run(main()) == 0.0


# --- the same times and order as plain looptime ---------------------------------------------


def run_plain(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``main()`` on a looptime loop that perfkit has not touched."""
    loop = looptime.new_event_loop(start=0.0, _enabled=True)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def traced_both_ways(
    scenario: Callable[[Callable[[float], Any], Trace], Any],
) -> tuple[Trace, Trace]:
    """The trace of ``scenario(sleep, trace)`` with plain looptime and ``asyncio.sleep``,
    and on perfkit's virtual clock with ``VirtualClock.asleep``."""
    plain: Trace = []
    run_plain(lambda: scenario(asyncio.sleep, plain))
    clock = VirtualClock()
    ours: Trace = []
    clock.run(scenario(clock.asleep, ours))
    return plain, ours


def note(trace: Trace, what: str) -> None:
    trace.append((asyncio.get_running_loop().time(), what))


def test_a_sleep_wakes_after_a_timer_due_before_it() -> None:
    async def scenario(sleep: Callable[[float], Any], trace: Trace) -> None:
        asyncio.get_running_loop().call_later(0.5, note, trace, "timer")
        await sleep(1.0)
        note(trace, "woke")

    plain, ours = traced_both_ways(scenario)
    assert ours == plain == [(0.5, "timer"), (1.0, "woke")]


def test_a_timer_due_with_the_sleep_runs_before_the_sleeper_as_in_asyncio() -> None:
    async def scenario(sleep: Callable[[float], Any], trace: Trace) -> None:
        loop = asyncio.get_running_loop()
        await sleep(0.25)
        loop.call_later(0.5, note, trace, "timer")
        await sleep(0.5)
        note(trace, "woke")
        loop.call_soon(note, trace, "soon")
        await sleep(0.000001)
        note(trace, "woke again")

    plain, ours = traced_both_ways(scenario)
    assert ours == plain
    assert [what for _, what in ours] == ["timer", "woke", "soon", "woke again"]


@pytest.mark.parametrize(
    "seconds", [1e-7, 7e-7, 0.1 + 0.2, 0.0000015, 1 / 3, 86_400 * 1.5 + 0.3, 123.456789]
)
def test_a_sleep_ends_exactly_where_looptime_ends_it(seconds: float) -> None:
    async def scenario(sleep: Callable[[float], Any], trace: Trace) -> None:
        await sleep(0.7)
        await sleep(seconds)
        note(trace, "woke")

    plain, ours = traced_both_ways(scenario)
    assert ours == plain


@pytest.mark.parametrize("seed", range(12))
def test_random_sleepers_timers_and_waiters_keep_looptimes_times_and_order(seed: int) -> None:
    """Tasks sleeping random whole milliseconds (often the same ones, so times coincide),
    yielding, scheduling timers, and waking each other through futures."""

    async def scenario(sleep: Callable[[float], Any], trace: Trace) -> None:
        rng = random.Random(seed)
        loop = asyncio.get_running_loop()
        handoffs = [loop.create_future() for _ in range(3)]

        async def worker(name: str) -> None:
            for step in range(rng.randint(5, 25)):
                action = rng.random()
                if action < 0.6:
                    await sleep(rng.choice([1, 2, 3, 5, 8]) / 1000)
                elif action < 0.7:
                    await asyncio.sleep(0)
                elif action < 0.8:
                    loop.call_later(rng.choice([1, 2, 4]) / 1000, note, trace, f"{name} timer")
                elif action < 0.9:
                    future = rng.choice(handoffs)
                    if not future.done():
                        future.set_result(name)
                else:
                    future = rng.choice(handoffs)
                    await asyncio.wait([future], timeout=rng.choice([2, 3]) / 1000)
                note(trace, f"{name} {step}")

        await asyncio.gather(*(worker(f"w{index}") for index in range(rng.randint(1, 5))))

    plain, ours = traced_both_ways(scenario)
    assert ours == plain
    assert len(ours) > 5


@pytest.mark.parametrize("seconds", [math.inf, math.nan, -1.0, 0.0])
def test_skip_ahead_leaves_an_endless_nan_negative_or_empty_sleep_to_asyncio(
    seconds: float,
) -> None:
    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        return skip_ahead(loop, seconds), loop.time()

    assert VirtualClock().run(main()) == (False, 0.0)
