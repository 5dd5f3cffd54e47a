"""Tests of perfkit._clock: virtual time is exact, real time is real, and the two agree."""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any

import anthropic
import looptime
import pytest

from perfkit import AnthropicSimulator, LLMLatency, Reply
from perfkit._clock import CLOCK_MODES, Clock, RealClock, VirtualClock, make_clock
from perfkit._errors import ClockError, PerfkitError

# A name the SDK has no deprecation warning for (warnings are errors here).
MODEL = "claude-simulated"

# --- VirtualClock: synchronous time -----------------------------------------------------------


def test_a_new_virtual_clock_starts_at_zero() -> None:
    clock = VirtualClock()
    assert clock.now() == 0.0
    assert clock.mode == "virtual"
    assert repr(clock) == "VirtualClock(now=0.0)"


def test_sleep_advances_the_clock_exactly_without_waiting() -> None:
    clock = VirtualClock()
    wall_start = time.perf_counter()
    for _ in range(3):
        clock.sleep(0.1)
    # Adding floats would give 0.30000000000000004; the clock counts whole microseconds.
    assert clock.now() == 0.3
    clock.sleep(3600)
    assert clock.now() == 3600.3
    assert time.perf_counter() - wall_start < 0.5


def test_advance_moves_the_clock_like_a_sleep() -> None:
    clock = VirtualClock()
    clock.advance(1.5)
    clock.advance(0)
    clock.sleep(0.25)
    assert clock.now() == 1.75


def test_elapsed_is_exact_to_the_microsecond() -> None:
    clock = VirtualClock()
    clock.sleep(0.7)
    start = clock.now()
    clock.sleep(0.1)
    clock.sleep(0.2)
    assert clock.elapsed(start) == 0.3
    assert clock.elapsed(clock.now()) == 0.0


def test_sleeps_round_to_whole_microseconds() -> None:
    clock = VirtualClock()
    clock.sleep(0.0000014)
    clock.sleep(0.0000016)
    assert clock.now() == 0.000003


@pytest.mark.parametrize("method", ["sleep", "advance"])
@pytest.mark.parametrize(
    ("seconds", "shown"), [(-1, "-1"), (-0.001, "-0.001"), (math.nan, "nan"), (math.inf, "inf")]
)
def test_a_negative_nan_or_infinite_sleep_is_a_value_error_naming_it(
    method: str, seconds: float, shown: str
) -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match=rf"^seconds must be a finite number >= 0, got {shown}$"):
        getattr(clock, method)(seconds)
    assert clock.now() == 0.0


# --- VirtualClock: asynchronous time -----------------------------------------------------------


def test_run_returns_the_coroutine_result_and_adds_its_loop_time() -> None:
    clock = VirtualClock()
    clock.sleep(1.0)
    seen: list[float] = []

    async def main() -> str:
        seen.append(clock.now())
        await asyncio.sleep(2.5)
        seen.append(clock.now())
        clock.sleep(0.5)  # a blocking sleep inside the loop counts too
        seen.append(clock.now())
        await clock.asleep(0.25)
        return "done"

    wall_start = time.perf_counter()
    assert clock.run(main()) == "done"
    assert time.perf_counter() - wall_start < 1.0
    assert seen == [1.0, 3.5, 4.0]
    assert clock.now() == 4.25


def test_run_adds_the_loop_time_even_when_the_coroutine_raises() -> None:
    clock = VirtualClock()

    async def fails() -> None:
        await asyncio.sleep(0.4)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        clock.run(fails())
    assert clock.now() == 0.4


def test_each_run_starts_a_fresh_loop_and_the_times_add_up() -> None:
    clock = VirtualClock()
    for _ in range(3):
        clock.run(asyncio.sleep(0.1))
    assert clock.now() == 0.3


def test_run_cancels_tasks_left_behind() -> None:
    clock = VirtualClock()
    cancelled: list[bool] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(1000)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0.2)

    clock.run(main())
    assert cancelled == [True]
    assert clock.now() == 0.2


def test_concurrent_sleeps_take_the_longest_not_the_sum() -> None:
    clock = VirtualClock()

    async def main() -> tuple[float, float]:
        start = clock.now()
        await asyncio.gather(clock.asleep(0.3), clock.asleep(0.5), asyncio.sleep(0.2))
        concurrent = clock.elapsed(start)
        start = clock.now()
        for seconds in (0.3, 0.5, 0.2):
            await clock.asleep(seconds)
        return concurrent, clock.elapsed(start)

    assert clock.run(main()) == (0.5, 1.0)
    assert clock.now() == 1.5


@pytest.mark.parametrize("seconds", [-2, math.nan, math.inf])
def test_asleep_rejects_negative_nan_and_infinite(seconds: float) -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match=rf"got {seconds!r}$"):
        clock.run(clock.asleep(seconds))


