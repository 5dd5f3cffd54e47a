"""The chapter's "Async Impact" table, measured, plus one tool-use turn's tools run in parallel.

Every wait is modeled and runs in virtual time: the 5 database queries go through a real
redis.asyncio client (fakeredis) with a 100 ms modeled round trip, the 10 file reads
read real files behind a 100 ms modeled disk, and the tools sleep their modeled time.
The 3 API calls are in test_api_calls.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from perfkit import Perf
from perfkit._clock import Clock
from perfkit.concurrency import gather_bounded, run_tool_calls
from perfkit.simulation import fake_async_redis

QUERY_ROUND_TRIP = 0.100
FILE_READ = 0.100
MODES = ["sequential", "concurrent"]


async def run_all(mode: str, jobs: list[Any]) -> list[Any]:
    if mode == "sequential":
        return [await job() for job in jobs]
    return await gather_bounded(jobs)


@pytest.mark.parametrize("mode", MODES)
def test_five_database_queries(perf: Perf, perfkit_clock: Clock, mode: str) -> None:
    async def five_queries() -> list[Any]:
        # Connecting costs no modeled time here: only the queries' round trips count.
        async with fake_async_redis(latency=QUERY_ROUND_TRIP, clock=perfkit_clock) as db:
            return await run_all(mode, [lambda n=n: db.get(f"user:{n}") for n in range(5)])

    assert perf(five_queries, rounds=3) == [None] * 5


@pytest.mark.parametrize("mode", MODES)
def test_ten_file_reads(perf: Perf, perfkit_clock: Clock, mode: str, tmp_path: Path) -> None:
    files = []
    for n in range(10):
        files.append(tmp_path / f"doc{n}.txt")
        files[-1].write_text(f"document {n}")

    async def read(path: Path) -> str:
        await perfkit_clock.asleep(FILE_READ)  # the modeled disk
        return await asyncio.to_thread(path.read_text)

    async def ten_reads() -> list[Any]:
        return await run_all(mode, [lambda p=p: read(p) for p in files])

    assert perf(ten_reads, rounds=3) == [f"document {n}" for n in range(10)]


TOOL_SECONDS = {"search": 0.5, "weather": 0.2, "calendar": 0.3, "stocks": 0.4}


def make_tool(seconds: float) -> Any:
    async def tool(**arguments: Any) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return arguments

    return tool


@pytest.mark.parametrize("mode", MODES)
def test_one_tool_use_turn(perf: Perf, mode: str) -> None:
    tools = {name: make_tool(seconds) for name, seconds in TOOL_SECONDS.items()}
    turn = [
        {"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": {"n": n}}
        for n, name in enumerate(TOOL_SECONDS)
    ]

    async def execute() -> list[Any]:
        if mode == "concurrent":
            return await run_tool_calls(turn, tools)
        results = []
        for call in turn:  # one after another, the way a naive agent loops
            results += await run_tool_calls([call], tools)
        return results

    results = perf(execute, rounds=3)
    assert [result["tool_use_id"] for result in results] == [call["id"] for call in turn]
