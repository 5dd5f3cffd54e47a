"""Hostile probes of @cached's names and L1's copies: functions that share a name but not
their results, values a cache must not fail on, and namespaces a glob would misread."""

from __future__ import annotations

import datetime
import functools
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pydantic
import pytest
import redis

from perfkit.cache import CacheWarning, JsonSerializer, MultiLayerCache, cached
from perfkit.cache._keys import canonical
from perfkit.cache._l1 import LocalCache


@pytest.fixture
def cache() -> MultiLayerCache:
    return MultiLayerCache(fakeredis.FakeRedis(), namespace="hostile")


# --- a closure's variable rebound after decoration ----------------------------------------


def test_a_variable_rebound_after_decoration_is_in_the_key(cache: MultiLayerCache) -> None:
    def make(k: int) -> Callable[[int], int]:
        n = 0

        @cached(cache)
        def add(x: int) -> int:
            return x + n

        n = k
        return add

    one, two = make(1), make(2)
    assert (one(5), two(5)) == (6, 7)


def test_a_variable_rebound_between_calls_is_in_the_key(cache: MultiLayerCache) -> None:
    def make() -> tuple[Callable[[int], int], Callable[[int], None]]:
        n = 1

        @cached(cache)
        def add(x: int) -> int:
            return x + n

        def rebind(value: int) -> None:
            nonlocal n
            n = value

        return add, rebind

    add, rebind = make()
    assert add(5) == 6
    rebind(10)
    assert add(5) == 15
    assert add.cache_key(5) != make()[0].cache_key(5)  # type: ignore[attr-defined]
    rebind(1)
    assert add(5) == 6


def test_a_rebound_variable_of_an_inner_closure_is_in_the_key(cache: MultiLayerCache) -> None:
    def make() -> tuple[Callable[[int], int], Callable[[int], None]]:
        n = 2

        def times(x: int) -> int:
            return x * n

        @cached(cache)
        def apply(x: int) -> int:
            return times(x)

        def rebind(value: int) -> None:
            nonlocal n
            n = value

        return apply, rebind

    apply, rebind = make()
    assert apply(5) == 10
    rebind(3)
    assert apply(5) == 15


# --- wrappers that carry another function's name -------------------------------------------


def base(x: int) -> int:
    return x


def negated(x: int) -> int:
    return -base(x)


renamed = functools.update_wrapper(negated, base)  # now named "base", and wrapping it


class Negate:
    """A decorator written as a class: its instances carry the wrapped function's name."""

    def __init__(self, function: Callable[[int], int]) -> None:
        self.function = function
        functools.update_wrapper(self, function)

    def __call__(self, x: int) -> int:
        return -self.function(x)


def test_a_callable_object_wrapping_a_function_is_not_that_function(
    cache: MultiLayerCache,
) -> None:
    plain = cached(cache)(base)
    wrapped = cached(cache)(Negate(base))
    assert (plain(5), wrapped(5)) == (5, -5)


def test_a_function_renamed_by_update_wrapper_is_not_the_function_it_names(
    cache: MultiLayerCache,
) -> None:
    plain = cached(cache)(base)
    other = cached(cache)(renamed)
    assert (plain(5), other(5)) == (5, -5)


def test_a_classmethod_of_a_local_class_is_refused_without_a_name(
    cache: MultiLayerCache,
) -> None:
    def make(factor: int) -> Callable[[int], int]:
        class Scaled:
            m = factor

            @classmethod
            def scale(cls, x: int) -> int:
                return x * cls.m

        return Scaled.scale

    twice = make(2)
    assert cached(cache)(twice)(5) == 10
    thrice = make(3)
    with pytest.raises(TypeError, match="name="):
        cached(cache)(thrice)
    assert cached(cache, name="scaled-3")(thrice)(5) == 15


# --- generators ----------------------------------------------------------------------------


def test_a_generator_function_is_refused_at_decoration(cache: MultiLayerCache) -> None:
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    with pytest.raises(TypeError, match="generator"):
        cached(cache)(numbers)


def test_an_async_generator_function_is_refused_at_decoration(cache: MultiLayerCache) -> None:
    async def numbers(n: int) -> Any:
        for i in range(n):
            yield i

    with pytest.raises(TypeError, match="generator"):
        cached(cache)(numbers)


# --- values --------------------------------------------------------------------------------


