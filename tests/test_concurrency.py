"""Bounded gathering and parallel tool execution, timed exactly in virtual time."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from anthropic.types import TextBlock, ToolUseBlock

from perfkit import VirtualClock
from perfkit.concurrency import RateLimiter, gather_bounded, map_bounded, run_tool_calls
from perfkit.simulation import AnthropicSimulator, Fault, LLMLatency, RateLimits


def test_results_come_in_input_order_and_the_limit_holds() -> None:
    clock = VirtualClock()
    running, peak = 0, 0

    async def job(index: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(1.0 if index % 2 else 0.5)
        running -= 1
        return index

    async def main() -> list[Any]:
        return await gather_bounded([lambda i=i: job(i) for i in range(10)], limit=3)

    start = clock.now()
    assert clock.run(main()) == list(range(10))
    assert peak == 3
    assert clock.elapsed(start) == 3.0  # ten jobs of 0.5 or 1 s, three at a time


def test_without_a_limit_everything_runs_at_once() -> None:
    clock = VirtualClock()

    async def main() -> list[Any]:
        return await gather_bounded([asyncio.sleep(1.0, result=n) for n in range(100)])

    assert clock.run(main()) == list(range(100))
    assert clock.now() == 1.0


def test_the_first_error_cancels_the_rest_and_leaves_no_task_behind() -> None:
    clock = VirtualClock()
    cancelled: list[int] = []

    async def job(index: int) -> int:
        try:
            await asyncio.sleep(0.1 if index == 2 else 10.0)
        except asyncio.CancelledError:
            cancelled.append(index)
            raise
        if index == 2:
            raise ValueError("job 2 failed")
        return index

    async def main() -> None:
        with pytest.raises(ValueError, match="job 2 failed"):
            await gather_bounded([lambda i=i: job(i) for i in range(5)])
        assert asyncio.all_tasks() == {asyncio.current_task()}

    clock.run(main())
    assert sorted(cancelled) == [0, 1, 3, 4]
    assert clock.now() == 0.1


def test_errors_can_be_collected_per_item() -> None:
    async def fails() -> None:
        raise KeyError("missing")

    async def main() -> list[Any]:
        return await gather_bounded(
            [asyncio.sleep(0, result="ok"), fails()], return_exceptions=True
        )

    ok, error = VirtualClock().run(main())
    assert ok == "ok"
    assert isinstance(error, KeyError)


def test_an_enclosing_timeout_cancels_everything_and_closes_unstarted_coroutines() -> None:
    clock = VirtualClock()
    finished: list[int] = []

    async def job(index: int) -> None:
        await asyncio.sleep(1.0)
        finished.append(index)

    async def main() -> None:
        coroutines = [job(i) for i in range(6)]  # some never start: limit 2
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):
                await gather_bounded(coroutines, limit=2)
        assert asyncio.all_tasks() == {asyncio.current_task()}

    clock.run(main())  # under -W error an unawaited coroutine would fail this test
    assert finished == [0, 1]
    assert clock.now() == 1.5


def test_map_bounded() -> None:
    async def square(x: int) -> int:
        await asyncio.sleep(1.0)
        return x * x

    clock = VirtualClock()
    assert clock.run(map_bounded(square, range(4), limit=2)) == [0, 1, 4, 9]
    assert clock.now() == 2.0


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_a_bad_limit_is_a_value_error(limit: Any) -> None:
    with pytest.raises(ValueError, match=r"limit must be an int >= 1 or None \(no limit\), got"):
        VirtualClock().run(gather_bounded([], limit=limit))


# -- tool-use turns --------------------------------------------------------------------------


def tool_use(name: str, tool_input: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


async def weather(city: str) -> dict[str, Any]:
    await asyncio.sleep(1.0)
    return {"city": city, "temp_c": 21}


async def news(topic: str) -> str:
    await asyncio.sleep(2.0)
    return f"no news on {topic}"


async def slow(**_: Any) -> str:
    await asyncio.sleep(60.0)
    return "too late"


def broken(**_: Any) -> str:
    raise RuntimeError("database unreachable")


def test_all_tool_calls_of_a_turn_run_at_once_and_results_keep_their_order() -> None:
    clock = VirtualClock()
    content = [
        {"type": "text", "text": "Let me look that up."},
        tool_use("news", {"topic": "Paris"}, "toolu_1"),
        tool_use("weather", {"city": "Paris"}, "toolu_2"),
    ]
    results = clock.run(run_tool_calls(content, {"weather": weather, "news": news}))
    assert clock.now() == 2.0  # the slowest tool, not the sum (3 s)
    assert results == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "no news on Paris"},
        {
            "type": "tool_result",
            "tool_use_id": "toolu_2",
            "content": '{"city": "Paris", "temp_c": 21}',
        },
    ]


def test_failing_timed_out_and_unknown_tools_become_error_results() -> None:
    clock = VirtualClock()
    content = [
        tool_use("weather", {"city": "Oslo"}, "a"),
        tool_use("slow", {}, "b"),
        tool_use("broken", {}, "c"),
        tool_use("teleport", {}, "d"),
    ]
    tools = {"weather": weather, "slow": slow, "broken": broken}
    results = clock.run(run_tool_calls(content, tools, tool_timeout=5.0))
    assert clock.now() == 5.0
    assert "is_error" not in results[0]
    assert results[1] == {
        "type": "tool_result",
        "tool_use_id": "b",
        "content": "tool 'slow' timed out after 5.0 s",
        "is_error": True,
    }
    assert results[2]["content"] == "tool 'broken' failed: RuntimeError: database unreachable"
    assert results[2]["is_error"] is True
    assert results[3]["content"] == "unknown tool 'teleport'; known tools: broken, slow, weather"


def test_each_tool_can_have_its_own_timeout() -> None:
    clock = VirtualClock()
    content = [tool_use("news", {"topic": "x"}, "a"), tool_use("weather", {"city": "y"}, "b")]
    results = clock.run(
        run_tool_calls(content, {"news": news, "weather": weather}, timeouts={"news": 1.5})
    )
    assert results[0]["is_error"] is True
    assert "is_error" not in results[1]
    assert clock.now() == 1.5


def test_sync_tools_run_in_worker_threads() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def lookup(term: str) -> str:
        seen.append(threading.get_ident())
        return term.upper()

    results = VirtualClock().run(
        run_tool_calls([tool_use("lookup", {"term": "abc"}, "x")], {"lookup": lookup})
    )
    assert results[0]["content"] == "ABC"
    assert seen
    assert seen[0] != loop_thread


def test_sdk_content_blocks_are_accepted() -> None:
    content = [
        TextBlock(type="text", text="checking"),
        ToolUseBlock(type="tool_use", id="toolu_9", name="weather", input={"city": "Rome"}),
    ]
    results = VirtualClock().run(run_tool_calls(content, {"weather": weather}))
    assert results[0]["tool_use_id"] == "toolu_9"


def test_bad_timeouts_and_blocks_are_rejected() -> None:
    with pytest.raises(ValueError, match="tool_timeout must be a finite number of seconds > 0"):
        VirtualClock().run(run_tool_calls([], {}, tool_timeout=0))
    with pytest.raises(ValueError, match=r"timeouts\['news'\] must be a finite number"):
        VirtualClock().run(run_tool_calls([], {}, timeouts={"news": -1}))
    with pytest.raises(TypeError, match="a content block must be a mapping or an SDK model"):
        VirtualClock().run(run_tool_calls([42], {}))


# -- RateLimiter: pacing from the API's rate-limit headers ---------------------------------

SONNET = "claude-sonnet-4-5"


def _paced_burst(
    clock: VirtualClock, requests: int, limiter: RateLimiter, *, max_tokens: int = 64
) -> list[float | None]:
    """``requests`` sent at once through the SDK (no retries) with ``limiter`` on its
    client: when each ended, None where it was refused."""
    import anthropic

    async def burst() -> list[float | None]:
        http_client = anthropic.DefaultAsyncHttpxClient(event_hooks=limiter.event_hooks())
        async with anthropic.AsyncAnthropic(
            api_key="test", max_retries=0, http_client=http_client
        ) as client:

            async def one() -> float | None:
                try:
                    await client.messages.create(
                        model=SONNET,
                        max_tokens=max_tokens,
                        messages=[{"role": "user", "content": "Hi"}],
                    )
                except anthropic.RateLimitError:
                    return None
                return clock.now()

            return list(await asyncio.gather(*(one() for _ in range(requests))))

    return clock.run(burst())


def test_the_limiter_paces_a_burst_past_the_limit_so_none_is_refused() -> None:
    clock = VirtualClock()
    limiter = RateLimiter()
    with AnthropicSimulator(clock=clock, rate_limits=RateLimits(requests_per_minute=10)) as sim:
        done = _paced_burst(clock, 25, limiter)
    assert None not in done
    # The bucket's 10 at once, then one each time it refills one (every 6 s), in turn.
    assert sorted(done) == pytest.approx([0.0] * 10 + [6.0 * k for k in range(1, 16)])
    assert [r.status for r in sim.requests].count(429) == 0
    assert limiter.refused == 0


def test_without_the_limiter_the_same_burst_is_refused() -> None:
    import anthropic

    clock = VirtualClock()

    async def burst() -> list[int]:
        async with anthropic.AsyncAnthropic(api_key="test", max_retries=0) as client:

            async def one() -> int:
                try:
                    await client.messages.create(
                        model=SONNET, max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
                    )
                except anthropic.RateLimitError:
                    return 429
                return 200

            return list(await asyncio.gather(*(one() for _ in range(25))))

    with AnthropicSimulator(clock=clock, rate_limits=RateLimits(requests_per_minute=10)):
        assert clock.run(burst()).count(429) == 15


def test_the_first_request_learns_the_limits_alone() -> None:
    clock = VirtualClock()
    latency = LLMLatency(ttft=1.0)
    with AnthropicSimulator(
        clock=clock, latency=latency, rate_limits=RateLimits(requests_per_minute=10)
    ):
        done = _paced_burst(clock, 3, RateLimiter())
    assert sorted(done) == pytest.approx([1.0, 2.0, 2.0])


def test_a_429_holds_back_every_request_of_that_model_until_retry_after() -> None:
    clock = VirtualClock()
    limiter = RateLimiter()
    headers = {"anthropic-ratelimit-requests-limit": "60", "retry-after": "5"}
    headers["anthropic-ratelimit-requests-remaining"] = "59"

    async def main() -> list[float]:
        ticket = await limiter.acquire(SONNET, input_tokens=10, output_tokens=10)
        limiter.observe(ticket, 429, headers)
        other = await limiter.acquire("claude-haiku-4-5", input_tokens=10, output_tokens=10)
        limiter.observe(other, 200, {**headers, "retry-after": "x"})
        times = [clock.now()]
        await limiter.acquire("claude-haiku-4-5", input_tokens=10, output_tokens=10)
        times.append(clock.now())
        await limiter.acquire(SONNET, input_tokens=10, output_tokens=10)
        return [*times, clock.now()]

    assert clock.run(main()) == pytest.approx([0.0, 0.0, 5.0])
    assert limiter.refused == 1
    assert limiter.waited == pytest.approx(5.0)


def test_waiting_requests_sleep_they_do_not_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    waits = 0
    original = RateLimiter._changed

    async def counted(state: Any, seconds: float) -> bool:
        nonlocal waits
        waits += 1
        return await original(state, seconds)

    monkeypatch.setattr(RateLimiter, "_changed", staticmethod(counted))
    clock = VirtualClock()
    with AnthropicSimulator(clock=clock, rate_limits=RateLimits(requests_per_minute=10)):
        _paced_burst(clock, 25, RateLimiter())
    # One wait for the first answer, then one per request sent after a refill, and a few
    # more where an answer woke the one whose turn it was early: nothing like a poll.
    assert waits <= 2 * 25


def test_a_request_bigger_than_the_bucket_is_sent_at_once_and_refused_by_the_api() -> None:
    clock = VirtualClock()
    limits = RateLimits(output_tokens_per_minute=8_000)
    with AnthropicSimulator(clock=clock, rate_limits=limits):
        limiter = RateLimiter()
        _paced_burst(clock, 1, limiter, max_tokens=100)
        done = _paced_burst(clock, 1, limiter, max_tokens=8_001)
    assert done == [None]
    assert limiter.refused == 1
    assert limiter.waited == 0


def test_other_endpoints_are_not_paced() -> None:
    import anthropic

    clock = VirtualClock()
    limiter = RateLimiter()

    async def main() -> int:
        http_client = anthropic.DefaultAsyncHttpxClient(event_hooks=limiter.event_hooks())
        async with anthropic.AsyncAnthropic(api_key="test", http_client=http_client) as client:
            count = await client.messages.count_tokens(
                model=SONNET, messages=[{"role": "user", "content": "Hi"}]
            )
        return count.input_tokens

    with AnthropicSimulator(clock=clock, rate_limits=RateLimits(requests_per_minute=1)):
        assert clock.run(main()) > 0
    assert repr(limiter) == "RateLimiter(models=[], waited=0.000, refused=0)"


@pytest.mark.slow
def test_the_limiter_is_safe_under_a_thousand_concurrent_requests() -> None:
    clock = VirtualClock()
    limiter = RateLimiter()
    with AnthropicSimulator(
        clock=clock, rate_limits=RateLimits(requests_per_minute=600), max_logged=10
    ):
        done = _paced_burst(clock, 1000, limiter, max_tokens=1)
    assert None not in done
    assert limiter.refused == 0
    assert max(d for d in done if d is not None) == pytest.approx(40.0)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), True])
def test_a_bad_probe_timeout_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match=f"probe_timeout must be .*{bad!r}"):
        RateLimiter(probe_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="input_tokens must be a callable"):
        RateLimiter(input_tokens=4)  # type: ignore[arg-type]


def test_a_whole_reply_gives_back_its_unused_output_estimate_at_once() -> None:
    """OTPM holds max_tokens until a request ends; the reply's usage says how much the API
    gives back then. Without reading it the mirror would wait for the bucket to refill
    (15 s for 1,000 of 2,000 a minute) before each next request."""
    clock = VirtualClock()
    limiter = RateLimiter()
    limits = RateLimits(output_tokens_per_minute=2_000)
    with AnthropicSimulator(clock=clock, latency=LLMLatency(ttft=1.0), rate_limits=limits):
        done = _paced_burst(clock, 6, limiter, max_tokens=1_000)
    assert sorted(done) == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert limiter.refused == 0


def test_under_an_output_token_limit_the_paced_requests_are_never_refused() -> None:
    """Requests sent the moment others end see those ends' give-backs: the simulator's
    end of a request (arrival + duration, in floating point) once landed a hair after the
    event loop's reading of that same moment, and a paced request was refused."""
    clock = VirtualClock()
    limiter = RateLimiter()
    limits = RateLimits(output_tokens_per_minute=8_000)
    latency = LLMLatency(connect=0.05, ttft=0.4, per_token=0.02)
    with AnthropicSimulator(clock=clock, latency=latency, rate_limits=limits):
        done = _paced_burst(clock, 60, limiter, max_tokens=1_024)
    assert None not in done
    assert limiter.refused == 0


