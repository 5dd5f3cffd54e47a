"""Contract tests of perfkit.cache: one suite over every L2 backend (fakeredis and a real
server, each through a sync and an asyncio client), on a virtual clock.

Each test body is written once. The :class:`Backend` adapter runs it the backend's way:
sync backends call sync functions and the sync methods, async backends coroutine
functions and the ``a*`` methods; crowds are 32 threads or 1,000 tasks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import pickle
import re
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import fakeredis
import pytest
import pytest_asyncio
import redis

from perfkit._clock import VirtualClock
from perfkit.cache import (
    CacheStatsSnapshot,
    CacheWarning,
    Found,
    JsonSerializer,
    MultiLayerCache,
    SignedPickleSerializer,
    cached,
)

NAMESPACE = "contract"
TTL = 300.0  # virtual seconds; real servers expire by PX in real time, so keep it long
SYNC_BACKENDS = ("fakeredis-sync", "valkey-sync")
ASYNC_BACKENDS = ("fakeredis-async", "valkey-async")
THREAD_CROWD = 32
TASK_CROWD = 1000
WAIT_LIMIT = 10.0  # real seconds a test waits for other threads or tasks before failing
# The statistics the book chapter prints for its cache.
CHAPTER_STATS = ("l1_hits", "l2_hits", "misses", "total_requests", "hit_rate")
MISSING = object()
SECRET = b"contract-secret-0123456789abcdef"


# --- backends -------------------------------------------------------------------------------


class Gate:
    """Holds an origin's callers (threads or tasks) until opened, counting arrivals."""

    def __init__(self, is_async: bool) -> None:
        self.arrivals = 0
        self._task_event = asyncio.Event() if is_async else None
        self._thread_event = threading.Event()

    def open(self) -> None:
        self._thread_event.set()
        if self._task_event is not None:
            self._task_event.set()

    def pass_thread(self) -> None:
        self.arrivals += 1
        if not self._thread_event.wait(WAIT_LIMIT):
            raise AssertionError(f"the gate stayed shut for {WAIT_LIMIT} s")

    async def pass_task(self) -> None:
        assert self._task_event is not None
        self.arrivals += 1
        await self._task_event.wait()


@dataclasses.dataclass
class Crowd:
    """Concurrent calls of one function: tasks, or threads of an executor."""

    tasks: list[asyncio.Task[Any]]
    threads: list[Future[Any]]
    executor: ThreadPoolExecutor | None

    async def outcomes(self) -> list[Any]:
        """Each call's value or exception, once all have finished."""
        if self.tasks:
            return list(await asyncio.gather(*self.tasks, return_exceptions=True))
        assert self.executor is not None
        self.executor.shutdown(wait=True)
        return [future.exception() or future.result() for future in self.threads]


@dataclasses.dataclass
class Backend:
    """An L2 under test: a Redis client, sync or asyncio, and a sync view of its data."""

    kind: str
    client: Any
    raw: redis.Redis

    @property
    def is_async(self) -> bool:
        return self.kind.endswith("-async")

    @property
    def crowd_size(self) -> int:
        return TASK_CROWD if self.is_async else THREAD_CROWD

    def cache(self, clock: VirtualClock, **options: Any) -> MultiLayerCache:
        options.setdefault("namespace", NAMESPACE)
        options.setdefault("ttl", TTL)
        return MultiLayerCache(self.client, clock=clock, **options)

    def origin(self, body: Callable[..., Any], gate: Gate | None = None) -> Callable[..., Any]:
        """``body`` as the kind of function this backend caches (a coroutine function for
        async backends), waiting at ``gate`` first if one is given."""
        if self.is_async:

            @functools.wraps(body)
            async def coroutine_function(*args: Any, **kwargs: Any) -> Any:
                if gate is not None:
                    await gate.pass_task()
                return body(*args, **kwargs)

            return coroutine_function
        if gate is None:
            return body

        @functools.wraps(body)
        def function(*args: Any, **kwargs: Any) -> Any:
            gate.pass_thread()
            return body(*args, **kwargs)

        return function

    def gated(self, gate: Gate) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """:meth:`origin` as a decorator, holding callers at ``gate``."""
        return functools.partial(self.origin, gate=gate)

    def gate(self) -> Gate:
        return Gate(self.is_async)

    async def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        return await result if self.is_async else result

    async def method(self, target: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        """``target.name(...)``, or ``await target.aname(...)`` for async backends."""
        return await self.call(
            getattr(target, f"a{name}" if self.is_async else name), *args, **kwargs
        )

    def crowd(self, function: Callable[..., Any], *args: Any) -> Crowd:
        if self.is_async:
            tasks = [asyncio.create_task(function(*args)) for _ in range(self.crowd_size)]
            return Crowd(tasks, [], None)
        executor = ThreadPoolExecutor(max_workers=self.crowd_size)
        threads = [executor.submit(function, *args) for _ in range(self.crowd_size)]
        return Crowd([], threads, executor)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_LIMIT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"still waiting after {WAIT_LIMIT} s")
            await asyncio.sleep(0 if self.is_async else 0.001)


