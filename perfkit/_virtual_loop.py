"""Switching a pytest-asyncio event loop to virtual time for one test (via looptime)."""

from __future__ import annotations

import asyncio
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import looptime

# Where each loop's virtual time stood when it last left virtual time: a loop shared by
# several tests (a wider pytest-asyncio loop scope) must never see its time step back.
_HIGH_WATER: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, float] = (
    weakref.WeakKeyDictionary()
)


@contextmanager
def virtual_time(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Run ``loop`` in virtual time inside the block. Its virtual clock starts at the
    loop's real time, or where an earlier block left it if that is later, so the loop's
    time never steps back and timers scheduled before the switch keep their meaning."""
    if isinstance(loop, looptime.LoopTimeEventLoop) and loop.looptime_on:
        yield  # already virtual (a looptime marker, or a loop made by VirtualClock.run)
        return
    if not isinstance(loop, asyncio.BaseEventLoop):
        raise TypeError(f"virtual time needs an asyncio.BaseEventLoop, got {type(loop).__name__}")
    start = max(loop.time(), _HIGH_WATER.get(loop, 0.0))
    with warnings.catch_warnings():
        # looptime warns when a loop's stored virtual time is later than ``start``; that
        # stored time is stale here (the loop ran in real time since), so it is no step back.
        warnings.simplefilter("ignore", looptime.TimeWarning)
        patched = looptime.patch_event_loop(loop, _enabled=False)
        patched.setup_looptime(start=start, _enabled=False)
    with patched.looptime_enabled():
        try:
            yield
        finally:
            _HIGH_WATER[loop] = patched.time()


def is_virtual_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` runs in virtual time now."""
    return isinstance(loop, looptime.LoopTimeEventLoop) and loop.looptime_on


def current_loop_of(policy: asyncio.AbstractEventLoopPolicy) -> asyncio.AbstractEventLoop | None:
    """The loop ``policy`` has set for this thread, without creating one."""
    local = getattr(policy, "_local", None)
    loop = getattr(local, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None