async def test_asleep_outside_a_virtual_loop_is_a_clock_error() -> None:
    # No perfkit fixture here, so pytest-asyncio's loop keeps real time.
    clock = VirtualClock()
    with pytest.raises(ClockError) as error:
        await clock.asleep(1)
    message = str(error.value)
    assert "VirtualClock.asleep() needs an event loop in virtual time" in message
    assert "VirtualClock.run()" in message
    assert "uses the perfkit_clock fixture" in message
    assert type(asyncio.get_running_loop()).__name__ in message
    assert isinstance(error.value, PerfkitError)


async def test_now_ignores_a_real_time_loop() -> None:
    clock = VirtualClock()
    clock.sleep(2)
    await asyncio.sleep(0.001)
    assert clock.now() == 2.0


# --- RealClock ------------------------------------------------------------------------------


def test_real_clock_reads_the_wall_clock() -> None:
    clock = RealClock()
    assert clock.mode == "real"
    assert repr(clock) == "RealClock()"
    before = time.perf_counter()
    reading = clock.now()
    assert before <= reading <= time.perf_counter()


def test_real_clock_sleep_really_waits() -> None:
    clock = RealClock()
    start = clock.now()
    clock.sleep(0.01)
    assert 0.01 <= clock.elapsed(start) < 1.0


def test_real_clock_run_returns_the_result_after_real_time() -> None:
    clock = RealClock()

    async def main() -> int:
        await clock.asleep(0.01)
        return 42

    start = time.perf_counter()
    assert clock.run(main()) == 42
    assert time.perf_counter() - start >= 0.01


@pytest.mark.parametrize("seconds", [-1, math.nan, math.inf])
def test_real_clock_rejects_negative_nan_and_infinite(seconds: float) -> None:
    clock = RealClock()
    with pytest.raises(ValueError, match=rf"got {seconds!r}$"):
        clock.sleep(seconds)
    with pytest.raises(ValueError, match=rf"got {seconds!r}$"):
        clock.run(clock.asleep(seconds))


# --- make_clock --------------------------------------------------------------------------------


def test_make_clock_builds_each_mode() -> None:
    assert CLOCK_MODES == ("virtual", "real")
    assert isinstance(make_clock("virtual"), VirtualClock)
    assert isinstance(make_clock("real"), RealClock)
    for mode in CLOCK_MODES:
        clock = make_clock(mode)
        assert isinstance(clock, Clock)
        assert clock.mode == mode


def test_make_clock_returns_a_new_clock_each_time() -> None:
    first = make_clock("virtual")
    first.sleep(1)
    assert make_clock("virtual").now() == 0.0


@pytest.mark.parametrize("mode", ["fast", "Virtual", ""])
def test_make_clock_rejects_an_unknown_mode_listing_the_modes(mode: str) -> None:
    message = f"clock mode must be one of virtual, real; got {mode!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make_clock(mode)


# --- virtual and real time agree -------------------------------------------------------------


def _ask(client: anthropic.AsyncAnthropic, question: str) -> Any:
    return client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": question}],
    )


async def llm_scenario(clock: Clock) -> dict[str, float]:
    """Three calls one after another, three at once, and a streamed 100-token reply."""
    figures: dict[str, float] = {}
    async with anthropic.AsyncAnthropic(api_key="test-key") as client:
        with AnthropicSimulator(latency=LLMLatency(ttft=0.3), clock=clock) as sim:
            start = clock.now()
            for index in range(3):
                await _ask(client, f"sequential {index}")
            figures["sequential"] = clock.elapsed(start)
            start = clock.now()
            await asyncio.gather(*(_ask(client, f"concurrent {i}") for i in range(3)))
            figures["concurrent"] = clock.elapsed(start)
            assert sim.call_count == 6
        latency = LLMLatency(ttft=0.5, per_token=0.02)
        with AnthropicSimulator(latency=latency, clock=clock) as sim:
            sim.enqueue(Reply.of_tokens(100))
            start = clock.now()
            async with client.messages.stream(
                model=MODEL,
                max_tokens=256,
                messages=[{"role": "user", "content": "Tell me a story"}],
            ) as stream:
                async for event in stream:
                    if event.type == "text" and "ttft" not in figures:
                        figures["ttft"] = clock.elapsed(start)
                message = await stream.get_final_message()
            figures["stream_total"] = clock.elapsed(start)
            figures["output_tokens"] = message.usage.output_tokens
    return figures


EXPECTED_SCENARIO = {
    "sequential": 0.9,
    "concurrent": 0.3,
    "ttft": 0.5,
    "stream_total": 2.48,
    "output_tokens": 100,
}
TIMED_FIGURES = ("sequential", "concurrent", "ttft", "stream_total")