@asynccontextmanager
async def open_backend(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if kind.startswith("fakeredis"):
        server = fakeredis.FakeServer()
        raw = fakeredis.FakeRedis(server=server)
        client: Any = fakeredis.FakeAsyncRedis(server=server) if kind.endswith("async") else raw
    else:
        redis_server = request.getfixturevalue("redis_server")
        raw = redis_server.client()
        client = redis_server.async_client() if kind.endswith("async") else raw
        raw.flushall()
    try:
        yield Backend(kind, client, raw)
    finally:
        if kind.startswith("valkey"):
            raw.flushall()
        if client is not raw:
            await client.aclose()
        raw.close()


@pytest_asyncio.fixture(params=SYNC_BACKENDS + ASYNC_BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with open_backend(request.param, request) as opened:
        yield opened


@pytest_asyncio.fixture(params=ASYNC_BACKENDS)
async def async_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with open_backend(request.param, request) as opened:
        yield opened


def chapter_view(stats: dict[str, int | float]) -> dict[str, int | float]:
    return {name: stats[name] for name in CHAPTER_STATS}


def combined(*caches: MultiLayerCache) -> dict[str, int | float]:
    snapshots = [cache.stats_snapshot() for cache in caches]
    totals = {
        field.name: sum(getattr(snapshot, field.name) for snapshot in snapshots)
        for field in dataclasses.fields(CacheStatsSnapshot)
    }
    return CacheStatsSnapshot(**totals).as_dict()


def l1_expiry(cache: MultiLayerCache, key: str) -> float | None:
    entry = cache.l1.get(key)
    return None if entry is None else entry.expires


# --- the read path --------------------------------------------------------------------------


async def test_walkthrough_miss_then_l1_hit_then_l2_hit_from_a_fresh_cache(
    backend: Backend, clock: VirtualClock
) -> None:
    questions: list[str] = []

    def decorate(cache: MultiLayerCache) -> Callable[..., Any]:
        @cached(cache, ttl=300)
        @backend.origin
        def answer(question: str) -> str:
            questions.append(question)
            return f"answer to {question}"

        return answer

    first_cache = backend.cache(clock)
    first = decorate(first_cache)
    assert await backend.call(first, "what is caching?") == "answer to what is caching?"
    assert await backend.call(first, "what is caching?") == "answer to what is caching?"
    fresh_cache = backend.cache(clock)
    fresh = decorate(fresh_cache)
    assert await backend.call(fresh, "what is caching?") == "answer to what is caching?"

    assert questions == ["what is caching?"]
    first_stats = {"l1_hits": 1, "l2_hits": 0, "misses": 1, "total_requests": 2, "hit_rate": 0.5}
    fresh_stats = {"l1_hits": 0, "l2_hits": 1, "misses": 0, "total_requests": 1, "hit_rate": 1.0}
    assert chapter_view(first_cache.stats()) == chapter_view(first.cache_stats()) == first_stats
    assert chapter_view(fresh_cache.stats()) == chapter_view(fresh.cache_stats()) == fresh_stats
    assert chapter_view(combined(first_cache, fresh_cache)) == {
        "l1_hits": 1,
        "l2_hits": 1,
        "misses": 1,
        "total_requests": 3,
        "hit_rate": 0.6667,
    }


async def test_stats_per_function_and_per_cache(backend: Backend, clock: VirtualClock) -> None:
    cache = backend.cache(clock)

    @cached(cache)
    @backend.origin
    def double(x: int) -> int:
        return 2 * x

    @cached(cache)
    @backend.origin
    def triple(x: int) -> int:
        return 3 * x

    assert [await backend.call(double, 4), await backend.call(double, 4)] == [8, 8]
    assert await backend.call(triple, 4) == 12
    assert chapter_view(double.cache_stats()) == {
        "l1_hits": 1,
        "l2_hits": 0,
        "misses": 1,
        "total_requests": 2,
        "hit_rate": 0.5,
    }
    assert chapter_view(triple.cache_stats()) == {
        "l1_hits": 0,
        "l2_hits": 0,
        "misses": 1,
        "total_requests": 1,
        "hit_rate": 0.0,
    }
    assert chapter_view(cache.stats()) == {
        "l1_hits": 1,
        "l2_hits": 0,
        "misses": 2,
        "total_requests": 3,
        "hit_rate": 0.3333,
    }
    assert cache.stats()["writes"] == 2
    assert cache.stats()["l2_errors"] == 0


async def test_methods_read_l1_then_l2_and_count_misses(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)
    await backend.method(cache, "set", "greeting", {"text": "hello"})
    assert await backend.method(cache, "get", "greeting") == {"text": "hello"}
    fresh = backend.cache(clock)
    assert await backend.method(fresh, "lookup", fresh.key("greeting")) == Found(
        True, {"text": "hello"}, "l2"
    )
    assert await backend.method(fresh, "lookup", fresh.key("greeting")) == Found(
        True, {"text": "hello"}, "l1"
    )
    assert await backend.method(fresh, "get", "absent", MISSING) is MISSING
    assert await backend.method(fresh, "lookup", fresh.key("absent")) == Found(False)
    assert chapter_view(cache.stats()) == {
        "l1_hits": 1,
        "l2_hits": 0,
        "misses": 0,
        "total_requests": 1,
        "hit_rate": 1.0,
    }
    assert chapter_view(fresh.stats()) == {
        "l1_hits": 1,
        "l2_hits": 1,
        "misses": 2,
        "total_requests": 4,
        "hit_rate": 0.5,
    }


async def test_store_writes_both_layers_under_the_full_key(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)
    key = cache.key("report")
    await backend.method(cache, "store", key, [1, 2, 3], ttl=60)
    assert cache.l1.get(key) is not None
    assert key.startswith(f"{NAMESPACE}:v1:")
    assert backend.raw.exists(key) == 1
    assert await backend.method(backend.cache(clock), "get", "report") == [1, 2, 3]


async def test_a_miss_writes_both_layers_with_the_ttl(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)

    @cached(cache, ttl=120)
    @backend.origin
    def lookup(user: str) -> dict[str, str]:
        return {"user": user}

    clock.advance(5.0)
    assert await backend.call(lookup, "ada") == {"user": "ada"}
    key = lookup.cache_key("ada")
    assert l1_expiry(cache, key) == 125.0
    assert 119_000 < backend.raw.pttl(key) <= 120_000
    assert cache.stats()["writes"] == 1


async def test_an_l2_hit_fills_l1_with_the_remaining_ttl(
    backend: Backend, clock: VirtualClock
) -> None:
    writer = backend.cache(clock)
    await backend.method(writer, "set", "entry", "value", ttl=100)
    clock.advance(30.0)
    reader = backend.cache(clock)
    assert await backend.method(reader, "get", "entry") == "value"
    assert reader.stats()["l2_hits"] == 1
    assert l1_expiry(reader, reader.key("entry")) == 100.0  # 70 s left, not a fresh 100 s
    clock.advance(70.0)
    assert reader.l1.get(reader.key("entry")) is None


async def test_an_entry_past_its_stamped_expiry_is_a_miss(
    backend: Backend, clock: VirtualClock
) -> None:
    writer = backend.cache(clock)
    await backend.method(writer, "set", "entry", "value", ttl=100)
    clock.advance(100.0)  # virtual time: the real server still holds the key
    reader = backend.cache(clock)
    assert await backend.method(reader, "get", "entry", MISSING) is MISSING
    assert reader.stats()["misses"] == 1


# --- what the decorator caches --------------------------------------------------------------


async def test_none_is_cached(backend: Backend, clock: VirtualClock) -> None:
    calls: list[str] = []

    def decorate(cache: MultiLayerCache) -> Callable[..., Any]:
        @cached(cache)
        @backend.origin
        def find(name: str) -> None:
            calls.append(name)

        return find

    find = decorate(backend.cache(clock))
    assert await backend.call(find, "nobody") is None
    assert await backend.call(find, "nobody") is None
    fresh_cache = backend.cache(clock)
    assert await backend.call(decorate(fresh_cache), "nobody") is None
    assert calls == ["nobody"]
    assert fresh_cache.stats()["l2_hits"] == 1
    await backend.method(fresh_cache, "set", "nothing", None)
    assert await backend.method(backend.cache(clock), "get", "nothing", MISSING) is None


async def test_exceptions_are_not_cached_by_default(backend: Backend, clock: VirtualClock) -> None:
    cache = backend.cache(clock)
    calls: list[int] = []

    @cached(cache)
    @backend.origin
    def fragile(x: int) -> int:
        calls.append(x)
        raise ValueError(f"bad {x}")

    for _ in range(2):
        with pytest.raises(ValueError, match="bad 1"):
            await backend.call(fragile, 1)
    assert calls == [1, 1]
    assert cache.l1.get(fragile.cache_key(1)) is None
    assert backend.raw.exists(fragile.cache_key(1)) == 0
    assert fragile.cache_stats()["misses"] == 2


async def test_cache_exceptions_are_reraised_from_l1_only(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)
    calls: list[str] = []

    @cached(cache, cache_exceptions=(ValueError,))
    @backend.origin
    def parse(text: str) -> int:
        calls.append(text)
        if text == "other":
            raise KeyError(text)
        raise ValueError(f"not a number: {text}")

    errors, depths = [], []
    for _ in range(20):
        with pytest.raises(ValueError, match="not a number: x") as raised:
            await backend.call(parse, "x")
        errors.append(raised.value)
        depths.append(len(traceback.extract_tb(raised.value.__traceback__)))
    assert calls == ["x"]
    assert all(error is errors[0] for error in errors)
    # Each hit raises the one cached exception again: its traceback must not keep growing.
    assert depths[-1] == depths[1]
    assert backend.raw.exists(parse.cache_key("x")) == 0  # exceptions never go to L2
    assert parse.cache_stats()["l1_hits"] == 19
    for _ in range(2):
        with pytest.raises(KeyError):
            await backend.call(parse, "other")
    assert calls == ["x", "other", "other"]


async def test_methods_leave_self_out_of_the_key(backend: Backend, clock: VirtualClock) -> None:
    cache = backend.cache(clock)
    calls: list[tuple[str, int]] = []

    class Catalog:  # made inside a function: its methods need a name (issue 14)
        @cached(cache, name="Catalog.price")
        @backend.origin
        def price(self, item: int) -> float:
            calls.append(("price", item))
            return item * 1.5

        @classmethod
        @cached(cache, name="Catalog.default_price")
        @backend.origin
        def default_price(cls, item: int) -> float:
            calls.append(("default_price", item))
            return item * 2.0

    assert await backend.call(Catalog().price, 2) == 3.0
    assert await backend.call(Catalog().price, 2) == 3.0
    assert await backend.call(Catalog.default_price, 2) == 4.0
    assert await backend.call(Catalog().default_price, 2) == 4.0
    assert calls == [("price", 2), ("default_price", 2)]
    assert cache.stats()["l1_hits"] == 2


async def test_keyword_and_positional_spellings_share_an_entry(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)
    calls: list[tuple[int, int, int]] = []

    @cached(cache)
    @backend.origin
    def total(a: int, b: int = 2, *, c: int = 3) -> int:
        calls.append((a, b, c))
        return a + b + c

    spellings: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {"b": 2}),
        ((), {"a": 1, "b": 2}),
        ((), {"b": 2, "a": 1}),
        ((1, 2), {}),
        ((1,), {}),
        ((1,), {"c": 3}),
    ]
    for args, kwargs in spellings:
        assert await backend.call(total, *args, **kwargs) == 6
    assert calls == [(1, 2, 3)]
    assert await backend.call(total, 1, c=4) == 7
    assert len(calls) == 2


