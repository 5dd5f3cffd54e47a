"""Switching a pytest-asyncio event loop to virtual time for one test (via looptime), and
moving virtual time on without the loop's idle turns where nothing can happen meanwhile."""

from __future__ import annotations

import asyncio
import heapq
import warnings
import weakref
from asyncio import base_events
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
    skip_idle_turns(patched)
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


# looptime (0.9) keeps its virtual time in private fields, read and moved below. Should a
# release rename them, nothing is skipped: every wait takes looptime's own path. A release
# could also keep the names and change what a jump does (its tick rule, its idle turns),
# which no field check can see: the shortcuts run only on the looptime versions whose
# select() they were checked against, line by line.
_CHECKED_LOOPTIME = frozenset({"0.9"})


def _looptime_version() -> str | None:
    try:
        from looptime import _version
    except ImportError:
        return None
    version = getattr(_version, "version", None)
    return version if isinstance(version, str) else None


_LOOPTIME_CHECKED = _looptime_version() in _CHECKED_LOOPTIME
_NOW = "_LoopTimeEventLoop__now"
_TICKS_PER_SECOND = "_LoopTimeEventLoop__resolution_reciprocal"
_END = "_LoopTimeEventLoop__end"
_EXECUTOR_FUTURES = "_LoopTimeEventLoop__sync_futures"
_IDLE_TURNS = "_LoopTimeEventLoop__noop_cycles"
_SKIPS = "_perfkit_skips_idle_turns"
_LONGEST_SLEEP = 1e12
"""Seconds (about 31,700 years): a longer sleep, or NaN, takes asyncio's own path."""
_REBUILD_ABOVE: int = getattr(base_events, "_MIN_SCHEDULED_TIMER_HANDLES", 100)
_REBUILD_CANCELLED_FRACTION: float = getattr(
    base_events, "_MIN_CANCELLED_TIMER_HANDLES_FRACTION", 0.5
)
"""Above this many timers, with more than this fraction cancelled, asyncio rebuilds its heap."""
_LONGEST_WAIT = 24 * 3600
"""asyncio's longest wait on the selector at once (``base_events.MAXIMUM_SELECT_TIMEOUT``)."""


def _has_internals(loop: asyncio.AbstractEventLoop) -> bool:
    return (
        _LOOPTIME_CHECKED
        and isinstance(getattr(loop, _NOW, None), int)
        and isinstance(getattr(loop, _TICKS_PER_SECOND, None), int)
        and hasattr(loop, _EXECUTOR_FUTURES)
    )


def _closed_world(loop: Any) -> bool:
    """Whether only the loop's own callbacks and timers can make anything happen: no
    socket or pipe is watched but the loop's self-pipe (whose writers, other threads'
    ``call_soon_threadsafe``, put their callback in the ready queue first), and no
    executor job is running."""
    jobs = getattr(loop, _EXECUTOR_FUTURES, None)
    if jobs is None:
        return False
    if jobs.data:  # a WeakSet's references (iterating the set itself costs a guard)
        for ref in tuple(jobs.data):
            job = ref()
            if job is not None and not job.done():
                return False
    selector = loop._selector
    # selectors' own table of watched descriptors; get_map() is a view of it
    watched = getattr(selector, "_fd_to_key", None) or selector.get_map()
    if len(watched) != 1:
        return not watched
    self_pipe = getattr(loop, "_ssock", None)
    return self_pipe is not None and self_pipe.fileno() in watched


def skip_idle_turns(loop: asyncio.AbstractEventLoop) -> None:
    """Let ``loop`` (a looptime loop) jump to its next timer as soon as it has nothing
    ready, while nothing outside the loop can act (see :func:`_closed_world`).

    Before each jump of virtual time, looptime turns the loop 42 more times, polling for
    I/O, so that a thread or a socket has a moment of real time to act first. With
    nothing to poll those turns change nothing, and they were most of the wall time of a
    virtual-time run: one jump per streamed chunk. While a socket is watched or an
    executor job runs, looptime's turns stay. Idempotent; a loop without looptime's
    fields is left as it is."""
    selector = getattr(loop, "_selector", None)
    looptime_select = getattr(selector, "select", None)
    if (
        looptime_select is None
        or getattr(looptime_select, _SKIPS, False)
        or not _has_internals(loop)
        or not isinstance(getattr(loop, _IDLE_TURNS, None), int)
    ):
        return
    idle_turns = getattr(loop, _IDLE_TURNS)

    def select(timeout: float | None) -> Any:
        if timeout:  # nothing is ready, and a timer is due in ``timeout`` seconds
            jump = _closed_world(loop) and not _timer_due_now(loop)
            setattr(loop, _IDLE_TURNS, 0 if jump else idle_turns)
        return looptime_select(timeout)

    setattr(select, _SKIPS, True)
    selector.select = select  # type: ignore[union-attr]


