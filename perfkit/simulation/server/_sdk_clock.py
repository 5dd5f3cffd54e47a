"""A Stainless-generated SDK (anthropic, openai) made deterministic on a virtual clock."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from perfkit._clock import Clock

_PATCHED = ("time", "random", "asyncify")
"""The names of an SDK's ``_base_client`` module replaced while on a clock."""


class _OnClock:
    """One ``sdks_on_clock`` context: the replacements it gives each module."""

    def __init__(self, clock: Clock, seed: int) -> None:
        self.replacements: dict[str, Any] = {
            "time": _ClockTime(clock),
            "random": random.Random(seed).random,
            "asyncify": _inline,
        }


_LOCK = threading.Lock()
_ORIGINALS: dict[ModuleType, dict[str, Any]] = {}
"""Each patched module's own attributes, kept while any context patches it."""
_ACTIVE: dict[ModuleType, list[_OnClock]] = {}
"""The contexts patching each module, oldest first: the newest one's replacements apply."""


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
    speed; the (quick) lookup runs inline instead.

    Several simulators may be active at once and stop in any order (not only nested):
    the most recently started one still active puts the SDK on its clock, and the SDK's
    own ``time``, ``random`` and ``asyncify`` are back once none is (``mock.patch``
    contexts closed out of order would restore a stopped simulator's clock for good)."""
    if clock.mode != "virtual":
        yield
        return
    context = _OnClock(clock, seed)
    with _LOCK:
        for module in base_clients:
            if module not in _ACTIVE:
                _ORIGINALS[module] = {name: getattr(module, name) for name in _PATCHED}
                _ACTIVE[module] = []
            _ACTIVE[module].append(context)
            _apply(module)
    try:
        yield
    finally:
        with _LOCK:
            for module in base_clients:
                contexts = _ACTIVE.get(module, [])
                if context in contexts:
                    contexts.remove(context)
                _apply(module)


def _apply(module: ModuleType) -> None:
    """Give ``module`` the newest active context's replacements, or its own attributes
    back (and forget them) once no context is left. Called with :data:`_LOCK` held."""
    contexts = _ACTIVE.get(module)
    if contexts:
        values = contexts[-1].replacements
    else:
        values = _ORIGINALS.pop(module, {})
        _ACTIVE.pop(module, None)
    for name, value in values.items():
        setattr(module, name, value)


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