def describe_text(x: Any, y: Any = None) -> str:
    return f"{type(x).__name__} {x!r}, {type(y).__name__} {y!r}"


async def test_equal_arguments_of_different_types_are_different_entries(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)
    calls: list[tuple[Any, Any]] = []

    @cached(cache)
    @backend.origin
    def describe(x: Any, y: Any = None) -> str:
        calls.append((x, y))
        return describe_text(x, y)

    singles = [1, 1.0, True, 0.0, -0.0, (1,), (1.0,), "1", b"1", 0, False, None]
    arguments = [(x,) for x in singles] + [(1, 0), (True, False), (1, False), (1.0, 0)]
    expected = [describe_text(*args) for args in arguments]
    assert [await backend.call(describe, *args) for args in arguments] == expected
    assert [await backend.call(describe, *args) for args in arguments] == expected
    assert len(calls) == len(arguments)
    assert describe.cache_stats()["l1_hits"] == len(arguments)
    assert len({describe.cache_key(*args) for args in arguments}) == len(arguments)


async def test_unhashable_arguments(backend: Backend, clock: VirtualClock) -> None:
    cache = backend.cache(clock)
    calls: list[Any] = []

    @cached(cache)
    @backend.origin
    def summarise(items: list[int], options: dict[str, Any]) -> int:
        calls.append((items, options))
        return sum(items) * len(options)

    assert await backend.call(summarise, [1, 2], {"a": [3], "b": {4}}) == 6
    assert await backend.call(summarise, [1, 2], {"b": {4}, "a": [3]}) == 6
    assert await backend.call(summarise, [1, 2], {"a": [3], "b": {5}}) == 6
    assert len(calls) == 2