@pytest.mark.parametrize(
    "header", [{"retry-after": "1000000000"}, {"retry-after-ms": "1e15"}, {"retry-after": "1e300"}]
)
def test_a_huge_retry_after_holds_the_model_back_a_minute_at_most(header: dict[str, str]) -> None:
    """Every limit is a bucket refilled whole within a minute, so no 429 of the API asks
    for longer: a header naming years must not freeze every request of the model."""
    clock = VirtualClock()
    limiter = RateLimiter()

    async def main() -> float:
        ticket = await limiter.acquire(SONNET, input_tokens=10, output_tokens=10)
        limits = {"anthropic-ratelimit-requests-limit": "60"}
        limits["anthropic-ratelimit-requests-remaining"] = "59"
        limiter.observe(ticket, 429, {**limits, **header})
        await limiter.acquire(SONNET, input_tokens=10, output_tokens=10)
        return clock.now()

    assert clock.run(main()) == pytest.approx(60.0)


def test_a_server_that_reports_no_limits_is_not_paced_one_request_at_a_time() -> None:
    """A gateway or proxy may send no anthropic-ratelimit-* headers: once the first
    response has come back without them there is nothing to pace by, and requests must
    not go one at a time, each waiting for the one before (or for the probe timeout)."""
    clock = VirtualClock()
    limiter = RateLimiter()

    async def main() -> list[float]:
        ticket = await limiter.acquire(SONNET, input_tokens=10, output_tokens=10)
        limiter.observe(ticket, 200, {"content-type": "application/json"})

        async def one() -> float:
            await limiter.acquire(SONNET, input_tokens=10, output_tokens=10)
            return clock.now()

        return list(await asyncio.gather(*(one() for _ in range(3))))

    assert clock.run(main()) == [0.0, 0.0, 0.0]


