"""The load generator: sends a workload model's requests to a URL or an in-process ASGI
app (see ``_http`` for the clients), and records what came back.

Latency is measured from each request's intended send time (the schedule's, in the open
model), into HDR histograms; time to first token from the same instant to the first
server-sent event carrying content (not ``ping``, ``done`` or the Anthropic API's framing
events). Errors are split by cause: ``http_<status>``, ``redirect_<status>`` (a 3xx
but 304: redirects are not followed), ``timeout``,
``connection``, ``stream_error`` (an SSE ``error`` event), ``unfinished`` (still running
when the drain period ended) and ``generator_overload`` (the generator already had
``max_in_flight`` requests outstanding). The event loop's clock is used throughout, so a
test on a virtual-time loop against an in-process app is measured in modeled time.
``request_timeout`` bounds each request as a whole.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perfkit._url import redact_url
from perfkit._virtual_loop import is_virtual_loop
from perfkit.load._constants import DEFAULT_TIMEOUT
from perfkit.load._histogram import LatencyHistogram
from perfkit.load._http import Client, make_client
from perfkit.load._models import ClosedModel, OpenModel, Request, RequestFactory
from perfkit.load._result import LoadResult, Progress

DEFAULT_REQUEST = Request()
NOT_TOKENS = frozenset(
    {"done", "error", "message_start", "content_block_start", "content_block_stop",
     "message_delta", "message_stop"}
)  # fmt: skip
"""Server-sent events that carry no content: time to first token waits for another one
(perfkit's service sends ``token``; the Anthropic API ``content_block_delta``)."""
DEFAULT_MAX_IN_FLIGHT = 1000
CPU_SATURATED = 0.9
"""Share of one CPU above which the generator's own figures cannot be trusted."""
LAG_TOLERATED = 0.025
"""p99 of how late requests left, above which the generator fell behind its schedule."""


class _Recorder:
    """Counts and histograms of the measured requests (those meant to be sent after the
    warm-up)."""

    def __init__(self, measure_from: float, measure_until: float) -> None:
        self.measure_from, self.measure_until = measure_from, measure_until
        self.completed_in_window = 0
        self.latency = LatencyHistogram()
        self.service_time = LatencyHistogram()
        self.ttft = LatencyHistogram()
        self.send_lag = LatencyHistogram()
        self.errors: Counter[str] = Counter()
        self.requests = self.successes = self.warmup_requests = self.sent = 0
        self.in_flight = 0
        self.idle_users = 0  # closed-model users the generator started only after the end

    def record_unsent(self, count: int) -> None:
        """``count`` measured requests the generator fell too far behind to send."""
        self.requests += count
        if count:
            self.errors["generator_overload"] += count

    def record(
        self,
        intended: float,
        sent: float,
        done: float,
        failure: str | None,
        first_event: float | None,
    ) -> None:
        if failure is None and self.measure_from <= done <= self.measure_until:
            self.completed_in_window += 1  # throughput: whenever the request was sent
        if intended < self.measure_from:
            self.warmup_requests += 1
            return
        self.requests += 1
        self.send_lag.record(max(0.0, sent - intended))
        if failure is not None:
            self.errors[failure] += 1
            return
        self.successes += 1
        self.latency.record(done - intended)
        self.service_time.record(done - sent)
        if first_event is not None:
            self.ttft.record(first_event - intended)


@dataclass(frozen=True)
class _Run:
    """What every part of one load test shares."""

    client: Client
    factory: RequestFactory
    recorder: _Recorder
    loop: asyncio.AbstractEventLoop
    start: float
    duration: float
    request_timeout: float
    max_in_flight: int

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def deadline(self) -> float:
        """When requests still running are given up: ``request_timeout`` after the end."""
        return self.end + self.request_timeout

    async def send(self, request: Request, intended: float) -> None:
        await _send(self.client, request, intended, self.recorder, self.loop, self.request_timeout)


def run(target: str | Any, model: OpenModel | ClosedModel, **options: Any) -> LoadResult:
    """:func:`run_load` in a new event loop, for synchronous callers (the CLI)."""
    return asyncio.run(run_load(target, model, **options))


async def run_load(
    target: str | Any,
    model: OpenModel | ClosedModel,
    *,
    duration: float,
    request: Request | RequestFactory = DEFAULT_REQUEST,
    warmup: float = 0.0,
    request_timeout: float = DEFAULT_TIMEOUT,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    progress: Callable[[Progress], None] | None = None,
) -> LoadResult:
    """Run a load test for ``duration`` seconds (the first ``warmup`` of them excluded
    from the results) against ``target``: a base URL, or an ASGI app served in-process.

    Each request may take ``request_timeout`` seconds in all; requests still in flight
    at the end get that long to finish, so the test never runs longer than
    ``duration + request_timeout``."""
    _check_seconds("duration", duration, positive=True)
    _check_seconds("request_timeout", request_timeout, positive=True)
    _check_seconds("warmup", warmup)
    if warmup >= duration:
        raise ValueError(f"warmup must be shorter than duration ({duration!r}), got {warmup!r}")
    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ValueError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
    factory: RequestFactory = request if callable(request) else (lambda _n: request)
    loop = asyncio.get_running_loop()
    if isinstance(target, str) and is_virtual_loop(loop):
        raise ValueError(
            "a load test against a URL needs real time, and this event loop runs in virtual "
            "time: run it with asyncio.run (or on the real clock)"
        )
    start = loop.time()
    recorder = _Recorder(start + warmup, start + duration)
    # The generator's own load is judged over the sending period, not the drain after it,
    # when an overloaded generator would look idle.
    sending = [time.perf_counter(), time.process_time()]
    stop = loop.call_at(start + duration, lambda: sending.extend(_elapsed(*sending)))
    client = make_client(target, max_in_flight, request_timeout)
    run = _Run(client, factory, recorder, loop, start, duration, request_timeout, max_in_flight)
    try:
        reporter = asyncio.create_task(_report_progress(progress, recorder, loop, start))
        try:
            await (_open(run, model) if isinstance(model, OpenModel) else _closed(run, model))
        finally:
            reporter.cancel()
    finally:
        await client.aclose()
    stop.cancel()
    wall, cpu = sending[2:] or _elapsed(*sending)
    return LoadResult(
        target=(
            redact_url(target)
            if isinstance(target, str)
            else f"in-process app {type(target).__name__}"
        ),
        model=model.describe(),
        duration=duration,
        warmup=warmup,
        requests=recorder.requests,
        successes=recorder.successes,
        completed_in_window=recorder.completed_in_window,
        errors=dict(sorted(recorder.errors.items())),
        warmup_requests=recorder.warmup_requests,
        latency=recorder.latency,
        service_time=recorder.service_time,
        ttft=recorder.ttft,
        send_lag=recorder.send_lag,
        warnings=_warnings(recorder, cpu, wall, virtual=is_virtual_loop(loop)),
    )


async def _open(run: _Run, model: OpenModel) -> None:
    """Send on schedule whatever the server does: a slow reply never delays the next."""
    running: set[asyncio.Task[None]] = set()
    try:
        await _schedule(run, model, running)
    except BaseException:  # cancelled, or a request factory failed: stop everything now
        await _drain(running, run.loop, deadline=run.loop.time())
        raise
    await _drain(running, run.loop, deadline=run.deadline)


async def _schedule(run: _Run, model: OpenModel, running: set[asyncio.Task[None]]) -> None:
    """Start each request at its intended time, into ``running``.

    A generator behind its schedule still lets the requests it started run (it yields
    after each one), and stops at the end of the test: the requests it never reached
    count as ``generator_overload``, without being drawn one by one (at a rate of
    millions a second, that alone would outlast the test many times over)."""
    for n, offset in enumerate(model.send_times(run.duration)):
        intended = run.start + offset
        delay = intended - run.loop.time()
        await asyncio.sleep(max(0.0, delay))
        now = run.loop.time()
        if now >= run.end:
            run.recorder.record(intended, now, now, "generator_overload", None)
            run.recorder.record_unsent(model.count_after(offset, run.duration))
            return
        if len(running) >= run.max_in_flight:
            run.recorder.record(intended, now, now, "generator_overload", None)
            continue
        task = asyncio.create_task(run.send(run.factory(n), intended))
        running.add(task)
        task.add_done_callback(running.discard)


async def _closed(run: _Run, model: ClosedModel) -> None:
    """Each user sends, waits for the reply, thinks, and sends again until the end."""
    numbers = iter(range(1 << 62))

    async def user() -> None:
        if run.loop.time() >= run.end:
            run.recorder.idle_users += 1
        while run.loop.time() < run.end:
            await run.send(run.factory(next(numbers)), run.loop.time())
            if model.think_time:
                await asyncio.sleep(model.think_time)

    users = {asyncio.create_task(user()) for _ in range(model.users)}
    await _drain(users, run.loop, deadline=run.deadline)  # cancels them if cancelled


async def _drain(
    tasks: set[asyncio.Task[None]], loop: asyncio.AbstractEventLoop, deadline: float
) -> None:
    """Wait for the tasks until ``deadline``, then cancel what is left (each cancelled
    request is recorded as unfinished)."""
    pending = set(tasks)
    done: set[asyncio.Task[None]] = set()
    try:
        if pending:
            done, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
    finally:  # also when the load test itself is cancelled: nothing is left running
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    for task in done:  # a user whose request factory failed: the test fails with it
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


async def _send(
    client: Client,
    request: Request,
    intended: float,
    recorder: _Recorder,
    loop: asyncio.AbstractEventLoop,
    request_timeout: float,
) -> None:
    sent = loop.time()
    first_event: float | None = None
    stream_failed = False
    failure: str | None = None

    def on_event(name: str) -> None:
        nonlocal first_event, stream_failed
        if first_event is None and name not in NOT_TOKENS:
            first_event = loop.time()
        stream_failed = stream_failed or name == "error"

    recorder.sent += 1
    recorder.in_flight += 1
    try:
        async with asyncio.timeout(request_timeout):
            status = await client.send(request, on_event if request.stream else None)
        failure = _status_failure(status) or ("stream_error" if stream_failed else None)
    except TimeoutError:
        failure = "timeout"
    except OSError:  # refused, reset, closed mid-response (ConnectionError is one)
        failure = "connection"
    except asyncio.CancelledError:
        failure = "unfinished"
        raise
    except Exception as error:  # a client-side failure is a failed request, not a success
        failure = f"client_error:{type(error).__name__}"
    finally:
        recorder.in_flight -= 1
        recorder.record(intended, sent, loop.time(), failure, first_event)


def _status_failure(status: int) -> str | None:
    """A redirect is not followed: an API endpoint that answers one is failing."""
    if status >= 400:
        return f"http_{status}"
    if 300 <= status < 400 and status != 304:  # 304 Not Modified answers, it does not move
        return f"redirect_{status}"
    return None


async def _report_progress(
    progress: Callable[[Progress], None] | None,
    recorder: _Recorder,
    loop: asyncio.AbstractEventLoop,
    start: float,
) -> None:
    """Call ``progress`` once a second with the counts so far."""
    if progress is None:
        return
    while True:
        await asyncio.sleep(1.0)
        progress(
            Progress(
                elapsed=loop.time() - start,
                sent=recorder.sent,
                completed=recorder.requests + recorder.warmup_requests,
                errors=sum(recorder.errors.values()),
                in_flight=recorder.in_flight,
            )
        )


def _elapsed(wall: float, cpu: float) -> list[float]:
    """Wall and CPU seconds since the readings ``wall`` and ``cpu``."""
    return [time.perf_counter() - wall, time.process_time() - cpu]


def _warnings(recorder: _Recorder, cpu: float, wall: float, *, virtual: bool) -> list[str]:
    """Why the generator's own figures may not be trusted, if they may not."""
    if virtual or wall <= 0:
        return []
    found = []
    share = cpu / wall
    if share >= CPU_SATURATED:
        found.append(
            f"this process used {share:.0%} of a CPU during the test: the generator (and an "
            "in-process app) was saturated, so latencies include its own queueing; lower "
            "the rate, or spread the load over more processes (Locust's workers)"
        )
    if recorder.idle_users:
        found.append(
            f"{recorder.idle_users:,} users never sent a request: the generator could not "
            "start them all before the end of the test; use fewer users, a longer test, or "
            "more processes"
        )
    lag = recorder.send_lag.percentile(99)
    if recorder.send_lag.count and lag > LAG_TOLERATED:
        found.append(
            f"requests left up to {lag * 1000:,.0f} ms after their scheduled time (p99): "
            "the generator fell behind its schedule"
        )
    return found


def _check_seconds(name: str, value: float, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not (0 <= value < math.inf) or (positive and value == 0):
        qualifier = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a number of seconds {qualifier}, got {value!r}")
