"""Fault tests of perfkit.cache against real Redis server processes: a server stopped and
restarted in the middle of concurrent calls, one down from the start, one too slow to
answer, and corrupt payloads; none of them may fail a caller or return a wrong value."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from perfkit._clock import Clock, RealClock, VirtualClock
from perfkit._errors import RedisServerError
from perfkit.cache import CircuitBreaker, MultiLayerCache, SignedPickleSerializer, cached
from perfkit.simulation import RedisServer

LOOPBACK = "127.0.0.1"
SOCKET_TIMEOUT = 0.2

# The acceptance run: 200 calls in pairs (two concurrent callers per key), a pair starting
# every PAIR_SPACING seconds (1 s in all), each origin call taking ORIGIN_SECONDS so that
# calls are between their GET and their SET when the server goes; the server goes
# STOP_AT seconds in and is restarted on its port DOWN_FOR seconds after it has gone.
CALLS = 200
DISTINCT_ARGUMENTS = 70
PAIR_SPACING = 0.01
ORIGIN_SECONDS = 0.02
STOP_AT = 0.2
DOWN_FOR = 0.15
COOL_DOWN = 0.3
FAILURE_THRESHOLD = 3
THREADS = 32


# --- servers and clients ------------------------------------------------------------------


@pytest.fixture
def binary(redis_server_binary: str) -> str:
    """The Redis server binary (the plugin's fixture: skips without one, fails under CI)."""
    return redis_server_binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def start_server(binary: str, port: int) -> RedisServer:
    server = RedisServer(binary, port=port)
    try:
        server.start()
    except RedisServerError as error:
        pytest.fail(str(error))
    return server


@pytest.fixture
def own_server(binary: str) -> Iterator[RedisServer]:
    """A server of this test's own on a fixed port, so it can be stopped and restarted
    where its clients expect it (a RedisServer left to pick its port picks a new one on
    every start)."""
    server = start_server(binary, free_port())
    try:
        yield server
    finally:
        server.stop()


def server_pid(server: RedisServer) -> int:
    with fast_client(server.port) as client:
        return int(client.info("server")["process_id"])


def kill(server: RedisServer, pid: int) -> None:
    """SIGKILL: the server goes at once, its connections reset, no orderly shutdown."""
    os.kill(pid, signal.SIGKILL)
    server.stop()  # reaps the process and removes its files


@contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    """The server process stopped with SIGSTOP: it accepts connections and never answers."""
    pid = server_pid(server)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)  # stopped, it would not act on the SIGTERM of stop()


@contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port whose listener completes connections but never reads or replies."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def fast_client(port: int) -> redis.Redis:
    """A client that gives up on a dead or silent server at once: short timeouts, no retry."""
    return redis.Redis(
        host=LOOPBACK,
        port=port,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


def fast_async_client(port: int) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host=LOOPBACK,
        port=port,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=AsyncRetry(NoBackoff(), 0),
    )


def make_cache(
    client: Any,
    clock: Clock,
    *,
    failure_threshold: int = FAILURE_THRESHOLD,
    cool_down: float = COOL_DOWN,
) -> MultiLayerCache:
    breaker = CircuitBreaker(failure_threshold=failure_threshold, cool_down=cool_down, clock=clock)
    return MultiLayerCache(client, namespace="faults", clock=clock, breaker=breaker)


# --- the origin: values derived from the arguments, so every result can be checked --------


def square_of(n: int) -> dict[str, int]:
    return {"n": n, "square": n * n}


def label_of(n: int) -> str:
    return f"label-{n}"


EXPECTED: dict[str, Callable[[int], Any]] = {"square": square_of, "label": label_of}


def acceptance_calls() -> list[tuple[str, int, float]]:
    """(function, argument, start offset) of each call: two callers per key start together,
    keys alternate between two functions, and arguments repeat after DISTINCT_ARGUMENTS."""
    calls = []
    for index in range(CALLS):
        pair = index // 2
        function = "square" if pair % 2 == 0 else "label"
        calls.append((function, pair % DISTINCT_ARGUMENTS, pair * PAIR_SPACING))
    return calls


def check_results(calls: list[tuple[str, int, float]], results: list[Any]) -> None:
    failed = [
        (call, result)
        for call, result in zip(calls, results, strict=True)
        if isinstance(result, BaseException)
    ]
    assert failed == []
    wrong = [
        (function, n, result)
        for (function, n, _), result in zip(calls, results, strict=True)
        if result != EXPECTED[function](n)
    ]
    assert wrong == []