def test_a_429_without_limit_headers_still_holds_back_until_retry_after() -> None:
    clock = VirtualClock()
    limiter = RateLimiter()

    async def main() -> float:
        ticket = await limiter.acquire(SONNET, input_tokens=10, output_tokens=10)
        limiter.observe(ticket, 429, {"retry-after": "5"})
        await limiter.acquire(SONNET, input_tokens=10, output_tokens=10)
        return clock.now()

    assert clock.run(main()) == pytest.approx(5.0)


def test_the_sdks_retry_of_a_probe_that_got_no_response_probes_again_at_once() -> None:
    """The first request of a model learns its limits alone; if its connection fails, the
    SDK retries it, and that retry must not wait behind the probe it replaces (the probe
    timeout, 30 s, for every request of the model)."""
    import anthropic

    clock = VirtualClock()
    limiter = RateLimiter()

    async def main() -> list[float]:
        http_client = anthropic.DefaultAsyncHttpxClient(event_hooks=limiter.event_hooks())
        async with anthropic.AsyncAnthropic(
            api_key="test", max_retries=2, http_client=http_client
        ) as client:

            async def one() -> float:
                await client.messages.create(
                    model=SONNET, max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
                )
                return clock.now()

            return list(await asyncio.gather(one(), one()))

    with AnthropicSimulator(clock=clock, rate_limits=RateLimits(requests_per_minute=10)) as sim:
        sim.enqueue(Fault.connection_error())
        done = clock.run(main())
    assert max(done) < 5  # the SDK's first backoff is under a second
    assert limiter.refused == 0


