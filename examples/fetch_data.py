"""The book chapter's ``fetch_data``: three independent lookups, one after another and
all at once, measured in virtual time (run: ``python examples/fetch_data.py``)."""

from __future__ import annotations

import asyncio

from perfkit import VirtualClock
from perfkit.concurrency import gather_bounded


async def get_user() -> dict[str, str]:
    await asyncio.sleep(0.050)  # 50 ms
    return {"id": "u1"}


async def get_prefs() -> dict[str, str]:
    await asyncio.sleep(0.050)  # 50 ms
    return {"theme": "dark"}


async def get_history() -> list[str]:
    await asyncio.sleep(0.100)  # 100 ms
    return ["hello"]


async def fetch_data_sequential() -> tuple[object, ...]:
    return (await get_user(), await get_prefs(), await get_history())


async def fetch_data() -> tuple[object, ...]:
    user, prefs, history = await gather_bounded([get_user, get_prefs, get_history])
    return user, prefs, history


def main() -> dict[str, float]:
    clock = VirtualClock()
    timings = {}
    for name, version in (("sequential", fetch_data_sequential), ("async", fetch_data)):
        start = clock.now()
        clock.run(version())
        timings[name] = clock.elapsed(start)
    return timings


if __name__ == "__main__":
    timings = main()
    print(f"sequential: {timings['sequential'] * 1000:.0f} ms")  # 200 ms
    print(f"async:      {timings['async'] * 1000:.0f} ms")  # 100 ms
    print(f"speedup:    {timings['sequential'] / timings['async']:.1f}x")
