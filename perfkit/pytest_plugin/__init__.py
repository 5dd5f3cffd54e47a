"""The perfkit pytest plugin (registered through the ``pytest11`` entry point).

Loading it costs a project nothing it does not use: this module imports pytest and a few
small perfkit modules; the simulator, the anthropic SDK, Redis and reporting load when a
perfkit fixture, marker or option is used. The hooks are thin: the run's state lives in a
:class:`PerfkitSession` (``config.stash[SESSION_KEY]``).

Fixtures: ``perfkit_clock``, ``perf``, ``perfkit_counters``, ``anthropic_sim``,
``redis_client``, ``async_redis_client`` (with pytest-asyncio), ``fake_redis_server``,
``redis_server_binary``, ``redis_server``, ``real_redis_client``, ``simulated_network``,
``no_open_connections``, ``load_test``.
Markers: ``perfkit_clock(mode)``, ``perfkit_sim(**options)``, ``perfkit_network(**options)``,
``perfkit_slo(**targets)``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from perfkit import _settings
from perfkit.pytest_plugin import _markers
from perfkit.pytest_plugin._fixtures import (
    anthropic_sim,
    fake_redis_server,
    load_test,
    no_open_connections,
    perf,
    perfkit_clock,
    perfkit_counters,
    real_redis_client,
    redis_client,
    redis_server,
    redis_server_binary,
    simulated_network,
)
from perfkit.pytest_plugin._keys import COMPARISONS_KEY, SESSION_KEY, SETTINGS_KEY
from perfkit.pytest_plugin._session import WORKER_OUTPUT, PerfkitSession

NETWORK_ERRORS = frozenset({"APIConnectionError", "ConnectError", "ConnectTimeout"})
"""What the anthropic SDK and httpx raise when a request cannot reach its server."""


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from perfkit.pytest_plugin import _hookspecs

    pluginmanager.add_hookspecs(_hookspecs)


LOOPTIME_PLUGIN = "looptime_plugin"
"""looptime's pytest plugin (looptime gives perfkit its virtual time). Version 0.9's plugin
fails every fixture of a run without pytest-asyncio, so perfkit unregisters it then."""


@pytest.hookimpl(tryfirst=True)
def pytest_assertrepr_compare(
    config: pytest.Config, op: str, left: object, right: object
) -> list[str] | None:
    """A failing comparison explained with its credentials shown as ``***``."""
    from perfkit._secrets import shown_in_assertion

    shown_left, shown_right = shown_in_assertion(left), shown_in_assertion(right)
    if shown_left is left and shown_right is right:
        return None
    for lines in config.hook.pytest_assertrepr_compare(
        config=config, op=op, left=shown_left, right=shown_right
    ):
        if lines:
            return list(lines)
    return [f"{shown_left!r} {op} {shown_right!r}"]


def pytest_configure(config: pytest.Config) -> None:
    _without_broken_looptime_plugin(config)
    _settings.check_ini_keys(config)
    for marker in _markers.MARKERS.values():
        config.addinivalue_line("markers", marker)
    settings = _settings.resolve(config)
    config.stash[SETTINGS_KEY] = settings
    if settings.prices is not None:
        from perfkit._pricing import use_prices

        use_prices(settings.prices)
    comparisons: list[dict[str, Any]] = []
    config.stash[COMPARISONS_KEY] = comparisons
    session = PerfkitSession(config, settings, comparisons)
    config.stash[SESSION_KEY] = session
    if settings.baseline is not None and settings.baseline.exists():
        _check_baseline(session)
    if config.pluginmanager.has_plugin("asyncio"):
        from perfkit.pytest_plugin import _asyncio

        if not config.pluginmanager.has_plugin(_asyncio.NAME):
            config.pluginmanager.register(_asyncio, _asyncio.NAME)
            config.pluginmanager.register(_asyncio.LooptimeLeakGuard(), _asyncio.GUARD_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give the process back its shipped prices (a run inside another, as pytester's,
    must not leave its price file behind)."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is not None and settings.prices is not None:
        from perfkit._pricing import use_prices

        use_prices(None)


def _without_broken_looptime_plugin(config: pytest.Config) -> None:
    """Installed with perfkit, looptime's plugin would break a project that has no
    pytest-asyncio (it reads pytest-asyncio's plugin in every fixture's set-up); it serves
    only tests marked for looptime, which need pytest-asyncio anyway."""
    manager = config.pluginmanager
    plugin = manager.get_plugin(LOOPTIME_PLUGIN)
    if plugin is not None and not manager.has_plugin("asyncio"):
        manager.unregister(plugin, LOOPTIME_PLUGIN)


def _check_baseline(session: PerfkitSession) -> None:
    """A corrupt baseline is a usage error, found before any test runs."""
    from perfkit._errors import BaselineError
    from perfkit.reporting import load_baseline

    baseline = session.settings.baseline
    assert baseline is not None
    name = session.display(baseline)
    try:
        entries = frozenset(load_baseline(baseline, name)["benchmarks"])
    except BaselineError as error:
        raise pytest.UsageError(str(error)) from None
    scope = session.scope
    foreign = sorted(nodeid for nodeid in entries if not nodeid.startswith(scope))
    if foreign:
        raise pytest.UsageError(
            f"{name} gates the benchmarks under {scope or 'the rootdir'} (a baseline gates "
            f"the benchmarks in its own directory), but it holds {foreign[0]}"
            + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else "")
            + ": move it beside them, or run pytest from the directory its ids are relative to"
        )
    session.baseline_entries = entries


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, object, object]:
    # Before deselection: the report needs every benchmark the run could have measured.
    config.stash[SESSION_KEY].note_collected(items)
    if config.getoption("benchmark_skip", False):  # pytest-benchmark's switch skips perf too
        skip = pytest.mark.skip(reason="perf benchmark skipped (--benchmark-skip)")
        for item in items:
            if "perf" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)
    outcome = yield
    if config.getoption("benchmark_only", False):
        _keep_perf_benchmarks(items)
    return outcome


def _keep_perf_benchmarks(items: list[pytest.Item]) -> None:
    """pytest-benchmark's ``--benchmark-only`` skips every test without its ``benchmark``
    fixture; ``perf`` benchmarks are benchmarks too, so they keep running."""
    for item in items:
        if "perf" in getattr(item, "fixturenames", ()):
            item.own_markers = [
                mark
                for mark in item.own_markers
                if not (mark.name == "skip" and "--benchmark-only" in str(mark.kwargs))
            ]


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    """Turn a misuse of ``perf``, or a benchmark that reached the network, into one line
    naming the fix."""
    try:
        return (yield)
    except Exception as error:
        message = _misuse_message(pyfuncitem, error)
        if message is None:
            raise
    # Outside the except block, so that pytest shows the one line, not the chain.
    _markers.misuse(message)


def _misuse_message(item: pytest.Function, error: Exception) -> str | None:
    from perfkit._perf import PerfUsageError

    if isinstance(error, PerfUsageError):
        return str(error)
    names = {cls.__name__ for cls in type(error).__mro__}
    uses_perf = "perf" in item.fixturenames
    if uses_perf and names & NETWORK_ERRORS and "anthropic_sim" not in item.fixturenames:
        return (
            f"a perf round tried to reach a real server ({type(error).__name__}: {error}). "
            "Benchmarks run against the simulated API: add the anthropic_sim fixture to the "
            "test (def test_...(perf, anthropic_sim)) so the SDK's requests reach it"
        )
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    if not session.config.option.collectonly:
        session.config.stash[SESSION_KEY].ran = True
    return (yield)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    perfkit_session = session.config.stash[SESSION_KEY]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[WORKER_OUTPUT] = perfkit_session.worker_output()
        return
    perfkit_session.finish(session)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: a worker finished; take its share of the run."""
    config: pytest.Config = node.config
    output = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT)
    worker = getattr(node, "gateway", None)
    config.stash[SESSION_KEY].merge(getattr(worker, "id", "?"), output)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.write_summary(terminalreporter)


__all__ = [
    "COMPARISONS_KEY",
    "SESSION_KEY",
    "SETTINGS_KEY",
    "PerfkitSession",
    "anthropic_sim",
    "fake_redis_server",
    "load_test",
    "no_open_connections",
    "perf",
    "perfkit_clock",
    "perfkit_counters",
    "real_redis_client",
    "redis_client",
    "redis_server",
    "redis_server_binary",
    "simulated_network",
]
