"""The invalidation race: a value computed before ``invalidate()`` must never be written
back after it, to L1 or to L2, in this process or in another one listening for
invalidations. A storm of writes, invalidations and reads over a few keys, in threads
and in asyncio tasks, on fakeredis and on a real server; afterwards every key's L1 and
L2 value is the latest origin value, or absent."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

from perfkit.cache import MultiLayerCache, cached
from perfkit.simulation import RedisServer

KEYS = 20
WRITES = 2000
READS_PER_WRITE = 2
THREADS = 16
TASKS = 32
COMPUTE_SECONDS = 0.002
# (backend, seed): one storm in the default run, the others (seconds each) under -m slow.
FAST_STORM = [("fakeredis", 0)]
SLOW_STORMS = [("real", 0), ("fakeredis", 1), ("real", 1)]
THREAD_STORMS = [
    *FAST_STORM,
    *(pytest.param(*storm, marks=pytest.mark.slow) for storm in SLOW_STORMS),
]
TASK_STORMS = [
    pytest.param(*storm, marks=pytest.mark.slow) for storm in [*FAST_STORM, *SLOW_STORMS]
]

namespaces = itertools.count()


class Origin:
    """The source of truth: one version number per key, bumped by every write."""

    def __init__(self) -> None:
        self.versions = dict.fromkeys(range(KEYS), 0)
        self.lock = threading.Lock()

    def write(self, key: int) -> None:
        with self.lock:
            self.versions[key] += 1

    def read(self, key: int) -> int:
        with self.lock:
            return self.versions[key]


def operations(seed: int) -> list[tuple[str, int]]:
    """WRITES writes (each followed by its invalidation) among reads, over KEYS keys."""
    rng = random.Random(seed)
    ops = [("write", rng.randrange(KEYS)) for _ in range(WRITES)]
    ops += [("read", rng.randrange(KEYS)) for _ in range(WRITES * READS_PER_WRITE)]
    rng.shuffle(ops)
    return ops


def shares(items: list[Any], workers: int) -> list[list[Any]]:
    """``items`` dealt round-robin to ``workers`` (each runs its share in order)."""
    return [items[start::workers] for start in range(workers)]


def stale_keys(
    origin: Origin,
    caches: list[MultiLayerCache],
    key_of: Callable[[int], str],
    l2: Callable[[str], Any],
) -> dict[str, list[int]]:
    """The keys whose L1 (in any of ``caches``) or L2 (``l2(full_key)``, a Found) value is
    neither absent nor the latest origin value."""
    stale: dict[str, list[int]] = {"l1": [], "l2": []}
    for key in range(KEYS):
        latest = origin.read(key)
        for cache in caches:
            entry = cache.l1.get(key_of(key))
            if entry is not None and entry.value != latest:
                stale["l1"].append(key)
        found = l2(key_of(key))
        if found.hit and found.value != latest:
            stale["l2"].append(key)
    return stale


# -- threads, sync clients ----------------------------------------------------------------


@pytest.fixture
def sync_clients(request: pytest.FixtureRequest) -> Iterator[Callable[[], redis.Redis]]:
    """Makes clients of one Redis (fakeredis, or the session's real server)."""
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()
        made: list[redis.Redis] = []

        def make_fake() -> redis.Redis:
            made.append(fakeredis.FakeRedis(server=server))
            return made[-1]

        yield make_fake
        for client in made:
            client.close()
        return
    real: RedisServer = request.getfixturevalue("redis_server")
    clients: list[redis.Redis] = []

    def make_real() -> redis.Redis:
        clients.append(real.client(max_connections=64))
        return clients[-1]

    yield make_real
    for client in clients:
        client.close()


def wait_for_listener(writer: MultiLayerCache, reader: MultiLayerCache) -> None:
    """Every invalidation published so far has reached ``reader``'s listener (messages on
    one channel arrive in order, so a last one seen means all earlier ones were)."""
    reader.set("sentinel", 1)
    deadline = time.monotonic() + 5
    writer.delete("sentinel")
    while reader.l1.get(reader.key("sentinel")) is not None:
        assert time.monotonic() < deadline, "the invalidation listener fell behind"
        time.sleep(0.002)


@pytest.mark.parametrize(("sync_clients", "seed"), THREAD_STORMS, indirect=["sync_clients"])
def test_no_value_computed_before_an_invalidation_survives_it_in_threads(
    sync_clients: Callable[[], redis.Redis], seed: int
) -> None:
    namespace = f"race-threads-{seed}-{next(namespaces)}"
    here = MultiLayerCache(sync_clients(), namespace=namespace)
    there = MultiLayerCache(sync_clients(), namespace=namespace)  # another "process"
    origin = Origin()
    functions = {}
    for cache in (here, there):

        @cached(cache, ttl=300, name="race.value")
        def value(key: int) -> int:
            version = origin.read(key)
            time.sleep(COMPUTE_SECONDS)  # a write and its invalidation may come meanwhile
            return version

        functions[cache] = value
    rng = random.Random(seed)
    chosen = [(op, key, rng.choice((here, there))) for op, key in operations(seed)]

    def run(share: list[tuple[str, int, MultiLayerCache]]) -> None:
        for op, key, cache in share:
            if op == "write":
                origin.write(key)
                assert functions[cache].invalidate(key) is True
            else:
                functions[cache](key)

    with (
        here.listen_for_invalidations(poll_interval=0.01),
        there.listen_for_invalidations(poll_interval=0.01),
    ):
        with ThreadPoolExecutor(THREADS) as pool:
            for future in [pool.submit(run, share) for share in shares(chosen, THREADS)]:
                future.result()
        wait_for_listener(here, there)
        wait_for_listener(there, here)
    fresh = MultiLayerCache(sync_clients(), namespace=namespace)
    stale = stale_keys(
        origin,
        [here, there],
        functions[here].cache_key,
        lambda key: fresh.lookup(key, check_l1=False),
    )
    assert stale == {"l1": [], "l2": []}


# -- asyncio tasks, asyncio clients -------------------------------------------------------


@pytest.fixture
async def async_clients(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[[], redis.asyncio.Redis]]:
    """Makes asyncio clients of one Redis (fakeredis, or the session's real server)."""
    made: list[redis.asyncio.Redis] = []
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()

        def make() -> redis.asyncio.Redis:
            made.append(fakeredis.FakeAsyncRedis(server=server))
            return made[-1]

    else:
        real: RedisServer = request.getfixturevalue("redis_server")

        def make() -> redis.asyncio.Redis:
            made.append(real.async_client())
            return made[-1]

    yield make
    for client in made:
        await client.aclose()


async def await_listener(writer: MultiLayerCache, reader: MultiLayerCache) -> None:
    """The asyncio twin of :func:`wait_for_listener`."""
    await reader.aset("sentinel", 1)
    deadline = time.monotonic() + 5
    await writer.adelete("sentinel")
    while reader.l1.get(reader.key("sentinel")) is not None:
        assert time.monotonic() < deadline, "the invalidation listener fell behind"
        await asyncio.sleep(0.002)


@pytest.mark.parametrize(("async_clients", "seed"), TASK_STORMS, indirect=["async_clients"])
async def test_no_value_computed_before_an_invalidation_survives_it_in_tasks(
    async_clients: Callable[[], redis.asyncio.Redis], seed: int
) -> None:
    namespace = f"race-tasks-{seed}-{next(namespaces)}"
    here = MultiLayerCache(async_clients(), namespace=namespace)
    there = MultiLayerCache(async_clients(), namespace=namespace)
    origin = Origin()
    functions = {}
    for cache in (here, there):

        @cached(cache, ttl=300, name="race.value")
        async def value(key: int) -> int:
            version = origin.read(key)
            await asyncio.sleep(COMPUTE_SECONDS)  # a write and its invalidation may come
            return version

        functions[cache] = value
    rng = random.Random(seed)
    chosen = [(op, key, rng.choice((here, there))) for op, key in operations(seed)]

    async def run(share: list[tuple[str, int, MultiLayerCache]]) -> None:
        for op, key, cache in share:
            if op == "write":
                origin.write(key)
                assert await functions[cache].ainvalidate(key) is True
            else:
                await functions[cache](key)

    listeners = [
        await cache.alisten_for_invalidations(poll_interval=0.01) for cache in (here, there)
    ]
    try:
        async with asyncio.TaskGroup() as group:
            for share in shares(chosen, TASKS):
                group.create_task(run(share))
        await await_listener(here, there)
        await await_listener(there, here)
    finally:
        for listener in listeners:
            await listener.stop()
    fresh = MultiLayerCache(async_clients(), namespace=namespace)
    l2 = {}
    for key in range(KEYS):
        full_key = functions[here].cache_key(key)
        l2[full_key] = await fresh.alookup(full_key, check_l1=False)
    stale = stale_keys(origin, [here, there], functions[here].cache_key, l2.__getitem__)
    assert stale == {"l1": [], "l2": []}