async def test_a_custom_key_function(backend: Backend, clock: VirtualClock) -> None:
    cache = backend.cache(clock)
    calls: list[tuple[str, int]] = []

    @cached(cache, key=lambda user, request_id: user)
    @backend.origin
    def profile(user: str, request_id: int) -> str:
        calls.append((user, request_id))
        return f"profile of {user}"

    assert await backend.call(profile, "ada", 1) == "profile of ada"
    assert await backend.call(profile, "ada", request_id=2) == "profile of ada"
    assert await backend.call(profile, "bob", 1) == "profile of bob"
    assert calls == [("ada", 1), ("bob", 1)]


async def test_name_is_the_function_identity_in_the_key(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)

    @cached(cache, name="shared")
    @backend.origin
    def first(x: int) -> str:
        return f"first {x}"

    @cached(cache, name="shared")
    @backend.origin
    def second(x: int) -> str:
        return f"second {x}"

    assert await backend.call(first, 1) == "first 1"
    assert await backend.call(second, 1) == "first 1"
    assert first.cache_key(1) == second.cache_key(1)
    assert first.cache_key(1).startswith(f"{NAMESPACE}:v1:shared:")


# --- keys, versions and invalidation --------------------------------------------------------


async def test_keys_are_stable_namespaced_and_what_l2_holds(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)

    @cached(cache, name="pinned")
    @backend.origin
    def pinned(a: int, b: str) -> str:
        return b * a

    @cached(cache)
    @backend.origin
    def unnamed(a: int) -> int:
        return a

    # A literal: the same in every process and run (no hash() randomisation).
    assert pinned.cache_key(1, "a") == "contract:v1:pinned:df73bd0f7b209102124cb7ce0208b2b3"
    # A function made inside another is named with its line and a hash of its code and
    # of what it closes over (issue 14: two closures of one factory shared keys).
    identity = re.escape(f"{unnamed.__module__}:{unnamed.__qualname__}") + r"@\d+#[0-9a-f]{16}"
    assert re.fullmatch(rf"contract:v1:{identity}:[0-9a-f]{{32}}", unnamed.cache_key(1))
    await backend.call(pinned, 1, "a")
    await backend.call(unnamed, 1)
    assert sorted(backend.raw.keys("*")) == sorted(
        [pinned.cache_key(1, "a").encode(), unnamed.cache_key(1).encode()]
    )


