"""Fixtures of perfkit's own test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loopback_https import LoopbackHTTPS, running_https_server


@pytest.fixture(autouse=True)
def _every_connection_closed(no_open_connections: None) -> None:
    """After every test, zero connections opened through tracked pools remain open."""


@pytest.fixture(scope="session")
def https_server() -> Iterator[LoopbackHTTPS]:
    """A real HTTPS server on loopback speaking HTTP/1.1 and HTTP/2 (hypercorn)."""
    with running_https_server() as server:
        yield server
