"""Async concurrency: bounded gathering, parallel tool execution for tool-use turns, and
client-side pacing under an API's rate limits.

``gather_bounded`` runs awaitables with at most ``limit`` in flight and gives results in
input order; on an error (unless errors are collected) or a cancellation, such as an
enclosing ``asyncio.timeout()`` expiring, every task it started is cancelled and
awaited, so none outlives the call.
``run_tool_calls`` executes all ``tool_use`` blocks of one assistant turn at once, each
with its own timeout, and turns every outcome into a ``tool_result`` block: a failing or
timed-out tool becomes ``is_error``, never a crashed turn.
``RateLimiter`` paces requests to the Anthropic API from its ``anthropic-ratelimit-*``
headers (httpx event hooks on the SDK's client), so they wait instead of being refused.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from perfkit.concurrency._rate_limiter import RateLimiter, Ticket, estimate_input_tokens

T = TypeVar("T")

__all__ = [
    "DEFAULT_TOOL_TIMEOUT",
    "RateLimiter",
    "Ticket",
    "Tool",
    "estimate_input_tokens",
    "gather_bounded",
    "map_bounded",
    "run_tool_calls",
]

DEFAULT_TOOL_TIMEOUT = 30.0


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an int >= 1 or None (no limit), got {limit!r}")
    return limit


def _check_timeout(name: str, timeout: float | None) -> float | None:
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf
    ):
        raise ValueError(f"{name} must be a finite number of seconds > 0 or None, got {timeout!r}")
    return timeout


async def gather_bounded(
    awaitables: Iterable[Awaitable[T] | Callable[[], Awaitable[T]]],
    *,
    limit: int | None = None,
    return_exceptions: bool = False,
) -> list[T | BaseException]:
    """Await every item with at most ``limit`` running at once; results in input order.

    Items may be awaitables or zero-argument coroutine functions; pass functions when
    ``limit`` is set, so that waiting items are not even created yet. With
    ``return_exceptions`` an item's exception takes its place in the results;
    otherwise the first exception cancels the others and is raised. Bound the whole call
    with ``async with asyncio.timeout(...)``: nothing started is left running.

    >>> async def double(x: int) -> int:
    ...     await asyncio.sleep(0)
    ...     return 2 * x
    >>> asyncio.run(gather_bounded([lambda x=x: double(x) for x in range(5)], limit=2))
    [0, 2, 4, 6, 8]
    """
    limit = _check_limit(limit)
    items = list(awaitables)
    semaphore = asyncio.Semaphore(limit) if limit is not None else None
    results: list[Any] = [None] * len(items)

    async def run(index: int, item: Awaitable[T] | Callable[[], Awaitable[T]]) -> None:
        if semaphore is not None:
            await semaphore.acquire()
        try:
            awaitable = item() if callable(item) and not inspect.isawaitable(item) else item
            results[index] = await awaitable
        except Exception as error:
            if not return_exceptions:
                raise
            results[index] = error
        finally:
            if semaphore is not None:
                semaphore.release()

    try:
        async with asyncio.TaskGroup() as group:
            for index, item in enumerate(items):
                group.create_task(run(index, item))
    except BaseExceptionGroup as group_error:
        # TaskGroup wraps errors; callers expect the first one itself, as from gather().
        raise group_error.exceptions[0] from None
    finally:
        _close_unstarted(items)
    return results


def _close_unstarted(items: Sequence[Any]) -> None:
    """Close coroutine objects that were never awaited (after a timeout or an error), so
    they leave no "never awaited" warning behind."""
    for item in items:
        if inspect.iscoroutine(item) and inspect.getcoroutinestate(item) == inspect.CORO_CREATED:
            item.close()


async def map_bounded(
    function: Callable[[Any], Awaitable[T]],
    items: Iterable[Any],
    *,
    limit: int | None = None,
    return_exceptions: bool = False,
) -> list[T | BaseException]:
    """``function(item)`` for every item, at most ``limit`` at once, results in order."""
    return await gather_bounded(
        [functools.partial(function, item) for item in items],
        limit=limit,
        return_exceptions=return_exceptions,
    )


Tool = Callable[..., Any]
"""A tool: a sync or async callable taking the tool call's input as keyword arguments."""


async def run_tool_calls(
    content: Iterable[Any],
    tools: Mapping[str, Tool],
    *,
    tool_timeout: float | None = DEFAULT_TOOL_TIMEOUT,
    timeouts: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Run every ``tool_use`` block of an assistant message's ``content`` concurrently and
    return the ``tool_result`` blocks of the next user turn, in the same order.

    Each call gets its own timeout (``timeouts[name]``, else ``tool_timeout``). An unknown
    tool, an exception or a timeout becomes a result with ``is_error: True`` naming what
    went wrong. Sync tools run in worker threads, so they never block the event loop
    (a timed-out sync tool's thread cannot be stopped; it finishes in the background).
    Blocks may be SDK objects or dicts.
    """
    default_timeout = _check_timeout("tool_timeout", tool_timeout)
    calls = [block for block in map(_as_dict, content) if block.get("type") == "tool_use"]
    per_tool = dict(timeouts or {})
    for name, seconds in per_tool.items():
        _check_timeout(f"timeouts[{name!r}]", seconds)

    async def run(call: dict[str, Any]) -> dict[str, Any]:
        name = call.get("name", "")
        tool = tools.get(name)
        if tool is None:
            known = ", ".join(sorted(tools)) or "(none)"
            return _result(call, f"unknown tool {name!r}; known tools: {known}", error=True)
        try:
            async with asyncio.timeout(per_tool.get(name, default_timeout)):
                output = await _invoke(tool, call.get("input") or {})
        except TimeoutError:
            seconds = per_tool.get(name, default_timeout)
            return _result(call, f"tool {name!r} timed out after {seconds} s", error=True)
        except Exception as error:
            return _result(
                call, f"tool {name!r} failed: {type(error).__name__}: {error}", error=True
            )
        return _result(call, output, error=False)

    results = await gather_bounded([functools.partial(run, call) for call in calls], limit=limit)
    return [result for result in results if isinstance(result, dict)]


async def _invoke(tool: Tool, arguments: Mapping[str, Any]) -> Any:
    if inspect.iscoroutinefunction(tool):
        return await tool(**arguments)
    value = await asyncio.to_thread(tool, **arguments)
    return await value if inspect.isawaitable(value) else value


def _result(call: Mapping[str, Any], output: Any, *, error: bool) -> dict[str, Any]:
    text = output if isinstance(output, str) else json.dumps(output, default=str)
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.get("id"), "content": text}
    if error:
        block["is_error"] = True
    return block


def _as_dict(block: Any) -> dict[str, Any]:
    if isinstance(block, Mapping):
        return dict(block)
    dump = getattr(block, "model_dump", None)
    if callable(dump):
        return dict(dump(mode="json"))
    raise TypeError(f"a content block must be a mapping or an SDK model, got {block!r}")