async def test_a_new_version_does_not_see_old_entries(
    backend: Backend, clock: VirtualClock
) -> None:
    calls: list[int] = []

    def decorate(cache: MultiLayerCache) -> Callable[..., Any]:
        @cached(cache)
        @backend.origin
        def compute(x: int) -> str:
            calls.append(x)
            return f"v{cache.version} {x}"

        return compute

    assert await backend.call(decorate(backend.cache(clock, version=1)), 7) == "v1 7"
    v2 = backend.cache(clock, version=2)
    assert await backend.call(decorate(v2), 7) == "v2 7"
    assert v2.stats()["misses"] == 1
    assert await backend.call(decorate(backend.cache(clock, version=1)), 7) == "v1 7"
    assert calls == [7, 7]


async def test_invalidate_drops_one_call_from_both_layers(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)
    calls: list[int] = []

    @cached(cache)
    @backend.origin
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    await backend.call(square, 2)
    await backend.call(square, 3)
    await backend.method(square, "invalidate", 2)
    assert cache.l1.get(square.cache_key(2)) is None
    assert backend.raw.exists(square.cache_key(2)) == 0
    assert backend.raw.exists(square.cache_key(3)) == 1
    assert await backend.call(square, 2) == 4
    assert await backend.call(square, 3) == 9
    assert calls == [2, 3, 2]
    assert cache.stats()["invalidations"] == 1


async def test_delete_drops_one_entry_from_both_layers(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)
    await backend.method(cache, "set", "gone", 1)
    await backend.method(cache, "set", "kept", 2)
    await backend.method(cache, "delete", "gone")
    assert backend.raw.exists(cache.key("gone")) == 0
    assert await backend.method(cache, "get", "gone", MISSING) is MISSING
    assert await backend.method(backend.cache(clock), "get", "kept") == 2


@pytest.mark.parametrize(
    ("namespace", "neighbour"),
    [
        ("app", "app2"),
        ("team[1]", "team1"),
        ("tenant*", "tenantX"),
        ("q?", "qx"),
        ("back\\slash", "backslash"),
    ],
)
async def test_clear_drops_the_whole_namespace_and_only_it(
    backend: Backend, clock: VirtualClock, namespace: str, neighbour: str
) -> None:
    target = backend.cache(clock, namespace=namespace)
    others = [
        backend.cache(clock, namespace=neighbour),
        backend.cache(clock, namespace=namespace, version=2),
    ]
    for cache in [target, *others]:
        for name in ("a", "b"):
            await backend.method(cache, "set", name, f"{cache.prefix}{name}")
    backend.raw.set("unrelated", b"x")
    await backend.method(target, "clear")
    assert len(target.l1) == 0
    assert [backend.raw.exists(target.key(name)) for name in ("a", "b")] == [0, 0]
    assert await backend.method(target, "get", "a", MISSING) is MISSING
    for cache in others:
        assert len(cache.l1) == 2
        assert [backend.raw.exists(cache.key(name)) for name in ("a", "b")] == [1, 1]
    assert backend.raw.exists("unrelated") == 1


