"""The support agent's benchmark suite: its speedup report, and a Redis client for rounds."""

from __future__ import annotations

from collections.abc import Callable

import fakeredis
import pytest
import redis.asyncio
from perfkit import Clock, fake_async_redis
from perfkit.pytest_plugin import SETTINGS_KEY
from perfkit.reporting import Claim, Speedup

NAIVE = "test_support_agent.py::test_inbox[naive]"
IMPROVED = "test_support_agent.py::test_inbox[improved]"


def pytest_perfkit_speedups(config: pytest.Config) -> list[Speedup]:
    """The improvements we promised, beside the benchmarks that measure them."""
    return [
        Speedup(
            "answer cache + concurrent lookups",
            "8 tickets, half of them repeats",
            baseline=NAIVE,
            optimized=IMPROVED,
            claim=Claim.factor(2, text="2x (our target)"),
        ),
        Speedup(
            "answer cache",
            "API requests for 8 tickets",
            baseline=NAIVE,
            optimized=IMPROVED,
            figure="counters.api_requests",
        ),
    ]


@pytest.fixture
def open_store(
    pytestconfig: pytest.Config, perfkit_clock: Clock, fake_redis_server: fakeredis.FakeServer
) -> Callable[[], redis.asyncio.Redis]:
    """Opens an asyncio Redis client on the running event loop: fakeredis with the
    configured modeled round trip, or the server of ``--perfkit-redis-url``.

    ``perf`` runs each round on an event loop of its own, and an asyncio connection
    cannot move between loops, so a benchmark opens its client inside the round."""
    settings = pytestconfig.stash[SETTINGS_KEY]
    if settings.redis_url is not None:
        url = settings.redis_url
        return lambda: redis.asyncio.Redis.from_url(url)
    return lambda: fake_async_redis(
        latency=settings.redis_latency, clock=perfkit_clock, server=fake_redis_server
    )