def test_hooked_into_a_sync_client_the_limiter_says_so_instead_of_pacing_nothing() -> None:
    """httpx's sync client calls a hook and drops what it returns: the limiter's
    coroutine would never run, and nothing would be paced, silently."""
    import anthropic

    limiter = RateLimiter()
    http_client = anthropic.DefaultHttpxClient(event_hooks=limiter.event_hooks())
    with (
        AnthropicSimulator(clock=VirtualClock(), rate_limits=RateLimits(requests_per_minute=1)),
        anthropic.Anthropic(api_key="test", max_retries=0, http_client=http_client) as client,
        pytest.raises(anthropic.APIConnectionError) as raised,
    ):
        client.messages.create(
            model=SONNET, max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
        )
    # The SDK reports what its HTTP client raised as a connection error, caused by it.
    assert isinstance(raised.value.__cause__, TypeError)
    assert "for an async HTTP client" in str(raised.value.__cause__)


def test_a_limiter_outlives_its_event_loop_and_serves_the_next_one() -> None:
    """A limiter made once (a module global) used by one asyncio.run after another, as a
    script or a test per event loop does: its waits were bound to the first loop."""
    limiter = RateLimiter()
    empty = {"anthropic-ratelimit-requests-limit": "60"}
    empty["anthropic-ratelimit-requests-remaining"] = "0"

    async def contended() -> None:
        ticket = await limiter.acquire(SONNET, input_tokens=1, output_tokens=1)
        limiter.observe(ticket, 200, empty)
        await asyncio.gather(
            *(limiter.acquire(SONNET, input_tokens=1, output_tokens=1) for _ in range(2))
        )

    for _ in range(2):
        VirtualClock().run(contended())
    assert limiter.refused == 0