def test_a_deeply_nested_value_is_returned_not_a_recursion_error(
    cache: MultiLayerCache,
) -> None:
    value: tuple[Any, ...] = ()
    for _ in range(100_000):
        value = (value,)

    @cached(cache, name="deep")
    def deep() -> tuple[Any, ...]:
        return value

    with pytest.warns(CacheWarning, match="not stored in L2"):
        assert deep() is value


def test_a_cached_exception_changed_by_a_caller_is_raised_as_it_was(
    cache: MultiLayerCache,
) -> None:
    @cached(cache, cache_exceptions=(ValueError,))
    def refuse() -> None:
        raise ValueError("no")

    notes = []
    for _ in range(3):
        with pytest.raises(ValueError, match="no") as raised:
            refuse()
        notes.append(list(getattr(raised.value, "__notes__", [])))
        raised.value.add_note("a caller's note")
    assert notes == [[], [], []]


# --- clear() against a real Redis, with namespaces a glob would misread --------------------

GLOB_NAMESPACES = ["a", "a*", "a?", "a[b]", "ab", "a\\", "a\\*", "a]", "[a", "a%3A", "a:b", "é*"]


def test_clear_deletes_exactly_its_own_namespace_on_a_real_redis(
    real_redis_client: redis.Redis,
) -> None:
    caches = [
        MultiLayerCache(real_redis_client, namespace=namespace, version=version)
        for namespace in GLOB_NAMESPACES
        for version in (1, "1*", "[1]")
    ]
    for cleared in caches:
        for each in caches:
            each.set("entry", each.namespace)
        cleared.clear()
        for each in caches:
            each.l1.clear()
            expected = None if each is cleared else each.namespace
            assert each.get("entry") == expected, (cleared, each)


# --- text Redis cannot take: one bad name must not open the breaker for every key ----------


def test_an_entry_name_with_a_lone_surrogate_is_stored_and_opens_no_breaker() -> None:
    cache = MultiLayerCache(fakeredis.FakeRedis(), namespace="hostile")
    for _ in range(20):  # as often as a user may send it
        cache.set("user-\ud800", 1)
    cache.set("user-\udfff", 2)
    assert cache.breaker.state == "closed"
    assert cache.stats()["l2_errors"] == 0
    elsewhere = MultiLayerCache(cache.redis, namespace="hostile")
    assert (elsewhere.get("user-\ud800"), elsewhere.get("user-\udfff")) == (1, 2)
    assert elsewhere.get("user-%uD800") is None


@pytest.mark.parametrize(
    "settings",
    [{"namespace": "ns\ud800"}, {"version": "v\udfff"}],
    ids=["namespace", "version"],
)
def test_a_namespace_or_version_redis_cannot_take_is_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        MultiLayerCache(fakeredis.FakeRedis(), **settings)


@pytest.mark.parametrize("name", ["n\ud800", 123, b"name"], ids=["surrogate", "int", "bytes"])
def test_a_name_redis_cannot_take_is_refused_at_decoration(
    cache: MultiLayerCache, name: Any
) -> None:
    with pytest.raises((TypeError, ValueError), match="name"):
        cached(cache, name=name)


def test_a_variable_rebound_to_a_mutable_object_after_decoration_never_shares_keys(
    cache: MultiLayerCache,
) -> None:
    def make(items: list[int]) -> Callable[[int], int]:
        data: list[int] | None = None

        @cached(cache)
        def at(i: int) -> int:
            assert data is not None
            return data[i]

        data = items
        return at

    first, second = make([1, 2]), make([3, 4])
    assert first(0) == 1
    with pytest.raises(TypeError, match="name="):
        second(0)


def test_a_function_may_rebind_its_own_mutable_variable(cache: MultiLayerCache) -> None:
    def make() -> tuple[Callable[[int], int], Callable[[list[int]], None]]:
        data = [1]

        @cached(cache)
        def at(i: int) -> int:
            return data[i]

        def replace(items: list[int]) -> None:
            nonlocal data
            data = items

        return at, replace

    at, replace = make()
    assert at(0) == 1
    replace([5])
    assert at(0) == 1  # like a changed global: what the cache holds stays until invalidated
    assert at.invalidate(0)  # type: ignore[attr-defined]
    assert at(0) == 5


# --- L1's bound holds at every moment, as another thread sees it ---------------------------