def async_origins(
    cache: MultiLayerCache, origin_calls: list[tuple[str, int]], origin_seconds: float = 0.0
) -> dict[str, Callable[[int], Any]]:
    @cached(cache, name="square")
    async def square(n: int) -> dict[str, int]:
        origin_calls.append(("square", n))
        await asyncio.sleep(origin_seconds)
        return square_of(n)

    @cached(cache, name="label")
    async def label(n: int) -> str:
        origin_calls.append(("label", n))
        await asyncio.sleep(origin_seconds)
        return label_of(n)

    return {"square": square, "label": label}


def sync_origins(
    cache: MultiLayerCache, origin_calls: list[tuple[str, int]], origin_seconds: float = 0.0
) -> dict[str, Callable[[int], Any]]:
    @cached(cache, name="square")
    def square(n: int) -> dict[str, int]:
        origin_calls.append(("square", n))
        time.sleep(origin_seconds)
        return square_of(n)

    @cached(cache, name="label")
    def label(n: int) -> str:
        origin_calls.append(("label", n))
        time.sleep(origin_seconds)
        return label_of(n)

    return {"square": square, "label": label}


# --- the acceptance test: the server killed and restarted during 200 concurrent calls ----


def check_run(
    cache: MultiLayerCache,
    functions: dict[str, Any],
    calls: list[tuple[str, int, float]],
    results: list[Any],
    finished: list[float],
    outage: tuple[float, float],
) -> None:
    """Every call returned its own value, the outage fell in the middle of the run, and
    it was counted (by the cache and by each function) and opened the breaker."""
    check_results(calls, results)
    gone, back = outage
    assert min(finished) < gone < back < max(finished)
    stats = cache.stats()
    assert stats["total_requests"] == CALLS
    assert stats["l2_errors"] > 0
    per_function = [function.cache_stats()["l2_errors"] for function in functions.values()]
    assert sum(per_function) == stats["l2_errors"]
    assert cache.breaker.stats().opened >= 1


async def test_async_calls_survive_the_server_killed_and_restarted_mid_run(
    own_server: RedisServer,
) -> None:
    clock = RealClock()
    pid = server_pid(own_server)
    client = fast_async_client(own_server.port)
    fresh_client = fast_async_client(own_server.port)
    try:
        cache = make_cache(client, clock)
        functions = async_origins(cache, [], ORIGIN_SECONDS)
        calls = acceptance_calls()
        finished: list[float] = []

        async def call(function: str, n: int, start: float) -> Any:
            await asyncio.sleep(start)
            try:
                return await functions[function](n)
            finally:
                finished.append(time.perf_counter())

        async def kill_and_restart() -> tuple[float, float]:
            await asyncio.sleep(STOP_AT)
            await asyncio.to_thread(kill, own_server, pid)
            gone = time.perf_counter()
            await asyncio.sleep(DOWN_FOR)
            await asyncio.to_thread(own_server.start)
            return gone, time.perf_counter()

        *results, outage = await asyncio.gather(
            *(call(*spec) for spec in calls), kill_and_restart(), return_exceptions=True
        )
        assert isinstance(outage, tuple), outage
        check_run(cache, functions, calls, results, finished, outage)

        # After the cool-down a probe finds the restarted server and closes the breaker;
        # an entry written then is an L2 hit for a cache with an empty L1.
        await asyncio.sleep(COOL_DOWN)
        assert await functions["square"](1000) == square_of(1000)
        assert cache.breaker.state == "closed"
        fresh = make_cache(fresh_client, clock)
        fresh_origin_calls: list[tuple[str, int]] = []
        fresh_square = async_origins(fresh, fresh_origin_calls)["square"]
        assert await fresh_square(1000) == square_of(1000)
        assert fresh.stats()["l2_hits"] == 1
        assert fresh_origin_calls == []
    finally:
        await client.aclose()
        await fresh_client.aclose()


def test_threaded_calls_survive_the_server_stopped_and_restarted_mid_run(
    own_server: RedisServer,
) -> None:
    clock = RealClock()
    with fast_client(own_server.port) as client, fast_client(own_server.port) as fresh_client:
        cache = make_cache(client, clock)
        functions = sync_origins(cache, [], ORIGIN_SECONDS)
        calls = acceptance_calls()
        finished: list[float] = []
        begin = time.perf_counter()

        def call(function: str, n: int, start: float) -> Any:
            time.sleep(max(0.0, begin + start - time.perf_counter()))
            try:
                return functions[function](n)
            except Exception as error:  # reported by check_results, not raised in a worker
                return error
            finally:
                finished.append(time.perf_counter())

        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            futures = [pool.submit(call, *spec) for spec in calls]
            time.sleep(max(0.0, begin + STOP_AT - time.perf_counter()))
            own_server.stop()  # SIGTERM: an orderly shutdown, unlike the async test's kill
            gone = time.perf_counter()
            time.sleep(DOWN_FOR)
            own_server.start()
            back = time.perf_counter()
            results = [future.result() for future in futures]
        check_run(cache, functions, calls, results, finished, (gone, back))

        time.sleep(COOL_DOWN)
        assert functions["square"](1000) == square_of(1000)
        assert cache.breaker.state == "closed"
        fresh = make_cache(fresh_client, clock)
        fresh_origin_calls: list[tuple[str, int]] = []
        assert sync_origins(fresh, fresh_origin_calls)["square"](1000) == square_of(1000)
        assert fresh.stats()["l2_hits"] == 1
        assert fresh_origin_calls == []


