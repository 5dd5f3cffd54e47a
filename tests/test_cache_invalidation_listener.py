"""Invalidations reach other processes' L1 through Redis pub/sub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis

from perfkit.cache import MultiLayerCache
from perfkit.simulation import RedisServer


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` (a listener thread works in real time); True once it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture(params=["fakeredis", "real"])
def sync_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fakeredis":
        yield fakeredis.FakeRedis()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    with server.client() as client:
        client.flushall()
        yield client


def test_an_invalidation_in_one_process_drops_the_entry_from_anothers_l1(
    sync_client: redis.Redis,
) -> None:
    here = MultiLayerCache(sync_client, namespace="shared")
    there = MultiLayerCache(sync_client, namespace="shared")
    here.set("price", 10)
    assert there.get("price") == 10  # now in there's L1 as well
    with there.listen_for_invalidations():
        here.delete("price")
        assert wait_for(lambda: there.l1.get(there.key("price")) is None)
        assert there.get("price", "gone") == "gone"
        here.set("a", 1)
        assert there.get("a") == 1
        here.clear()
        assert wait_for(lambda: len(there.l1) == 0)


def test_without_a_listener_another_l1_keeps_the_entry_until_its_ttl() -> None:
    client = fakeredis.FakeRedis()
    here, there = MultiLayerCache(client), MultiLayerCache(client)
    here.set("price", 10)
    there.get("price")
    here.delete("price")
    assert there.get("price") == 10  # what the listener is for


def test_the_async_listener_drops_entries_too() -> None:
    async def main() -> None:
        client = fakeredis.FakeAsyncRedis()
        here = MultiLayerCache(client, namespace="shared")
        there = MultiLayerCache(client, namespace="shared")
        await here.aset("price", 10)
        assert await there.aget("price") == 10
        async with await there.alisten_for_invalidations(poll_interval=0.01):
            await here.adelete("price")
            for _ in range(500):
                if there.l1.get(there.key("price")) is None:
                    break
                await asyncio.sleep(0.01)
            assert await there.aget("price", "gone") == "gone"
        await client.aclose()

    asyncio.run(main())


def test_listening_needs_the_right_kind_of_client() -> None:
    with pytest.raises(TypeError, match="needs a sync Redis client"):
        MultiLayerCache(None).listen_for_invalidations()
    with pytest.raises(TypeError, match="needs a sync Redis client"):
        MultiLayerCache(fakeredis.FakeAsyncRedis()).listen_for_invalidations()

    async def wrong_async() -> None:
        await MultiLayerCache(fakeredis.FakeRedis()).alisten_for_invalidations()

    with pytest.raises(TypeError, match=r"needs a redis\.asyncio client"):
        asyncio.run(wrong_async())
