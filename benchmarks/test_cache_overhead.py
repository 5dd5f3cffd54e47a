"""What a cache hit costs, in real time, beside the alternatives, in the same run.

In-memory hits are timed in interleaved rounds, keeping each candidate's best round;
L2 hits, which wait on the Redis process, alternate single calls and compare medians
(see ``perfkit._compare``), so machine noise cannot tilt a ratio. The bounds are what
perfkit's cache promises: an L1 hit cheaper than cachetools', an L2 hit within 1.25x of a
raw GET and decode.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Iterator
from typing import Any

import cachetools
import pytest
from aiocache import Cache
from aiocache import cached as aiocache_cached

from perfkit._compare import alternating_medians, interleaved_best
from perfkit.cache import MultiLayerCache, cached
from perfkit.cache._serialization import JsonSerializer
from perfkit.simulation import RedisServer

PROMPT = "What is Python?"
MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-5",
    "content": [{"type": "text", "text": "Python is a programming language. " * 8}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 12, "output_tokens": 80},
}


def test_sync_l1_hit_against_cachetools_and_lru_cache(benchmark: Any, comparison: Any) -> None:
    perfkit_cache = MultiLayerCache(None, namespace="overhead")

    @cached(perfkit_cache, ttl=300)
    def ours(prompt: str) -> str:
        return prompt

    @cachetools.cached(cachetools.TTLCache(1024, 300), lock=threading.Lock())
    def with_cachetools(prompt: str) -> str:
        return prompt

    @functools.lru_cache(maxsize=1024)
    def with_lru_cache(prompt: str) -> str:
        return prompt

    candidates = {
        "perfkit L1 hit": lambda: ours(PROMPT),
        "cachetools TTLCache hit": lambda: with_cachetools(PROMPT),
        "functools.lru_cache hit": lambda: with_lru_cache(PROMPT),
    }
    for call in candidates.values():
        call()
    best = interleaved_best(candidates, number=20_000, repeat=15)
    ratio = best["perfkit L1 hit"] / best["cachetools TTLCache hit"]
    comparison(best, {"perfkit / cachetools": ratio})
    benchmark.pedantic(candidates["perfkit L1 hit"], rounds=5, iterations=1000)
    assert ours.cache_stats()["l1_hits"] > 0  # it kept its statistics while being timed
    assert ratio <= 0.8, f"a sync L1 hit costs {ratio:.2f}x a cachetools hit (bound: 0.8x)"


def test_l1_hit_of_a_mutable_value_against_cachetools_with_a_copy(comparison: Any) -> None:
    """An L1 hit of a dict decodes a fresh copy (a caller's change must never reach
    the cache); cachetools hands out its stored object, so the same guarantee with
    it costs a hit plus ``copy.deepcopy``."""
    perfkit_cache = MultiLayerCache(None, namespace="overhead")

    @cached(perfkit_cache, ttl=300)
    def ours(prompt: str) -> dict[str, Any]:
        return MESSAGE

    @cachetools.cached(cachetools.TTLCache(1024, 300), lock=threading.Lock())
    def with_cachetools(prompt: str) -> dict[str, Any]:
        return MESSAGE

    candidates = {
        "perfkit L1 hit (a copy)": lambda: ours(PROMPT),
        "cachetools hit + deepcopy": lambda: copy.deepcopy(with_cachetools(PROMPT)),
        "cachetools hit (shared)": lambda: with_cachetools(PROMPT),
    }
    for call in candidates.values():
        assert call() == MESSAGE
    best = interleaved_best(candidates, number=5_000, repeat=11)
    ratio = best["perfkit L1 hit (a copy)"] / best["cachetools hit + deepcopy"]
    shared = best["perfkit L1 hit (a copy)"] / best["cachetools hit (shared)"]
    comparison(best, {"perfkit / cachetools + deepcopy": ratio, "perfkit / shared": shared})
    assert ours.cache_stats()["l1_hits"] > 0
    assert ratio <= 0.9, f"a copying L1 hit costs {ratio:.2f}x cachetools + deepcopy (bound 0.9x)"


def test_async_l1_hit_against_aiocache(comparison: Any) -> None:
    perfkit_cache = MultiLayerCache(None, namespace="overhead")

    @cached(perfkit_cache, ttl=300)
    async def ours(prompt: str) -> str:
        return prompt

    @aiocache_cached(cache=Cache.MEMORY, ttl=300)
    async def with_aiocache(prompt: str) -> str:
        return prompt

    async def ours_hit() -> str:
        return await ours(PROMPT)

    async def aiocache_hit() -> str:
        return await with_aiocache(PROMPT)

    best = interleaved_best(
        {"perfkit async L1 hit": ours_hit, "aiocache memory hit": aiocache_hit},
        number=5_000,
        repeat=11,
    )
    ratio = best["perfkit async L1 hit"] / best["aiocache memory hit"]
    comparison(best, {"perfkit / aiocache": ratio})
    assert ours.cache_stats()["l1_hits"] > 0
    assert ratio <= 1 / 15, f"an async L1 hit costs 1/{1 / ratio:.1f} of aiocache's (bound 1/15)"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_l2_hit_against_a_raw_get_and_decode(
    benchmark: Any, comparison: Any, redis_server: RedisServer
) -> None:
    serializer = JsonSerializer()
    with redis_server.client() as client:
        perfkit_cache = MultiLayerCache(client, namespace="overhead", serializer=serializer)
        perfkit_cache.set("message", MESSAGE)
        client.set("raw-message", serializer.dumps(MESSAGE))

        def l2_hit() -> Any:
            perfkit_cache.l1.clear()  # every call must come from L2
            return perfkit_cache.get("message")

        def raw_get_and_decode() -> Any:
            return serializer.loads(client.get("raw-message"))

        assert l2_hit() == raw_get_and_decode() == MESSAGE
        medians = alternating_medians(
            {"perfkit L2 hit": l2_hit, "raw GET + decode": raw_get_and_decode}, calls=3000
        )
        ratio = medians["perfkit L2 hit"] / medians["raw GET + decode"]
        comparison(medians, {"perfkit / raw": ratio})
        benchmark.pedantic(l2_hit, rounds=5, iterations=100)
        assert perfkit_cache.stats()["l2_hits"] > 0
    # 1.25x: besides the GET and the decode, an L2 hit keeps the value's bytes in L1 only
    # if no invalidation of its key came since the lookup began (a check and a write under
    # one lock, so a stale value is never kept), and times the GET so that a slow Redis
    # opens the breaker. That work took the ratio from about 1.13x to about 1.19x here.
    assert ratio <= 1.25, f"an L2 hit costs {ratio:.2f}x a raw GET plus decode (bound: 1.25x)"