def test_two_event_loops_running_at_once_cannot_share_a_limiter() -> None:
    limiter = RateLimiter()
    started, release = threading.Event(), threading.Event()

    async def hold() -> None:
        await limiter.acquire(SONNET, input_tokens=1, output_tokens=1)
        started.set()
        await asyncio.to_thread(release.wait, 10)

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    try:
        assert started.wait(10)
        with pytest.raises(RuntimeError, match="one event loop at a time"):
            VirtualClock().run(limiter.acquire(SONNET, input_tokens=1, output_tokens=1))
    finally:
        release.set()
        thread.join()


@pytest.mark.slow
def test_against_a_real_server_without_rate_limit_headers_requests_go_at_once() -> None:
    """The limiter on the real SDK, a real event loop and a real HTTP server on loopback
    that sends no anthropic-ratelimit-* headers (as a gateway may not): six requests sent
    together take about one reply's time, not six replies one after another."""
    import time

    import anthropic

    from perfkit.simulation import SimulatedAssistant
    from tests.loopback_anthropic import fake_anthropic_app
    from tests.loopback_asgi import running_uvicorn

    reply = 0.3
    app = fake_anthropic_app(SimulatedAssistant(seed=1, tool_rate=0.0), LLMLatency(ttft=reply))
    limiter = RateLimiter()

    async def main(url: str) -> float:
        http_client = anthropic.DefaultAsyncHttpxClient(event_hooks=limiter.event_hooks())
        async with anthropic.AsyncAnthropic(
            api_key="test", base_url=url, max_retries=0, http_client=http_client
        ) as client:
            start = time.perf_counter()
            await asyncio.gather(
                *(
                    client.messages.create(
                        model=SONNET, max_tokens=16, messages=[{"role": "user", "content": "Hi"}]
                    )
                    for _ in range(6)
                )
            )
            return time.perf_counter() - start

    with running_uvicorn(app) as url:
        elapsed = asyncio.run(main(url))
    assert elapsed < 3 * reply  # one after another: 6 x 0.3 s
    assert limiter.refused == 0