@pytest.mark.slow  # the scenario in real time
def test_virtual_and_real_time_agree_within_ten_percent() -> None:
    virtual = VirtualClock()
    wall_start = time.perf_counter()
    virtual_figures = virtual.run(llm_scenario(virtual))
    virtual_wall = time.perf_counter() - wall_start
    assert virtual_figures == EXPECTED_SCENARIO
    assert virtual.now() == 3.68  # 0.9 + 0.3 + 2.48, to the microsecond
    assert virtual_wall < 3.68, "virtual time waited as long as the modeled 3.68 s"

    # A real sleep only ever wakes late, the more so on a busy machine; the streamed reply
    # waits 100 times, so it is compared with the same waits as bare sleeps, timed just
    # before it, when they took longer than the model. The best of three tries counts.
    real = RealClock()
    for _ in range(3):
        bare = {**virtual_figures, "stream_total": real.run(stream_waits(real))}
        real_figures = real.run(llm_scenario(real))
        assert real_figures["output_tokens"] == 100
        late: dict[str, float] = {}
        for name in TIMED_FIGURES:
            assert real_figures[name] >= virtual_figures[name] - 0.001, f"{name} beat the model"
            late[name] = real_figures[name] / max(virtual_figures[name], bare[name]) - 1
        if max(late.values()) <= 0.10:
            break
    assert max(late.values()) <= 0.10, f"real time later than the model by {late}"


async def stream_waits(clock: Clock) -> float:
    """The streamed reply's waits (first token at 0.5 s, 99 more 0.02 s apart) as bare sleeps."""
    start = clock.now()
    await clock.asleep(0.5)
    for _ in range(99):
        await clock.asleep(0.02)
    return clock.elapsed(start)


@pytest.mark.perfkit_clock("virtual")
async def test_the_scenario_is_exact_on_the_plugins_virtual_clock(perfkit_clock: Clock) -> None:
    assert perfkit_clock.mode == "virtual"
    start = time.perf_counter()
    assert await llm_scenario(perfkit_clock) == EXPECTED_SCENARIO
    assert time.perf_counter() - start < 3.68  # what waiting out the modeled times would take


CLOCKS = [
    pytest.param("virtual", marks=pytest.mark.perfkit_clock("virtual"), id="virtual"),
    pytest.param("real", marks=pytest.mark.perfkit_clock("real"), id="real"),
]


@pytest.mark.perfkit_sim(latency=0.2)
@pytest.mark.parametrize("mode", CLOCKS)
async def test_the_perfkit_clock_marker_picks_the_clock(
    mode: str, perfkit_clock: Clock, anthropic_sim: AnthropicSimulator
) -> None:
    assert perfkit_clock.mode == mode
    assert anthropic_sim.clock is perfkit_clock
    async with anthropic.AsyncAnthropic(api_key="test-key") as client:
        start, wall_start = perfkit_clock.now(), time.perf_counter()
        await _ask(client, "hello")
        modeled, wall = perfkit_clock.elapsed(start), time.perf_counter() - wall_start
    if mode == "virtual":
        assert modeled == 0.2
        assert wall < 0.2
    else:  # the real clock measures wall time, and the modeled 0.2 s is really waited
        assert wall >= 0.2
        assert modeled == pytest.approx(wall, abs=0.005)


@pytest.mark.perfkit_clock("real")
def test_the_real_clock_marker_applies_to_sync_tests(perfkit_clock: Clock) -> None:
    assert isinstance(perfkit_clock, RealClock)
    start = perfkit_clock.now()
    perfkit_clock.sleep(0.01)
    assert perfkit_clock.elapsed(start) >= 0.01


# --- worker threads ----------------------------------------------------------------------------


def test_worker_threads_read_the_virtual_time_of_the_loop_the_clock_follows() -> None:
    clock = VirtualClock()

    async def main() -> tuple[float, float, float]:
        await asyncio.sleep(5)
        in_thread = await asyncio.to_thread(clock.now)
        clock_in_loop = clock.now()
        await asyncio.sleep(1)
        return in_thread, clock_in_loop, await asyncio.to_thread(clock.now)

    assert clock.run(main()) == (5.0, 5.0, 6.0)
    assert clock.now() == 6.0  # the loop's time was absorbed once, not twice


def test_following_is_scoped_and_restores_the_previous_loop() -> None:
    clock = VirtualClock()
    outer = looptime.new_event_loop(start=10.0, _enabled=True)
    inner = looptime.new_event_loop(start=20.0, _enabled=True)
    try:
        with clock.following(outer):
            assert clock.now() == 10.0
            with clock.following(inner):
                assert clock.now() == 20.0
            assert clock.now() == 10.0
        assert clock.now() == 0.0
    finally:
        outer.close()
        inner.close()


async def test_the_plugin_clock_follows_the_test_loop_into_worker_threads(
    perfkit_clock: Clock,
) -> None:
    await asyncio.sleep(30)
    assert await asyncio.to_thread(perfkit_clock.now) == perfkit_clock.now()
