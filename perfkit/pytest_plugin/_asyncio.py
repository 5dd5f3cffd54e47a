"""What perfkit adds for async tests, registered only when pytest-asyncio is active: an
asyncio Redis client fixture, virtual time for async tests on the virtual clock, and a
guard against an event-loop leak in looptime's pytest hook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from perfkit.pytest_plugin._fixtures import CLOCK_FIXTURE, clock_mode, is_async_test
from perfkit.pytest_plugin._keys import SETTINGS_KEY

if TYPE_CHECKING:
    import redis.asyncio

NAME = "perfkit-asyncio"
GUARD_NAME = "perfkit-looptime-leak-guard"


@pytest_asyncio.fixture
async def async_redis_client(request: pytest.FixtureRequest) -> AsyncIterator[redis.asyncio.Redis]:
    """The asyncio twin of ``redis_client``.

    Only fakeredis uses the test's clock (and so puts an async test in virtual time): a
    real server's sockets must not wait in virtual time, where their timeouts would
    expire at once."""
    settings = request.config.stash[SETTINGS_KEY]
    if settings.redis_url is None:
        from perfkit.simulation import fake_async_redis

        clock = request.getfixturevalue(CLOCK_FIXTURE)
        server = request.getfixturevalue("fake_redis_server")
        async with fake_async_redis(
            latency=settings.redis_latency, clock=clock, server=server
        ) as client:
            yield client
        return
    import redis.asyncio

    async with redis.asyncio.Redis.from_url(settings.redis_url) as client:
        await client.flushdb()
        yield client
        await client.flushdb()


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    # An async test that uses perfkit's clock runs on pytest-asyncio's loop; under the
    # virtual clock that loop runs in virtual time for the duration of the test. The
    # perfkit_clock fixture normally switched it already (then this is a no-op); this
    # covers pytest-asyncio versions whose runner fixture it cannot find.
    loop = _test_loop(pyfuncitem)
    if loop is None:
        return (yield)
    from perfkit._virtual_loop import virtual_time

    with virtual_time(loop):
        return (yield)


def _test_loop(item: pytest.Function) -> asyncio.AbstractEventLoop | None:
    if not (
        CLOCK_FIXTURE in item.fixturenames and is_async_test(item) and clock_mode(item) == "virtual"
    ):
        return None
    from perfkit._virtual_loop import current_loop_of

    return current_loop_of(asyncio.get_event_loop_policy())


class LooptimeLeakGuard:
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
            and not is_async_test(pyfuncitem)
        )
        if not hide:
            return (yield)
        policy = funcargs.pop("event_loop_policy")
        try:
            return (yield)
        finally:
            funcargs["event_loop_policy"] = policy
