"""Bounded gathering and parallel tool execution, timed exactly in virtual time."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from anthropic.types import TextBlock, ToolUseBlock

from perfkit import VirtualClock
from perfkit.concurrency import gather_bounded, map_bounded, run_tool_calls


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