# --- stampedes ------------------------------------------------------------------------------


async def test_a_crowd_on_a_cold_key_calls_the_origin_once(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)
    gate = backend.gate()

    @cached(cache)
    @backend.gated(gate)
    def slow(question: str) -> str:
        return f"answer to {question}"

    crowd = backend.crowd(slow, "q")
    size = backend.crowd_size
    await backend.wait_until(lambda: slow.cache_stats()["coalesced"] == size - 1)
    gate.open()
    assert await crowd.outcomes() == ["answer to q"] * size
    assert gate.arrivals == 1
    stats = slow.cache_stats()
    assert (stats["coalesced"], stats["misses"], stats["total_requests"]) == (size - 1, size, size)
    assert cache.stats()["writes"] == 1


async def test_a_failing_leader_shares_its_error_and_the_next_call_retries(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)
    gate = backend.gate()

    @cached(cache)
    @backend.gated(gate)
    def flaky(question: str) -> str:
        if gate.arrivals == 1:
            raise RuntimeError("origin failed")
        return f"answer to {question}"

    crowd = backend.crowd(flaky, "q")
    size = backend.crowd_size
    await backend.wait_until(lambda: flaky.cache_stats()["coalesced"] == size - 1)
    gate.open()
    outcomes = await crowd.outcomes()
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert all(outcome is outcomes[0] for outcome in outcomes)
    assert await backend.call(flaky, "q") == "answer to q"
    assert gate.arrivals == 2
    assert flaky.cache_stats()["total_requests"] == size + 1
    assert flaky.cache_stats()["misses"] == size + 1


async def test_a_cancelled_leader_leaves_no_follower_hanging(
    async_backend: Backend, clock: VirtualClock
) -> None:
    backend = async_backend
    cache = backend.cache(clock)
    gate = backend.gate()

    @cached(cache)
    @backend.gated(gate)
    def slow(question: str) -> str:
        return f"answer to {question}"

    leader = asyncio.create_task(slow("q"))
    await backend.wait_until(lambda: gate.arrivals == 1)
    followers = [asyncio.create_task(slow("q")) for _ in range(10)]
    await backend.wait_until(lambda: slow.cache_stats()["coalesced"] == 10)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    await backend.wait_until(lambda: gate.arrivals == 2)  # a follower took the lead
    gate.open()
    assert await asyncio.gather(*followers) == ["answer to q"] * 10
    assert gate.arrivals == 2


async def test_a_cancelled_follower_does_not_cancel_the_flight(
    async_backend: Backend, clock: VirtualClock
) -> None:
    backend = async_backend
    cache = backend.cache(clock)
    gate = backend.gate()

    @cached(cache)
    @backend.gated(gate)
    def slow(question: str) -> str:
        return f"answer to {question}"

    leader = asyncio.create_task(slow("q"))
    await backend.wait_until(lambda: gate.arrivals == 1)
    quitter, stayer = asyncio.create_task(slow("q")), asyncio.create_task(slow("q"))
    await backend.wait_until(lambda: slow.cache_stats()["coalesced"] == 2)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    gate.open()
    assert await asyncio.gather(leader, stayer) == ["answer to q"] * 2
    assert gate.arrivals == 1


# --- payloads L2 must refuse ----------------------------------------------------------------