# --- Redis down from the start ------------------------------------------------------------


def test_redis_down_from_the_start_opens_the_breaker_then_a_probe_recovers(binary: str) -> None:
    port = free_port()  # nothing listens there (yet)
    clock = VirtualClock()
    with fast_client(port) as client, fast_client(port) as fresh_client:
        cache = make_cache(client, clock, cool_down=10.0)
        origin_calls: list[tuple[str, int]] = []
        square = sync_origins(cache, origin_calls)["square"]

        # Closed: a miss tries its GET, and each failure counts. A miss whose GET failed
        # writes to L1 only (it cannot tell which invalidation marker its value was
        # computed under), so a call waits on a failing Redis once, not twice.
        assert square(1) == square_of(1)
        assert square(2) == square_of(2)
        assert (cache.stats()["l2_errors"], cache.breaker.state) == (2, "closed")
        assert square(3) == square_of(3)  # its GET is the third failure
        assert (cache.stats()["l2_errors"], cache.stats()["l2_skipped"]) == (3, 0)
        assert cache.breaker.state == "open"
        assert square.cache_stats()["l2_errors"] == 3  # counted for the function too

        # Open: no more attempts on Redis (each would count an error), just skips.
        start = time.perf_counter()
        values = [square(n) for n in range(4, 104)]
        elapsed = time.perf_counter() - start
        assert values == [square_of(n) for n in range(4, 104)]
        assert cache.stats()["l2_errors"] == 3
        assert cache.stats()["l2_skipped"] == square.cache_stats()["l2_skipped"] == 2 * 100
        # Waiting on Redis would take SOCKET_TIMEOUT a call (20 s for 100); a quarter of
        # that leaves room for a busy machine and still tells the two apart.
        assert elapsed < 100 * SOCKET_TIMEOUT / 4

        # Half-open after the cool-down: one probe, which fails and opens the breaker again.
        clock.advance(10.0)
        assert cache.breaker.state == "half_open"
        assert square(200) == square_of(200)
        assert cache.stats()["l2_errors"] == 4
        assert cache.breaker.stats().opened == 2
        assert cache.breaker.state == "open"

        # The server comes up: after the next cool-down the probe succeeds and closes it.
        server = start_server(binary, port)
        try:
            clock.advance(10.0)
            assert square(300) == square_of(300)
            assert cache.breaker.state == "closed"
            assert cache.stats()["l2_errors"] == 4
            fresh = make_cache(fresh_client, clock)
            fresh_origin_calls: list[tuple[str, int]] = []
            assert sync_origins(fresh, fresh_origin_calls)["square"](300) == square_of(300)
            assert fresh.stats()["l2_hits"] == 1
            assert fresh_origin_calls == []
        finally:
            server.stop()
        assert origin_calls == [("square", n) for n in [1, 2, 3, *range(4, 104), 200, 300]]


async def test_redis_down_from_the_start_async_concurrent_calls() -> None:
    port = free_port()
    clock = VirtualClock()
    client = fast_async_client(port)
    try:
        cache = make_cache(client, clock, cool_down=10.0)
        functions = async_origins(cache, [])
        arguments = range(50)

        values = await asyncio.gather(*(functions["label"](n) for n in arguments))
        assert values == [label_of(n) for n in arguments]
        # Concurrent calls were all let through before the first failure came back; the
        # breaker ignores what arrives once it is open, and their SETs were skipped.
        errors = cache.stats()["l2_errors"]
        assert FAILURE_THRESHOLD <= errors <= len(arguments) * 2
        assert cache.breaker.state == "open"

        again = range(50, 100)
        values = await asyncio.gather(*(functions["label"](n) for n in again))
        assert values == [label_of(n) for n in again]
        assert cache.stats()["l2_errors"] == errors
        assert cache.stats()["l2_skipped"] >= 2 * len(again)

        clock.advance(10.0)
        assert await functions["label"](500) == label_of(500)  # the probe, still refused
        assert cache.stats()["l2_errors"] == errors + 1
        assert cache.breaker.stats().opened == 2
    finally:
        await client.aclose()


