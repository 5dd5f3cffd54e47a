"""Clocks: real time, and virtual time in which modeled latency costs no wall time."""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar, runtime_checkable

import looptime

from perfkit._defaults import CLOCK_MODES, ClockMode
from perfkit._errors import ClockError
from perfkit._virtual_loop import is_virtual_loop, skip_ahead, skip_idle_turns

T = TypeVar("T")


@runtime_checkable
class Clock(Protocol):
    """What perfkit needs of a clock: read it, and wait on it from sync or async code."""

    mode: ClockMode

    def now(self) -> float:
        """Seconds on this clock; only differences are meaningful."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds`` of this clock's time."""

    def asleep(self, seconds: float) -> Awaitable[None]:
        """Wait ``seconds`` of this clock's time without blocking the event loop."""

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine to completion in a new event loop on this clock."""

    def elapsed(self, since: float) -> float:
        """Seconds from ``since`` (an earlier :meth:`now`) to now, to the clock's resolution."""


def _check_seconds(seconds: float) -> float:
    if not 0 <= seconds < math.inf:  # also rejects NaN
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    return float(seconds)


class RealClock:
    """Wall-clock time: ``time.perf_counter`` and real sleeps.

    >>> clock = RealClock()
    >>> clock.sleep(0)
    """

    mode: ClockMode = "real"

    def now(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        time.sleep(_check_seconds(seconds))

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(_check_seconds(seconds))

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(main)

    def elapsed(self, since: float) -> float:
        return time.perf_counter() - since

    def __repr__(self) -> str:
        return "RealClock()"


class VirtualClock:
    """Virtual time: sleeping advances the clock at once, so durations are exact.

    Synchronous code sleeps with :meth:`sleep`, which advances the clock by exactly
    that much. Asynchronous code runs on a looptime event loop (from :meth:`run`, or a
    test's loop that the perfkit plugin switches to virtual time), whose clock jumps to
    the next timer whenever nothing is ready. :meth:`now` is the sum of both; worker
    threads (``asyncio.to_thread``) read the loop the clock follows.

    >>> clock = VirtualClock()
    >>> start = clock.now()
    >>> clock.sleep(2.5)
    >>> clock.now() - start
    2.5
    """

    mode: ClockMode = "virtual"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Integer microseconds, like looptime, so sums of modeled latencies are exact.
        self._offset_us = 0
        self._followed: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        with self._lock:
            offset_us, followed = self._offset_us, self._followed
        loop = _running_loop()
        if loop is None or not is_virtual_loop(loop):
            loop = followed  # a worker thread of the loop this clock follows
        loop_seconds = loop.time() if loop is not None and is_virtual_loop(loop) else 0.0
        return round(offset_us / 1e6 + loop_seconds, 6)

    @contextmanager
    def following(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """Inside the block, threads with no virtual loop of their own read ``loop``'s
        virtual time too, so times taken in worker threads match the loop's."""
        with self._lock:
            previous, self._followed = self._followed, loop
        try:
            yield
        finally:
            with self._lock:
                self._followed = previous

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def elapsed(self, since: float) -> float:
        return round(self.now() - since, 6)

    def advance(self, seconds: float) -> None:
        """Move this clock forward by ``seconds`` (what a blocking sleep costs)."""
        step = round(_check_seconds(seconds) * 1e6)
        with self._lock:
            self._offset_us += step

    async def asleep(self, seconds: float) -> None:
        seconds = _check_seconds(seconds)
        loop = asyncio.get_running_loop()
        if not is_virtual_loop(loop):
            raise ClockError(
                "VirtualClock.asleep() needs an event loop in virtual time; run the "
                "coroutine with VirtualClock.run(), or in a pytest-asyncio test or async "
                "fixture that uses the perfkit_clock fixture (directly or through "
                f"anthropic_sim or async_redis_client); this loop is a {type(loop).__name__} "
                "in real time"
            )
        if not skip_ahead(loop, seconds):  # something else may run meanwhile
            await asyncio.sleep(seconds)

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` on a new virtual-time event loop; its elapsed time adds to this clock."""
        loop = looptime.new_event_loop(start=0.0, _enabled=True)
        skip_idle_turns(loop)
        try:
            with self.following(loop):
                return loop.run_until_complete(_with_offset(self, main))
        finally:
            _shutdown(loop)

    def _absorb(self, loop: asyncio.AbstractEventLoop) -> None:
        """Add a finished :meth:`run` loop's time to the offset and stop following it, in
        one step, so no thread sees that time counted twice or not at all."""
        step = round(loop.time() * 1e6)
        with self._lock:
            self._offset_us += step
            if self._followed is loop:
                self._followed = None

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now()!r})"


_VIRTUAL_ASLEEP = VirtualClock.asleep


async def _with_offset(clock: VirtualClock, main: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    try:
        return await main
    finally:
        clock._absorb(loop)


def _shutdown(loop: asyncio.AbstractEventLoop) -> None:
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def sleep_at_once(clock: Clock) -> Callable[[float], bool]:
    """For a task about to wait many times on ``clock`` (a streamed body's chunks): a
    function that ends a wait of that many seconds at once and returns True where
    :meth:`VirtualClock.asleep` would (nothing else would run meanwhile), else returns
    False, and the task awaits ``clock.asleep``. Made in the task: it is bound to its loop.
    Without the coroutine and the checks of ``asleep`` per wait, a chunk costs half. A
    subclass (or a patched class) with an ``asleep`` of its own keeps it: it is awaited."""
    loop = _running_loop()
    if (
        getattr(type(clock), "asleep", None) is not _VIRTUAL_ASLEEP  # a subclass's own asleep
        or loop is None
        or not is_virtual_loop(loop)
    ):
        return _never
    return functools.partial(skip_ahead, loop)


def _never(_seconds: float) -> bool:
    return False


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def make_clock(mode: str) -> Clock:
    """The clock for a mode name: ``"virtual"`` or ``"real"``."""
    factories: dict[str, Callable[[], Clock]] = {"virtual": VirtualClock, "real": RealClock}
    if mode not in factories:
        raise ValueError(f"clock mode must be one of {', '.join(CLOCK_MODES)}; got {mode!r}")
    return factories[mode]()
