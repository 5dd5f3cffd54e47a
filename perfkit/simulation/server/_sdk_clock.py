"""A Stainless-generated SDK (anthropic, openai) made deterministic on a virtual clock."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import Any

from perfkit._clock import Clock


@contextmanager
def sdks_on_clock(base_clients: list[ModuleType], clock: Clock, seed: int) -> Iterator[None]:
    """Make Stainless-generated SDKs (their ``_base_client`` modules) deterministic on a
    virtual clock.

    The async client sleeps through the event loop, which virtual time already covers;
    the sync client calls ``time.sleep``, which would cost real seconds, so it sleeps on
    ``clock`` instead. Back-off without ``retry-after`` has random jitter, which would
    make modeled times differ between runs; it is drawn from a generator seeded by
    ``seed`` instead. And each async client's first request looks up the platform in a
    worker thread: a thread finishes in real time, while virtual timers of other tasks
    may fire meanwhile, so the request's modeled time would depend on the machine's
    speed; the (quick) lookup runs inline instead."""
    if clock.mode != "virtual":
        yield
        return
    from unittest import mock

    with ExitStack() as stack:
        for base_client in base_clients:
            stack.enter_context(mock.patch.object(base_client, "time", _ClockTime(clock)))
            jitter = random.Random(seed).random
            stack.enter_context(mock.patch.object(base_client, "random", jitter))
            stack.enter_context(mock.patch.object(base_client, "asyncify", _inline))
        yield


def _inline(function: Callable[..., Any]) -> Callable[..., Any]:
    """``asyncify`` without the worker thread: the coroutine calls ``function`` itself."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return call


class _ClockTime:
    """Stands in for the ``time`` module inside the SDK: ``sleep`` uses the clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)