# --- Redis slow: connections accepted, replies never sent ---------------------------------


@pytest.fixture(params=["sigstopped server", "silent listener"])
def unresponsive_port(request: pytest.FixtureRequest) -> Iterator[int]:
    if request.param == "silent listener":
        with silent_listener() as port:
            yield port
        return
    server = start_server(request.getfixturevalue("binary"), free_port())
    try:
        with paused(server):
            yield server.port
    finally:
        server.stop()


def test_a_server_that_never_answers_costs_a_caller_at_most_its_socket_timeouts(
    unresponsive_port: int,
) -> None:
    clock = VirtualClock()
    with fast_client(unresponsive_port) as client:
        cache = make_cache(client, clock, failure_threshold=1)
        square = sync_origins(cache, [])["square"]

        start = time.perf_counter()
        assert square(7) == square_of(7)  # its GET times out; it writes to L1 only
        elapsed = time.perf_counter() - start
        # The cache's own pool keeps to l2_timeout (the client's sockets wait 0.2 s);
        # generous for a busy machine, and still short of one more socket timeout.
        assert cache.l2_timeout <= elapsed < 2 * SOCKET_TIMEOUT
        assert cache.stats()["l2_errors"] == 1
        assert cache.breaker.state == "open"

        start = time.perf_counter()
        assert square(8) == square_of(8)
        assert time.perf_counter() - start < SOCKET_TIMEOUT  # no timeout waited out
        assert cache.stats()["l2_errors"] == 1


async def test_concurrent_async_calls_to_a_silent_server_wait_one_timeout_not_many(
    unresponsive_port: int,
) -> None:
    clock = VirtualClock()
    client = fast_async_client(unresponsive_port)
    try:
        cache = make_cache(client, clock, failure_threshold=1)
        label = async_origins(cache, [])["label"]
        arguments = range(20)

        start = time.perf_counter()
        values = await asyncio.gather(*(label(n) for n in arguments))
        elapsed = time.perf_counter() - start
        assert values == [label_of(n) for n in arguments]
        # Every GET went out before the first timed out (after l2_timeout, shorter than
        # the client's socket timeout), and a miss whose GET failed writes to L1 only:
        # one timeout in all, not one per call (calls waiting in turn would take 20
        # timeouts; the bound leaves a busy machine 10).
        assert cache.l2_timeout <= elapsed < len(arguments) * SOCKET_TIMEOUT / 2
        assert cache.stats()["l2_errors"] == len(arguments)
        assert cache.stats()["l2_skipped"] == 0
    finally:
        await client.aclose()


def test_a_paused_server_that_resumes_is_used_again_after_the_cool_down(
    own_server: RedisServer,
) -> None:
    clock = VirtualClock()
    with fast_client(own_server.port) as client:
        cache = make_cache(client, clock, failure_threshold=1, cool_down=10.0)
        square = sync_origins(cache, [])["square"]
        with paused(own_server):
            assert square(1) == square_of(1)
        assert cache.breaker.state == "open"
        assert cache.stats()["l2_errors"] == 1

        clock.advance(10.0)
        assert square(2) == square_of(2)
        assert cache.breaker.state == "closed"
        assert client.dbsize() == 1  # the entry for square(2), written after recovery


# --- corrupt payloads on a real server ----------------------------------------------------

CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "garbage": lambda _payload: b"definitely not a perfkit cache entry",
    "empty": lambda _payload: b"",
    "truncated header": lambda payload: payload[:5],
    "wrong magic": lambda payload: b"XX" + payload[2:],
    "truncated body": lambda payload: payload[:-2],
    "body not utf-8": lambda payload: payload[:-2] + b"\xff\xfe",
}


@pytest.fixture
def real_server(redis_server: RedisServer) -> RedisServer:
    redis_server.flush()
    return redis_server