CORRUPTIONS: dict[str, Callable[[bytes, int], bytes]] = {
    "garbage": lambda payload, header: b"\x00garbage\xff",
    "empty": lambda payload, header: b"",
    "truncated-header": lambda payload, header: payload[: header - 3],
    "wrong-magic": lambda payload, header: b"XX" + payload[2:],
    "bad-json": lambda payload, header: payload[:header] + b"j1{not json",
    "foreign-format": lambda payload, header: payload[:header] + b"p1" + bytes(40),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_a_corrupt_l2_payload_is_a_counted_miss_and_is_deleted(
    backend: Backend, clock: VirtualClock, corruption: str
) -> None:
    value = {"text": "hello"}
    writer = backend.cache(clock)
    await backend.method(writer, "set", "entry", value)
    key = writer.key("entry")
    payload = backend.raw.get(key)
    assert payload is not None
    header = len(payload) - len(JsonSerializer().dumps(value))
    backend.raw.set(key, CORRUPTIONS[corruption](payload, header))

    reader = backend.cache(clock)
    assert await backend.method(reader, "get", "entry", MISSING) is MISSING
    stats = reader.stats()
    assert (stats["corrupt"], stats["rejected"], stats["misses"], stats["l2_hits"]) == (1, 0, 1, 0)
    assert stats["l2_errors"] == 0
    assert backend.raw.exists(key) == 0


UNPICKLED: list[str] = []


def record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class SideEffect:
    """Runs record_unpickling when unpickled: what an attacker's payload would do."""

    def __reduce__(self) -> tuple[Callable[[str], str], tuple[str]]:
        return record_unpickling, ("the payload ran",)


TAMPERINGS: dict[str, Callable[[bytes, int], bytes]] = {
    "unsigned": lambda payload, header: payload[:header] + pickle.dumps(SideEffect()),
    "signed-with-another-secret": lambda payload, header: (
        payload[:header] + SignedPickleSerializer(b"not-the-secret-0123456789").dumps(SideEffect())
    ),
    "valid-signature-spliced-onto-another-body": lambda payload, header: (
        payload[: header + 34] + pickle.dumps(SideEffect())
    ),
}


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
async def test_a_tampered_signed_pickle_entry_is_never_unpickled(
    backend: Backend, clock: VirtualClock, tampering: str
) -> None:
    assert pickle.loads(pickle.dumps(SideEffect())) == "the payload ran"  # it does have effects
    UNPICKLED.clear()
    serializer = SignedPickleSerializer(SECRET)
    value = {"a", "set", "JSON cannot carry"}
    writer = backend.cache(clock, serializer=serializer)
    await backend.method(writer, "set", "entry", value)
    key = writer.key("entry")
    payload = backend.raw.get(key)
    assert payload is not None
    assert (
        await backend.method(backend.cache(clock, serializer=serializer), "get", "entry") == value
    )
    header = len(payload) - len(serializer.dumps(value))
    backend.raw.set(key, TAMPERINGS[tampering](payload, header))

    reader = backend.cache(clock, serializer=serializer)
    assert await backend.method(reader, "get", "entry", MISSING) is MISSING
    assert UNPICKLED == []
    stats = reader.stats()
    assert (stats["rejected"], stats["corrupt"], stats["misses"], stats["l2_hits"]) == (1, 0, 1, 0)
    assert backend.raw.exists(key) == 0


# --- TTL jitter and early refresh -----------------------------------------------------------


async def test_ttl_jitter_spreads_ttls_within_the_range(
    backend: Backend, clock: VirtualClock
) -> None:
    ttl = 100.0
    cache = backend.cache(clock, ttl=ttl, ttl_jitter=0.2, seed=11)
    same_seed = MultiLayerCache(None, clock=clock, ttl=ttl, ttl_jitter=0.2, seed=11)
    names = [f"key{index}" for index in range(20)]
    for name in names:
        await backend.method(cache, "set", name, name)
        same_seed.set(name, name)
    expiries = [l1_expiry(cache, cache.key(name)) for name in names]
    assert all(e is not None and 0.8 * ttl <= e <= ttl for e in expiries)
    assert len(set(expiries)) == len(names)
    assert expiries == [l1_expiry(same_seed, same_seed.key(name)) for name in names]
    for name, expiry in zip(names, expiries, strict=True):
        assert expiry is not None
        assert abs(backend.raw.pttl(cache.key(name)) - expiry * 1000) < 1000


@pytest.mark.parametrize(("factor", "refreshes"), [(1e9, 1), (1e-3, 0), (0.0, 0)])
async def test_early_refresh_recomputes_near_expiry(
    backend: Backend, clock: VirtualClock, factor: float, refreshes: int
) -> None:
    calls: list[str] = []

    def decorate(cache: MultiLayerCache) -> Callable[..., Any]:
        @cached(cache, ttl=100)
        @backend.origin
        def report(day: str) -> str:
            calls.append(day)
            clock.advance(1.0)  # the origin takes 1 s: the cost XFetch weighs
            return f"report {len(calls)}"

        return report

    assert await backend.call(decorate(backend.cache(clock, early_refresh=factor)), "mon") == (
        "report 1"
    )
    clock.advance(99.0)  # 1 s of the 100 s left
    reader = backend.cache(clock, early_refresh=factor, seed=3)
    expected = "report 2" if refreshes else "report 1"
    assert await backend.call(decorate(reader), "mon") == expected
    assert reader.stats()["early_refreshes"] == refreshes
    assert reader.stats()["l2_hits"] == 1 - refreshes
    assert len(calls) == 1 + refreshes


# --- values L2 cannot hold ------------------------------------------------------------------


async def test_a_value_the_serializer_cannot_encode_stays_in_l1_with_a_warning(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock)
    calls: list[str] = []

    @cached(cache)
    @backend.origin
    def tags(post: str) -> set[str]:
        calls.append(post)
        return {"python", "cache"}

    with pytest.warns(CacheWarning, match="not stored in L2"):
        assert await backend.call(tags, "p1") == {"python", "cache"}
    assert await backend.call(tags, "p1") == {"python", "cache"}
    assert calls == ["p1"]
    assert backend.raw.exists(tags.cache_key("p1")) == 0
    with pytest.warns(CacheWarning, match="JsonSerializer cannot serialize"):
        await backend.method(cache, "set", "frozen", frozenset({1}))
    assert await backend.method(cache, "get", "frozen") == frozenset({1})


# --- L1 -------------------------------------------------------------------------------------


async def test_l1_is_bounded_and_evicts_the_least_recently_used(
    backend: Backend, clock: VirtualClock
) -> None:
    cache = backend.cache(clock, l1_maxsize=2)
    await backend.method(cache, "set", "a", 1)
    await backend.method(cache, "set", "b", 2)
    assert await backend.method(cache, "get", "a") == 1  # b is now the least recently used
    await backend.method(cache, "set", "c", 3)
    assert [cache.l1.get(cache.key(name)) is not None for name in "abc"] == [True, False, True]
    assert await backend.method(cache, "get", "b") == 2  # from L2, evicting a
    assert cache.stats()["l2_hits"] == 1
    assert len(cache.l1) == 2
    assert cache.l1.get(cache.key("a")) is None


# --- mistakes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("get", ("k",)),
        ("set", ("k", 1)),
        ("delete", ("k",)),
        ("lookup", (f"{NAMESPACE}:v1:k",)),
        ("store", (f"{NAMESPACE}:v1:k", 1)),
        ("invalidate_key", (f"{NAMESPACE}:v1:k",)),
        ("clear", ()),
    ],
)
async def test_sync_methods_of_a_cache_with_an_asyncio_client_raise(
    async_backend: Backend, clock: VirtualClock, method: str, args: tuple[Any, ...]
) -> None:
    cache = async_backend.cache(clock)
    with pytest.raises(TypeError, match=r"redis\.asyncio client; use the async methods"):
        getattr(cache, method)(*args)


