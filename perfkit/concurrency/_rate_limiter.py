"""Client-side pacing from the API's own rate-limit headers, so requests are not refused.

The Anthropic API answers every request with what each of its limits has left
(``anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining}``), and a
refused one with ``retry-after``. The SDK only reacts: it sends, gets a 429, waits
``retry-after`` and tries again, twice at most. :class:`RateLimiter` keeps, per model, a
mirror of the API's token buckets (capacity = the limit, refilled limit / 60 a second)
and makes each request wait, before it is sent, until the buckets can take it: one
request, its estimated input tokens and its ``max_tokens`` (what the API holds for the
output until the request ends). Each response corrects the mirror with the API's figures;
a 429 holds back every request for that model until ``retry-after``.
"""

from __future__ import annotations

import asyncio
import json
import math
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

REQUESTS, INPUT, OUTPUT = "requests", "input-tokens", "output-tokens"
KINDS: Final = (REQUESTS, INPUT, OUTPUT)
TICKET_KEY: Final = "perfkit.rate_limiter"
"""Where a request's ticket travels from the request hook to the response hook."""
TOKEN_ROUNDING: Final = 500
"""The API reports token figures "rounded to the nearest thousand" (its rate-limits page):
the truth may be up to 500 below what it says, so the mirror assumes it is."""
DEFAULT_PROBE_TIMEOUT: Final = 30.0
MAX_RETRY_AFTER: Final = 60.0
"""The longest a 429 holds a model back: every limit is a per-minute token bucket
"continuously replenished up to your maximum limit" (the rate-limits page), so any of them
is full again within a minute; a ``retry-after`` of years (a broken proxy, a hostile
server) must not freeze every request of the model."""
_SLACK = 1e-9
"""Relative slack for a bucket refilled in floating point: a wait of 1e-16 s would not
move a clock and would be retried forever."""
_RESOLUTION = 1e-6
"""Waits shorter than this (a microsecond, the clocks' resolution) are not waited."""


def estimate_input_tokens(body: Mapping[str, Any], content: bytes) -> int:
    """A cautious estimate of a request's input tokens: a quarter of its JSON's bytes
    (about four characters a token for English, with the JSON's keys counted as well)."""
    return math.ceil(len(content) / 4)


@dataclass
class _Bucket:
    capacity: float
    level: float
    at: float
    spent: float = 0.0
    """Every cost taken so far: what was taken after a response's request is the
    difference of two readings."""

    def advance(self, now: float) -> None:
        if now > self.at:
            self.level = min(self.capacity, self.level + self.capacity / 60.0 * (now - self.at))
            self.at = now

    def wait(self, cost: float) -> float:
        """Seconds until ``cost`` fits; 0 if it does (within floating-point slack) or
        never can (let the API say so rather than wait forever)."""
        deficit = cost - self.level
        if cost > self.capacity or deficit <= _SLACK * max(1.0, cost):
            return 0.0
        return deficit * 60.0 / self.capacity


@dataclass
class _Model:
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    probing: bool = False
    answered: bool = False
    """A response has come back: its limits (possibly none) are known, no more probes."""
    held_until: float = 0.0
    loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
    """The event loop ``turn`` and ``changed`` belong to."""

    def bind(self) -> None:
        """Make the waits belong to the running loop: a limiter may outlive a loop (one
        ``asyncio.run`` after another), never serve two running at once."""
        loop = asyncio.get_running_loop()
        bound = self.loop() if self.loop is not None else None
        if bound is loop:
            return
        if bound is not None and bound.is_running():
            raise RuntimeError(
                "a RateLimiter serves one event loop at a time, and another one, running "
                "in another thread, uses it: make one limiter per event loop"
            )
        self.loop = weakref.ref(loop)
        self.turn, self.changed, self.probing = asyncio.Lock(), asyncio.Event(), False

    def notify(self) -> None:
        """Wake the request waiting for its turn: the figures it waits on changed."""
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass(frozen=True)
class Ticket:
    """A request let through: its model, when, its cost, and what every bucket had spent
    with it taken (``probe``: sent to learn the limits, nothing taken)."""

    model: str
    at: float
    cost: Mapping[str, float]
    spent: Mapping[str, float]
    probe: bool = False