def write_corrupt_entry(raw: redis.Redis, key: str, corrupt: Callable[[bytes], bytes]) -> None:
    payload = raw.get(key)
    assert isinstance(payload, bytes)
    raw.set(key, corrupt(payload))


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_payload_is_a_miss_and_is_deleted(
    real_server: RedisServer, corruption: str
) -> None:
    clock = RealClock()
    with fast_client(real_server.port) as raw, fast_client(real_server.port) as client:
        writer = make_cache(raw, clock)
        writer.set("entry", square_of(3))
        write_corrupt_entry(raw, writer.key("entry"), CORRUPTIONS[corruption])

        cache = make_cache(client, clock)
        assert cache.get("entry", "default") == "default"
        assert raw.exists(writer.key("entry")) == 0
        stats = cache.stats()
        assert (stats["corrupt"], stats["misses"], stats["l2_errors"]) == (1, 1, 0)
        assert cache.breaker.state == "closed"


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_a_corrupt_payload_under_a_cached_coroutine_is_replaced(
    real_server: RedisServer, corruption: str
) -> None:
    clock = RealClock()
    with fast_client(real_server.port) as raw:
        client = fast_async_client(real_server.port)
        try:
            writer = make_cache(client, clock)
            square = async_origins(writer, [])["square"]
            key = square.cache_key(4)  # type: ignore[attr-defined]
            assert await square(4) == square_of(4)
            write_corrupt_entry(raw, key, CORRUPTIONS[corruption])

            cache = make_cache(client, clock)
            origin_calls: list[tuple[str, int]] = []
            assert await async_origins(cache, origin_calls)["square"](4) == square_of(4)
            assert origin_calls == [("square", 4)]
            assert cache.stats()["corrupt"] == 1
            assert cache.stats()["l2_errors"] == 0

            reader = make_cache(client, clock)
            assert await async_origins(reader, [])["square"](4) == square_of(4)
            assert reader.stats()["l2_hits"] == 1  # the origin's value replaced the corrupt one
        finally:
            await client.aclose()


UNPICKLED: list[str] = []
OUR_SECRET = "our secret, 16 bytes or more"
THEIR_SECRET = "their secret, 16 bytes or more"


def record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class SideEffect:
    """Unpickling this calls :func:`record_unpickling`: proof of whether it was unpickled."""

    def __reduce__(self) -> tuple[Callable[[str], str], tuple[str]]:
        return record_unpickling, ("unpickled",)


def test_a_pickle_signed_with_another_secret_is_rejected_deleted_and_never_unpickled(
    real_server: RedisServer,
) -> None:
    UNPICKLED.clear()
    clock = RealClock()
    with fast_client(real_server.port) as client:
        theirs = MultiLayerCache(
            client, clock=clock, serializer=SignedPickleSerializer(THEIR_SECRET)
        )
        theirs.set("entry", SideEffect())
        control = MultiLayerCache(
            client, clock=clock, serializer=SignedPickleSerializer(THEIR_SECRET)
        )
        assert control.get("entry") == "unpickled"  # the payload is live under its own secret
        assert UNPICKLED == ["unpickled"]

        UNPICKLED.clear()
        ours = MultiLayerCache(client, clock=clock, serializer=SignedPickleSerializer(OUR_SECRET))
        assert ours.get("entry", "default") == "default"
        assert UNPICKLED == []
        assert client.exists(ours.key("entry")) == 0
        stats = ours.stats()
        assert (stats["rejected"], stats["corrupt"], stats["l2_errors"]) == (1, 0, 0)


# -- a bad key, and invalidations while the breaker is open -------------------------------------


def test_a_key_of_the_wrong_redis_type_is_a_corrupt_miss_and_keeps_the_breaker_closed() -> None:
    import fakeredis

    from perfkit.cache import CircuitBreaker, MultiLayerCache

    client = fakeredis.FakeRedis()
    breaker = CircuitBreaker(failure_threshold=1)
    cache = MultiLayerCache(client, namespace="wrongtype", breaker=breaker)
    client.rpush(cache.key("answer"), "not", "a", "string")  # GET on a list: WRONGTYPE
    for _ in range(3):
        assert cache.get("answer", "absent") == "absent"
    stats = cache.stats()
    assert (stats["corrupt"], stats["l2_errors"], stats["misses"]) == (1, 1, 3)
    assert breaker.state == "closed"
    assert client.exists(cache.key("answer")) == 0  # deleted, so it cannot fail again


def test_an_invalidation_while_the_breaker_is_open_still_reaches_redis() -> None:
    import fakeredis

    from perfkit.cache import CircuitBreaker, MultiLayerCache

    client = fakeredis.FakeRedis()
    breaker = CircuitBreaker(failure_threshold=1, cool_down=3600)
    cache = MultiLayerCache(client, namespace="stale", breaker=breaker)
    cache.set("price", 10)
    cache.set("other", 1)
    breaker.record_failure()
    assert breaker.state == "open"
    cache.delete("price")
    assert client.exists(cache.key("price")) == 0
    cache.clear()
    assert client.keys("stale:*") == []
    assert MultiLayerCache(client, namespace="stale").get("price", "gone") == "gone"
