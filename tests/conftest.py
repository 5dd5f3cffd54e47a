"""Fixtures of perfkit's own test suite, and how it runs: on every core (pytest-xdist)
unless ``-n`` says otherwise."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from loopback_https import LoopbackHTTPS, running_https_server

from perfkit import VirtualClock

if TYPE_CHECKING:
    import anthropic

XDIST_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
"""What pytest-xdist sets in a worker's environment. pytest-benchmark reads the first and
turns itself off, so the pytest runs that tests start (pytester, subprocesses) must not
inherit them."""


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``pytest`` (and ``pytest tests/...``) runs the suite on every core, spread test by
    test (``--dist worksteal``). It is set here rather than in pyproject.toml's addopts,
    which ``pytest benchmarks`` reads too: benchmarks measure real time and never share
    the machine with each other. ``-n 0`` (or ``-p no:xdist``) runs the suite serially."""
    option = config.option
    if hasattr(config, "workerinput") or getattr(option, "numprocesses", 0) is not None:
        return
    option.numprocesses = "auto"
    if option.dist == "no":
        option.dist = "worksteal"


@pytest.fixture(autouse=True)
def _no_xdist_worker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pytest run started by a test is a run of its own, not one of this run's workers."""
    for name in XDIST_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _every_connection_closed(no_open_connections: None) -> None:
    """After every test, zero connections opened through tracked pools remain open."""


@pytest.fixture(scope="session")
def https_server() -> Iterator[LoopbackHTTPS]:
    """A real HTTPS server on loopback speaking HTTP/1.1 and HTTP/2 (hypercorn)."""
    with running_https_server() as server:
        yield server


@pytest.fixture
def clock() -> VirtualClock:
    """A fresh virtual clock (a test module may define its own ``clock``)."""
    return VirtualClock()


SDK_TLS = ssl.create_default_context()
"""One TLS context for the SDK clients of the tests: building one per client (the SDK's
default) costs milliseconds of certificate loading each time."""


@pytest.fixture
def client() -> Iterator[anthropic.Anthropic]:
    """An anthropic client without retries (a test module may define its own ``client``)."""
    import anthropic

    sdk = anthropic.Anthropic(
        api_key="test", http_client=anthropic.DefaultHttpxClient(verify=SDK_TLS), max_retries=0
    )
    yield sdk
    sdk.close()