def _timer_due_now(loop: Any) -> bool:
    """Whether asyncio runs the next timer in this turn without time moving on: one due
    within the clock's resolution. looptime starts its idle turns then, but never jumps
    in them; with no idle turns to count it would jump a tick at the next such timer."""
    scheduled = loop._scheduled
    return bool(scheduled) and scheduled[0]._when < loop.time() + loop._clock_resolution


def skip_ahead(loop: asyncio.AbstractEventLoop, delay: float) -> bool:
    """Move ``loop``'s virtual time on as ``await asyncio.sleep(delay)`` in the running task
    would, without leaving the task, if nothing else would run before that sleep ended:
    nothing ready, no timer due by then, no cancellation pending, nothing outside the
    loop able to act, and the loop not in asyncio's debug mode (which would log the
    step as a slow callback). Returns whether it did; if not, nothing changed.

    The end is reached in looptime's own steps (whole ticks, one more for a remainder
    under a tick), so it is the very time at which the sleep would have ended."""
    base: Any = loop
    if not 0 < delay < _LONGEST_SLEEP or base._ready or base._stopping or not is_virtual_loop(loop):
        return False
    if base._debug or not _LOOPTIME_CHECKED:  # debug: the step would be logged as slow
        return False
    now, ticks = getattr(loop, _NOW, None), getattr(loop, _TICKS_PER_SECOND, None)
    if not isinstance(now, int) or not isinstance(ticks, int) or getattr(loop, _END, 0) is not None:
        return False
    task = asyncio.current_task(loop)
    if task is None or task.cancelling() or not _closed_world(loop):
        return False
    resolution: float = base._clock_resolution
    # The usual case of _timer_tick inline (one step of whole ticks), else _timer_tick.
    time = now / ticks  # loop.time()
    when = time + delay  # asyncio.sleep's timer
    timeout = when - time
    end = now + round(timeout * ticks)
    if not 1 / ticks <= timeout <= _LONGEST_WAIT or when >= end / ticks + resolution:
        end = _timer_tick(now, ticks, when, resolution)
    scheduled = base._scheduled
    if scheduled:
        if scheduled[0].when() < end / ticks + resolution:
            return False  # another timer runs first, or in the same turn
        cancelled, count = base._timer_cancelled_count, len(scheduled)
        if any(
            turn_count > _REBUILD_ABOVE and cancelled / turn_count > _REBUILD_CANCELLED_FRACTION
            for turn_count in (count + 1, count)
        ):
            return False  # asyncio would rebuild its heap of timers in one of the sleep's turns
        # asyncio.sleep pushes its timer on the heap and pops it again, and the turn that
        # wakes the task first drops cancelled timers from the top of the heap. Both
        # rearrange the heap, and so which of two later timers due at the very same time
        # runs first.
        heapq.heappush(scheduled, asyncio.TimerHandle(when, _no_callback, (), loop))
        heapq.heappop(scheduled)
        while scheduled and scheduled[0]._cancelled:
            base._timer_cancelled_count -= 1
            heapq.heappop(scheduled)._scheduled = False
    setattr(loop, _NOW, end)
    return True


def _no_callback() -> None:
    pass


def _timer_tick(now: int, ticks: int, when: float, resolution: float) -> int:
    """The tick at which a timer due at ``when`` runs, from tick ``now`` with nothing else
    scheduled: asyncio waits ``when - time()`` (a day at most), which looptime steps in
    whole ticks (one more for a wait under a tick), until the timer is due within the
    clock's resolution."""
    while when >= now / ticks + resolution:
        timeout = min(when - now / ticks, _LONGEST_WAIT)
        now += round(timeout * ticks) + (1 if timeout < 1 / ticks else 0)
    return now
