"""Stampede protection across processes: a Redis lock that expires."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import fakeredis
import pytest

from perfkit import VirtualClock
from perfkit.cache import MultiLayerCache, cached


def two_processes(
    redis_client: object, clock: VirtualClock | None = None, **options: float
) -> tuple[MultiLayerCache, MultiLayerCache]:
    """Two caches over one Redis, each with its own L1 and in-process flights."""
    make: Callable[[], MultiLayerCache] = lambda: MultiLayerCache(  # noqa: E731
        redis_client, namespace="locked", clock=clock, **options
    )
    return make(), make()


def test_two_processes_missing_one_key_compute_it_once_in_virtual_time() -> None:
    clock = VirtualClock()
    first, second = two_processes(fakeredis.FakeAsyncRedis(), clock, lock_timeout=10, lock_poll=0.1)
    calls: list[str] = []

    async def origin(question: str) -> str:
        calls.append(question)
        await asyncio.sleep(2.0)  # a 2 s LLM call
        return f"answer to {question}"

    ask_first, ask_second = cached(first)(origin), cached(second)(origin)

    async def main() -> tuple[str, str]:
        results = await asyncio.gather(ask_first("q"), ask_second("q"))
        return results[0], results[1]

    start = clock.now()
    assert clock.run(main()) == ("answer to q", "answer to q")
    assert calls == ["q"]
    assert clock.elapsed(start) == 2.0  # the waiter's 20th poll finds the value written at 2 s
    assert second.stats()["l2_hits"] == 0  # its answer came from the lock-holder's write


def test_threads_of_two_processes_compute_once() -> None:
    first, second = two_processes(fakeredis.FakeRedis(), lock_timeout=5, lock_poll=0.01)
    calls: list[int] = []

    def origin(x: int) -> int:
        calls.append(x)
        time.sleep(0.1)
        return x * 2

    functions = [cached(first)(origin), cached(second)(origin)]
    results: list[int] = []
    threads = [threading.Thread(target=lambda f=f: results.append(f(21))) for f in functions * 8]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [42] * 16
    assert calls == [21]


def test_a_lock_whose_holder_died_expires_and_the_waiter_computes() -> None:
    clock = VirtualClock()
    redis_client = fakeredis.FakeRedis()
    first, second = two_processes(redis_client, clock, lock_timeout=1.0, lock_poll=0.25)
    computed: list[str] = []

    @cached(second)
    def fresh() -> str:
        computed.append("x")
        return "fresh"

    assert first.acquire_lock(fresh.cache_key(), b"dead-process") is True  # never released

    start = clock.now()
    assert fresh() == "fresh"
    assert computed == ["x"]
    assert clock.elapsed(start) == 1.0  # waited out the lock's lifetime


def test_the_lock_is_released_even_when_the_origin_fails() -> None:
    redis_client = fakeredis.FakeRedis()
    cache = MultiLayerCache(redis_client, namespace="locked", lock_timeout=30)

    @cached(cache)
    def broken() -> None:
        raise RuntimeError("origin failed")

    with pytest.raises(RuntimeError, match="origin failed"):
        broken()
    assert redis_client.keys("*:lock") == []


def test_without_redis_the_lock_is_skipped() -> None:
    cache = MultiLayerCache(None, lock_timeout=1)

    @cached(cache)
    def value() -> int:
        return 1

    assert value() == 1


@pytest.mark.parametrize("option", ["lock_timeout", "lock_poll"])
def test_lock_options_are_checked(option: str) -> None:
    with pytest.raises(ValueError, match=f"{option} must be a finite number of seconds > 0, got 0"):
        MultiLayerCache(None, **{option: 0})
