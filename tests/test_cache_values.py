"""What L1 hands out and how much it keeps: copies, never the stored object, within a byte bound.

Issue 14: a caller that changed a mutable value it got changed what L1 served next, while
L2 still held the original; and L1 kept a value of any size.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import fakeredis
import pytest

from perfkit import VirtualClock
from perfkit.cache import JsonSerializer, MultiLayerCache, cached
from perfkit.cache._l1 import DEFAULT_L1_MAX_BYTES, LocalCache

MESSAGE = {"role": "assistant", "content": [{"type": "text", "text": "Hi"}], "ids": (1, 2)}


def fresh_message() -> dict[str, Any]:
    return {**MESSAGE, "content": [dict(block) for block in MESSAGE["content"]]}


def deface(message: dict[str, Any]) -> None:
    message["role"] = "attacker"
    message["content"][0]["text"] = "changed"
    message["content"].append({"type": "text", "text": "extra"})


# --- copies: a caller's change never reaches the cache ------------------------------------------


def test_a_change_to_a_returned_value_never_reaches_l1_or_l2() -> None:
    redis_client = fakeredis.FakeRedis()
    cache = MultiLayerCache(redis_client, namespace="values")

    @cached(cache)
    def reply(prompt: str) -> dict[str, Any]:
        return fresh_message()

    deface(reply("hi"))  # the miss's own value
    deface(reply("hi"))  # an L1 hit's value
    assert reply("hi") == MESSAGE
    assert cache.stats()["l1_hits"] == 2
    from_l2 = cached(MultiLayerCache(redis_client, namespace="values"))(reply.__wrapped__)
    assert from_l2("hi") == reply("hi") == MESSAGE


def test_async_a_change_to_a_returned_value_never_reaches_the_cache() -> None:
    cache = MultiLayerCache(fakeredis.FakeAsyncRedis(), namespace="values", clock=VirtualClock())

    @cached(cache)
    async def reply(prompt: str) -> dict[str, Any]:
        return fresh_message()

    async def main() -> dict[str, Any]:
        deface(await reply("hi"))
        deface(await reply("hi"))
        return await reply("hi")

    assert asyncio.run(main()) == MESSAGE


def test_set_and_get_keep_their_own_copy() -> None:
    for redis_client in (None, fakeredis.FakeRedis()):
        cache = MultiLayerCache(redis_client, namespace="values")
        message = fresh_message()
        cache.set("m", message)
        deface(message)  # after the set
        deface(cache.get("m"))  # after a get
        assert cache.get("m") == MESSAGE
        assert cache.lookup(cache.key("m")).value == MESSAGE


def test_an_l1_hit_returns_what_an_l2_hit_would() -> None:
    # The serializer turns a set into a sorted list: L2 returns the list, and so must L1.
    serializer = JsonSerializer(default=sorted)
    redis_client = fakeredis.FakeRedis()
    cache = MultiLayerCache(redis_client, namespace="values", serializer=serializer)
    cache.set("tags", {"tags": {"b", "a"}})
    other = MultiLayerCache(redis_client, namespace="values", serializer=serializer)
    assert cache.get("tags") == other.get("tags") == {"tags": ["a", "b"]}
    assert (cache.stats()["l1_hits"], other.stats()["l2_hits"]) == (1, 1)


def test_a_value_the_serializer_refuses_is_still_a_copy_in_l1() -> None:
    cache = MultiLayerCache(None, namespace="values")  # JSON cannot carry a set

    @cached(cache)
    def members() -> set[int]:
        return {1, 2}

    members().add(3)
    members().add(4)
    assert members() == {1, 2}
    assert cache.stats()["l1_hits"] == 2


def test_a_value_that_cannot_be_copied_is_not_kept_and_is_counted() -> None:
    cache = MultiLayerCache(None, namespace="values")
    calls = []

    @cached(cache)
    def lock() -> Any:
        calls.append(1)
        return threading.Lock()

    assert lock() is not lock()
    assert len(calls) == 2
    assert cache.stats()["l1_refused"] == 2


def test_immutable_values_are_returned_as_they_are() -> None:
    cache = MultiLayerCache(None, namespace="values")
    value = ("a", 1, 2.5, None, b"x", frozenset({1}))
    cache.set("v", value)
    assert cache.get("v") is value


def test_kept_exceptions_are_still_raised_from_l1() -> None:
    cache = MultiLayerCache(None, namespace="values")
    calls = []

    @cached(cache, cache_exceptions=(KeyError,))
    def missing(name: str) -> int:
        calls.append(name)
        raise KeyError(name)

    for _ in range(2):
        with pytest.raises(KeyError):
            missing("x")
    assert calls == ["x"]


# --- the byte bound ------------------------------------------------------------------------------


def test_a_value_larger_than_the_bound_is_not_kept_in_l1_but_still_in_l2() -> None:
    redis_client = fakeredis.FakeRedis()
    cache = MultiLayerCache(redis_client, namespace="values", l1_max_bytes=1000)

    @cached(cache)
    def big(n: int) -> list[str]:
        return ["x" * 100] * n

    assert len(big(20)) == 20
    assert (len(cache.l1), cache.l1.bytes) == (0, 0)
    assert len(big(20)) == 20
    assert (cache.stats()["l1_refused"], cache.stats()["l2_hits"]) == (2, 1)
    assert len(big(2)) == 2  # a small one is kept
    assert len(cache.l1) == 1


def test_a_payload_larger_than_l2_max_bytes_is_not_sent_to_redis() -> None:
    # It reached Redis whatever its size: one 1 GB value, refused there, counted as a
    # Redis failure for every key's breaker.
    redis_client = fakeredis.FakeRedis()
    cache = MultiLayerCache(redis_client, namespace="values", l2_max_bytes=1000)
    cache.set("small", "x" * 10)
    cache.set("big", "x" * 2000)
    assert cache.get("big") == "x" * 2000  # L1 keeps it
    assert redis_client.exists(cache.key("small")) == 1
    assert redis_client.exists(cache.key("big")) == 0
    assert cache.stats()["l2_refused"] == 1
    assert cache.stats()["l2_errors"] == 0
    assert cache.breaker.state == "closed"
    cache.set("small", "y" * 2000)  # a value grown too large drops the older L2 entry
    assert redis_client.exists(cache.key("small")) == 0
    cache.l1.clear()
    assert cache.get("small") is None


def test_the_l2_bound_is_16_mib_by_default_and_must_be_a_positive_int() -> None:
    assert MultiLayerCache(None).l2_max_bytes == 16 * 1024 * 1024
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ValueError, match=r"l2_max_bytes must be an int >= 1, got "):
            MultiLayerCache(None, l2_max_bytes=bad)  # type: ignore[arg-type]


def test_the_default_bound_refuses_a_value_of_more_than_64_mib() -> None:
    assert DEFAULT_L1_MAX_BYTES == 64 * 1024 * 1024
    cache = MultiLayerCache(None, namespace="values")
    cache.set("big", b"x" * DEFAULT_L1_MAX_BYTES)
    assert cache.get("big") is None
    assert cache.stats()["l1_refused"] == 1


def test_lru_eviction_keeps_the_total_within_the_bound() -> None:
    cache = MultiLayerCache(None, namespace="values", l1_max_bytes=10_000)
    for index in range(200):
        cache.set(f"k{index}", {"index": index, "text": "y" * 200})
        assert cache.l1.bytes <= 10_000
    assert 0 < len(cache.l1) < 200
    assert cache.get("k199") == {"index": 199, "text": "y" * 200}
    assert cache.get("k0") is None
    assert cache.stats()["l1_evictions"] == 200 - len(cache.l1)


def test_a_too_large_value_drops_the_older_entry_of_its_key() -> None:
    cache = MultiLayerCache(None, namespace="values", l1_max_bytes=1000)
    cache.set("k", "small")
    cache.set("k", "z" * 2000)
    assert cache.get("k") is None  # never the stale small value


def test_the_byte_count_follows_deletes_expiries_and_clears() -> None:
    now = [0.0]
    l1 = LocalCache(maxsize=10, timer=lambda: now[0], max_bytes=10_000)
    l1.set("a", [1, 2, 3], ttl=5)
    l1.set("b", "text", ttl=50)
    l1.set("b", "longer text", ttl=50)
    assert l1.bytes > 0
    l1.delete("b")
    now[0] = 10.0
    assert l1.get("a") is None
    assert l1.bytes == 0
    l1.set("c", {"x": 1}, ttl=5)
    l1.clear()
    assert (len(l1), l1.bytes) == (0, 0)


@pytest.mark.parametrize("bound", [0, -1, 1.5, True, "1"])
def test_the_bound_must_be_a_positive_int(bound: Any) -> None:
    message = f"l1_max_bytes must be an int >= 1, got {bound!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        MultiLayerCache(None, l1_max_bytes=bound)


def test_concurrent_callers_of_one_miss_each_get_their_own_copy() -> None:
    cache = MultiLayerCache(None, namespace="values")
    started, release = threading.Event(), threading.Event()

    @cached(cache)
    def slow() -> dict[str, Any]:
        started.set()
        release.wait(5)
        return fresh_message()

    results: list[dict[str, Any]] = []
    callers = [threading.Thread(target=lambda: results.append(slow())) for _ in range(2)]
    callers[0].start()
    assert started.wait(5)
    callers[1].start()
    deadline = time.monotonic() + 5
    while cache.stats()["coalesced"] < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for caller in callers:
        caller.join(5)
    assert cache.stats()["coalesced"] == 1
    deface(results[0])
    assert results[1] == MESSAGE