def test_l1_never_holds_more_than_its_bounds_even_while_evicting() -> None:
    seen: list[tuple[int, int]] = []

    def count(counter: str) -> None:  # runs inside set(), mid-eviction
        seen.append((local.bytes, len(local)))

    local = LocalCache(maxsize=3, timer=lambda: 0.0, max_bytes=1000, count=count)
    for index in range(20):
        local.set(index, "x" * (100 + 37 * (index % 7)), ttl=10)
    assert seen
    assert all(held <= 1000 and entries <= 3 for held, entries in seen), seen


# --- a value no follower can get a copy of is not shared between callers -------------------


@pytest.mark.parametrize(
    "make",
    [lambda: iter(range(5)), lambda: (i for i in range(5))],
    ids=["iterator", "generator"],
)
def test_followers_of_an_iterator_do_not_share_it(
    cache: MultiLayerCache, make: Callable[[], Iterator[int]]
) -> None:
    follower_waiting = threading.Event()

    @cached(cache, name="numbers")
    def numbers() -> Iterator[int]:
        if not follower_waiting.is_set():  # the leader: wait for a follower to join
            deadline = time.monotonic() + 5
            while numbers.cache_stats()["coalesced"] == 0 and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.001)
            follower_waiting.set()
        return make()

    results: list[list[int]] = []

    def call() -> None:
        got = numbers()
        follower_waiting.wait(5)
        results.append(list(got))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)  # L2 cannot hold an iterator
        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert numbers.cache_stats()["coalesced"] == 1  # type: ignore[attr-defined]
    assert results == [[0, 1, 2, 3, 4]] * 2


def test_a_follower_gets_the_value_as_computed_not_as_the_leader_changed_it() -> None:
    entered, leader_changed = threading.Event(), threading.Event()
    inner = JsonSerializer()

    class SlowInFollower:
        """Copies made in the follower's thread wait until the leader changed its value."""

        name = "json"

        def dumps(self, value: Any) -> bytes:
            if threading.current_thread().name == "follower":
                leader_changed.wait(5)
            return inner.dumps(value)

        def loads(self, data: bytes) -> Any:
            return inner.loads(data)

    cache = MultiLayerCache(fakeredis.FakeRedis(), namespace="hostile", serializer=SlowInFollower())

    @cached(cache, name="settings")
    def settings() -> dict[str, str]:
        entered.set()
        deadline = time.monotonic() + 5
        while settings.cache_stats()["coalesced"] == 0 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.001)
        return {"mode": "safe"}

    followed: list[dict[str, str]] = []

    def lead() -> None:
        settings()["mode"] = "changed by the leader's caller"
        leader_changed.set()

    leader = threading.Thread(target=lead)
    follower = threading.Thread(target=lambda: followed.append(settings()), name="follower")
    leader.start()
    entered.wait(5)
    follower.start()
    leader.join()
    follower.join()
    assert followed == [{"mode": "safe"}]


@pytest.mark.parametrize("container", [list, dict], ids=["list", "dict"])
def test_an_argument_nested_too_deeply_is_a_clear_error(
    cache: MultiLayerCache, container: type
) -> None:
    argument: Any = container()
    for _ in range(5000):
        argument = [argument] if container is list else {"a": argument}
    once = cached(cache)(lambda x: 1)
    with pytest.raises(ValueError, match=r"cannot make a cache key of args: it is nested too"):
        once(argument)


# --- pydantic arguments: keys as == tells models apart, the same in every process ----------


class Query(pydantic.BaseModel):
    text: str
    debug: bool = pydantic.Field(default=False, exclude=True)


class Stamped(pydantic.BaseModel):
    at: datetime.datetime
    debug: bool = pydantic.Field(default=False, exclude=True)


def test_models_that_differ_in_a_field_excluded_from_dumps_do_not_share_a_key() -> None:
    assert Query(text="x", debug=True) != Query(text="x")
    assert canonical(Query(text="x", debug=True)) != canonical(Query(text="x"))
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert canonical(Stamped(at=at, debug=True)) != canonical(Stamped(at=at))


SET_FIELD_SCRIPT = """
import pydantic
from perfkit.cache._keys import canonical
class Tagged(pydantic.BaseModel):
    tags: frozenset[str]
print(canonical(Tagged(tags=frozenset(f"tag{i}" for i in range(30)))))
"""


def test_a_model_with_a_set_field_has_one_key_in_every_process() -> None:
    keys = {
        subprocess.run(
            [sys.executable, "-c", SET_FIELD_SCRIPT],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "2")
    }
    assert len(keys) == 1