class RateLimiter:
    """Paces requests to the Anthropic API from its ``anthropic-ratelimit-*`` headers, so
    that they wait on the client instead of being refused.

    Hook it into the SDK's HTTP client (every attempt, retries included, passes through)::

        limiter = RateLimiter()
        client = anthropic.AsyncAnthropic(
            http_client=anthropic.DefaultAsyncHttpxClient(event_hooks=limiter.event_hooks())
        )

    Per model, requests take turns (first come, first served); the one whose turn it is
    sleeps until the mirrored buckets hold its cost, or until a response changes them,
    never polling. Until a model's first response has come back, one request goes alone
    (``probe_timeout`` later another tries, if it never got an answer); a server that
    reports no limits is then not paced. A 429 holds the model back ``retry-after``, at
    most :data:`MAX_RETRY_AFTER`. A request
    larger than a bucket's whole capacity is sent at once: the API refuses it, and waiting
    would not help. ``input_tokens(body, content)`` estimates a request's input tokens
    (default: :func:`estimate_input_tokens`, cautious; cached reads, which the API does not
    count, are counted). One limiter serves one event loop at a time (it may outlive one).
    """

    def __init__(
        self,
        *,
        input_tokens: Callable[[Mapping[str, Any], bytes], int] = estimate_input_tokens,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not callable(input_tokens):
            raise TypeError(
                f"input_tokens must be a callable (body, content) -> int, got {input_tokens!r}"
            )
        if (
            isinstance(probe_timeout, bool)
            or not isinstance(probe_timeout, (int, float))
            or not (0 < probe_timeout < math.inf)
        ):
            raise ValueError(
                f"probe_timeout must be a finite number of seconds > 0, got {probe_timeout!r}"
            )
        self._input_tokens = input_tokens
        self._probe_timeout = float(probe_timeout)
        self._clock = clock
        self._models: dict[str, _Model] = {}
        self.waited = 0.0
        """Seconds requests spent waiting in :meth:`acquire`, all together."""
        self.refused = 0
        """429 responses seen."""

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def acquire(
        self, model: str, *, input_tokens: int, output_tokens: int, retry: bool = False
    ) -> Ticket:
        """Wait until ``model``'s limits can take one request of ``input_tokens`` and
        ``output_tokens`` (its ``max_tokens``), take them, and return the ticket to hand
        to :meth:`observe` with the response. ``retry``: the request is a client's retry;
        while the model's first request is out and unanswered it can only be that probe's
        retry (its connection failed), so it probes in its place at once."""
        state = self._models.setdefault(model, _Model())
        state.bind()
        cost = {REQUESTS: 1.0, INPUT: float(input_tokens), OUTPUT: float(output_tokens)}
        if retry and state.probing and not state.answered:
            return Ticket(model, self._now(), cost, {}, probe=True)
        start = self._now()
        try:
            async with state.turn:
                return await self._take(model, state, cost)
        finally:
            self.waited += self._now() - start

    async def _take(self, model: str, state: _Model, cost: dict[str, float]) -> Ticket:
        while True:
            now = self._now()
            if not state.buckets and not state.answered:
                if not state.probing:
                    state.probing = True
                    return Ticket(model, now, cost, {}, probe=True)
                if not await self._changed(state, self._probe_timeout):
                    state.probing = False  # the probe never got an answer: try again
                continue
            for bucket in state.buckets.values():
                bucket.advance(now)
            wait = max(
                [state.held_until - now]
                + [bucket.wait(cost[kind]) for kind, bucket in state.buckets.items()]
            )
            if wait < _RESOLUTION:
                for kind, bucket in state.buckets.items():
                    bucket.level -= cost[kind]
                    bucket.spent += cost[kind]
                spent = {kind: bucket.spent for kind, bucket in state.buckets.items()}
                return Ticket(model, now, cost, spent)
            await self._changed(state, wait)

    @staticmethod
    async def _changed(state: _Model, seconds: float) -> bool:
        """Sleep until the model's figures change or ``seconds`` pass (True: changed)."""
        try:
            async with asyncio.timeout(seconds):
                await state.changed.wait()
        except TimeoutError:
            return False
        return True

    def observe(self, ticket: Ticket, status: int, headers: Mapping[str, str]) -> None:
        """Correct ``ticket``'s model with a response's figures: the limits, what remains
        (less what was taken since the request, plus what refilled since), and on a 429
        ``retry-after`` before which no request of that model is sent."""
        state = self._models.setdefault(ticket.model, _Model())
        now = self._now()
        for kind in KINDS:
            reported = _reported(headers, kind)
            if reported is None:
                continue
            limit, remaining = reported
            bucket = state.buckets.get(kind)
            if bucket is None:
                bucket = state.buckets[kind] = _Bucket(limit, limit, now)
            bucket.advance(now)
            bucket.capacity = limit
            rounding = 0 if kind == REQUESTS else TOKEN_ROUNDING
            taken_since = bucket.spent - ticket.spent.get(kind, 0.0)
            refilled = limit / 60.0 * max(0.0, now - ticket.at)
            bucket.level = min(limit, remaining - rounding + refilled - taken_since)
        if status == 429:
            self.refused += 1
            state.held_until = max(state.held_until, now + _retry_after(headers))
        state.answered = True
        if ticket.probe:
            state.probing = False
        state.notify()

    def settle(self, ticket: Ticket, output_tokens: int) -> None:
        """Give back what ``ticket`` held for output beyond the ``output_tokens`` its reply
        used, as the API does when a request ends (its OTPM estimate is max_tokens)."""
        state = self._models.get(ticket.model)
        bucket = state.buckets.get(OUTPUT) if state is not None else None
        if state is None or bucket is None:
            return
        bucket.advance(self._now())
        bucket.level = min(bucket.capacity, bucket.level + ticket.cost[OUTPUT] - output_tokens)
        state.notify()

    def forget(self, ticket: Ticket) -> None:
        """A request that got no response (a connection error): a probe lets another try."""
        state = self._models.get(ticket.model)
        if state is not None and ticket.probe:
            state.probing = False
            state.notify()

    # -- the httpx shell -----------------------------------------------------------------

    def event_hooks(self) -> dict[str, list[Callable[[Any], Awaitable[None]]]]:
        """``event_hooks`` for an async httpx (or httpx2) client: every request to
        ``/v1/messages`` waits its turn; every response is observed. A sync client (which
        calls a hook and drops the coroutine it returns, pacing nothing) gets a TypeError
        at its first request."""
        return {
            "request": [_async_only(self._on_request)],
            "response": [_async_only(self._on_response)],
        }

    async def _on_request(self, request: Any) -> None:
        if not request.url.path.endswith("/v1/messages") or request.method != "POST":
            return
        content = bytes(request.content)
        try:
            body = json.loads(content)
        except ValueError:
            return
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return
        max_tokens = body.get("max_tokens")
        output = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 0
        ticket = await self.acquire(
            body["model"],
            input_tokens=self._input_tokens(body, content),
            output_tokens=output,
            retry=request.headers.get("x-stainless-retry-count", "0") not in ("", "0"),
        )
        request.extensions[TICKET_KEY] = ticket

    async def _on_response(self, response: Any) -> None:
        ticket = response.request.extensions.get(TICKET_KEY)
        if not isinstance(ticket, Ticket):
            return
        self.observe(ticket, response.status_code, response.headers)
        # A whole (not streamed) reply has ended: its usage tells what the API gives back
        # of the output estimate now, long before its headers would show it.
        if response.status_code == 200 and "json" in response.headers.get("content-type", ""):
            await response.aread()
            used = _output_tokens(response.content)
            if used is not None:
                self.settle(ticket, used)

    def __repr__(self) -> str:
        return (
            f"RateLimiter(models={sorted(self._models)}, waited={self.waited:.3f}, "
            f"refused={self.refused})"
        )


def _async_only(hook: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """``hook``, refusing to be called outside an event loop (by a sync client)."""

    def called(message: Any) -> Awaitable[None]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise TypeError(
                "RateLimiter.event_hooks() are for an async HTTP client "
                "(anthropic.AsyncAnthropic with DefaultAsyncHttpxClient): a sync client "
                "would drop the hook's coroutine and pace nothing"
            ) from None
        return hook(message)

    return called


def _reported(headers: Mapping[str, str], kind: str) -> tuple[float, float] | None:
    """A limit and what remains of it, as a response reports them, or None."""
    try:
        limit = float(headers[f"anthropic-ratelimit-{kind}-limit"])
        remaining = float(headers[f"anthropic-ratelimit-{kind}-remaining"])
    except (KeyError, ValueError):
        return None
    if not (0 < limit < math.inf and 0 <= remaining < math.inf):
        return None
    return limit, remaining


def _output_tokens(content: bytes) -> int | None:
    """``usage.output_tokens`` of a message's JSON, or None."""
    try:
        used = json.loads(content)["usage"]["output_tokens"]
    except (ValueError, KeyError, TypeError):
        return None
    return used if isinstance(used, int) and used >= 0 else None


def _retry_after(headers: Mapping[str, str]) -> float:
    """Seconds a 429 asks to wait (``retry-after-ms``, else ``retry-after``, as the SDK
    reads them), at most :data:`MAX_RETRY_AFTER`; 0 when it says nothing usable."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
        if 0 <= seconds < math.inf:
            return min(seconds, MAX_RETRY_AFTER)
    return 0.0