async def test_a_sync_function_cached_with_an_asyncio_client_raises(
    async_backend: Backend, clock: VirtualClock
) -> None:
    cache = async_backend.cache(clock)

    @cached(cache)
    def plain(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"redis\.asyncio client"):
        plain(1)


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"namespace": "my cache"}, "'my cache'"),
        ({"namespace": ""}, "''"),
        ({"ttl": 0}, "0"),
        ({"ttl": -5}, "-5"),
        ({"ttl": math.inf}, "inf"),
        ({"ttl": math.nan}, "nan"),
        ({"l1_ttl": 0}, "0"),
        ({"ttl_jitter": 1.0}, "1.0"),
        ({"ttl_jitter": -0.1}, "-0.1"),
        ({"l1_maxsize": 0}, "0"),
        ({"early_refresh": -1}, "-1"),
        ({"version": ""}, "''"),
    ],
)
def test_cache_configuration_errors_name_the_bad_value(options: dict[str, Any], bad: str) -> None:
    name = next(iter(options))
    with pytest.raises(ValueError, match=rf"{name} must .*got {re.escape(bad)}$"):
        MultiLayerCache(None, **options)


@pytest.mark.parametrize(
    ("options", "error", "bad"),
    [
        ({"ttl": -1}, ValueError, "-1"),
        ({"ttl": 0}, ValueError, "0"),
        ({"ttl": math.inf}, ValueError, "inf"),
        ({"cache_exceptions": ValueError}, TypeError, "<class 'ValueError'>"),
        ({"cache_exceptions": [ValueError]}, TypeError, "[<class 'ValueError'>]"),
        ({"cache_exceptions": (ValueError, "boom")}, TypeError, "(<class 'ValueError'>, 'boom')"),
        ({"key": "not callable"}, TypeError, "'not callable'"),
    ],
)
def test_decorator_configuration_errors_name_the_bad_value(
    options: dict[str, Any], error: type[Exception], bad: str
) -> None:
    name = next(iter(options))
    with pytest.raises(error, match=rf"{name} must .*got {re.escape(bad)}$"):
        cached(MultiLayerCache(None), **options)


def test_a_bad_ttl_per_call_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r"ttl must .*got -1$"):
        MultiLayerCache(None).set("k", 1, ttl=-1)
