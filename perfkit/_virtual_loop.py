"""Switching a pytest-asyncio event loop to virtual time for one test (via looptime)."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import looptime


@contextmanager
def virtual_time(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Run ``loop`` in virtual time inside the block; its clock continues from where it is,
    so timers scheduled before the switch keep their meaning."""
    if isinstance(loop, looptime.LoopTimeEventLoop) and loop.looptime_on:
        yield  # already virtual (a looptime marker, or a loop made by VirtualClock.run)
        return
    if not isinstance(loop, asyncio.BaseEventLoop):
        raise TypeError(f"virtual time needs an asyncio.BaseEventLoop, got {type(loop).__name__}")
    now = loop.time()
    with warnings.catch_warnings():
        # Moving a reused loop's clock to "now" is never a step backwards in real terms.
        warnings.simplefilter("ignore", looptime.TimeWarning)
        patched = looptime.patch_event_loop(loop, _enabled=False)
        patched.setup_looptime(start=now, _enabled=False)
    with patched.looptime_enabled():
        yield


def current_loop_of(policy: asyncio.AbstractEventLoopPolicy) -> asyncio.AbstractEventLoop | None:
    """The loop ``policy`` has set for this thread, without creating one."""
    local = getattr(policy, "_local", None)
    loop = getattr(local, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None
