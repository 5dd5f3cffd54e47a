"""What keeps the service up under slow or numerous clients: a cap on open connections
below the file-descriptor limit, deadlines for a request's head and body, and logging
that collapses a flood of identical lines.

uvicorn alone bounds neither: its HTTP protocols arm no timer until a first response
(a connection that sends half a request head holds its socket forever), and once the
process runs out of descriptors asyncio's accept loop logs the same error without end.
``limit_concurrency`` cannot help: it answers 503 only to a complete request head, and
it counts the slow connections too, so a flood would turn ``/healthz`` away.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_HEADER_TIMEOUT = 10.0
"""Seconds a request head may take to arrive (from the connection, or the last response)."""
DEFAULT_BODY_TIMEOUT = 30.0
"""Seconds a request body may take to arrive once its head has (a chat body is 256 KiB at
most)."""
DEFAULT_SEND_TIMEOUT = 30.0
"""Seconds a response may wait for its client to read (nginx's ``send_timeout``): one that
never reads would otherwise hold its connection, and its place under the cap, forever."""
DEFAULT_KEEP_ALIVE = 5
"""Seconds an idle keep-alive connection stays open (uvicorn's default)."""
DEFAULT_MAX_HEAD_BYTES = 32 * 1024
"""A request head over this is answered 431 (nginx's default buffers hold 32 KiB)."""
DEFAULT_BACKLOG = 2048
"""Connections the kernel queues for accept() (uvicorn's default): a short queue drops
connection attempts in a burst, and a dropped SYN costs its client a second."""
ACCEPT_BURSTS = 4
"""asyncio accepts up to a burst of connections per loop iteration, and a connection is
counted (and a slow one closed to make room) a few iterations later: this many bursts
of descriptors are kept free so that accept() never runs out."""
RESERVED_DESCRIPTORS = 64
"""Descriptors kept for everything but client connections: the listening socket, logs,
Redis and the model API's connections."""


_FIELDS = (
    "max_connections",
    "header_timeout",
    "body_timeout",
    "send_timeout",
    "keep_alive",
    "max_head_bytes",
    "backlog",
)


class ServiceLimits:
    """How many connections the service holds open and how long a request may take to
    arrive; ``max_connections=None`` derives the cap from the process's descriptor limit.

    >>> ServiceLimits(header_timeout=5).header_timeout
    5.0
    """

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        keep_alive: int = DEFAULT_KEEP_ALIVE,
        max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
        backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        self.header_timeout = _positive("header_timeout", header_timeout)
        self.body_timeout = _positive("body_timeout", body_timeout)
        self.send_timeout = _positive("send_timeout", send_timeout)
        self.keep_alive = _count("keep_alive", keep_alive, minimum=1)
        self.max_head_bytes = _count("max_head_bytes", max_head_bytes, minimum=1024)
        self.backlog = _count("backlog", backlog, minimum=1)
        if max_connections is not None:
            _count("max_connections", max_connections, minimum=1)
        self.max_connections = max_connections

    def resolve(self, descriptor_limit: int | None = None) -> tuple[int, int]:
        """The most client connections to hold, and how many asyncio may accept in one
        loop iteration: derived from ``descriptor_limit`` (by default the process's soft
        ``RLIMIT_NOFILE``) so that accept() never runs out of descriptors; a reserve
        for the rest of the process and room for the accept bursts are kept free."""
        limit = descriptor_limit if descriptor_limit is not None else _descriptor_limit()
        burst = min(self.backlog, max(8, (limit - RESERVED_DESCRIPTORS) // 16))
        safe = limit - RESERVED_DESCRIPTORS - ACCEPT_BURSTS * burst
        if safe < 1:
            raise ValueError(
                f"a descriptor limit of {limit} (ulimit -n) leaves no room for client "
                f"connections; raise it above {RESERVED_DESCRIPTORS + ACCEPT_BURSTS * burst}"
            )
        if self.max_connections is not None and self.max_connections > safe:
            raise ValueError(
                f"max_connections must be at most {safe} with a descriptor limit of {limit} "
                f"(ulimit -n), got {self.max_connections}"
            )
        cap = self.max_connections if self.max_connections is not None else safe
        return cap, burst

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.max_connections,
            self.header_timeout,
            self.body_timeout,
            self.send_timeout,
            self.keep_alive,
            self.max_head_bytes,
            self.backlog,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServiceLimits) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        pairs = ", ".join(
            f"{name}={value!r}" for name, value in zip(_FIELDS, self._fields(), strict=True)
        )
        return f"ServiceLimits({pairs})"


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _count(name: str, value: int, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return value


def _descriptor_limit() -> int:
    import resource  # POSIX only

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


# --- the guard on uvicorn's HTTP protocol ----------------------------------------------

_HEAD, _BODY, _ANSWER = "head", "body", "answer"
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-length: 0\r\nconnection: close\r\n\r\n"
)


class _Guard:
    """One server's guarded connections: the cap, and a sweep that enforces deadlines.

    Connections are kept in the order they last began to wait for a request, so the one
    that has waited longest is found at the front without a scan."""

    def __init__(self, limits: ServiceLimits, cap: int) -> None:
        self.limits = limits
        self.cap = cap
        self.connections: dict[Any, None] = {}
        shortest = min(limits.header_timeout, limits.body_timeout, limits.send_timeout)
        self.sweep_every = min(max(shortest / 4, 0.02), 1.0)
        self._sweeping: asyncio.TimerHandle | None = None

    def waiting(self, connection: Any) -> None:
        """``connection`` begins to wait for a request (new, or its last one answered)."""
        self.connections.pop(connection, None)
        self.connections[connection] = None

    def opened(self, connection: Any, loop: asyncio.AbstractEventLoop) -> None:
        if len(self.connections) > self.cap:
            self._evict(connection, loop.time())
        if self._sweeping is None:
            self._sweeping = loop.call_later(self.sweep_every, self._sweep, loop)

    def closed(self, connection: Any) -> None:
        self.connections.pop(connection, None)

    def _evict(self, newcomer: Any, now: float) -> None:
        """Make room: close the connection that has waited longest for its request (a
        slow client, or an idle keep-alive one), else turn the newcomer away."""
        answering = []
        victim = newcomer
        for connection in self.connections:
            if connection is newcomer:
                break
            if connection.guard_phase(now) != _ANSWER:
                victim = connection
                break
            answering.append(connection)
        for connection in answering:  # not candidates until they wait again
            self.waiting(connection)
        victim.guard_close(None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        deadlines = {_HEAD: self.limits.header_timeout, _BODY: self.limits.body_timeout}
        for connection in list(self.connections):
            phase = connection.guard_phase(now)
            if phase != _ANSWER and now - connection.guard_since > deadlines[phase]:
                connection.guard_close(_TIMEOUT if connection.guard_head_bytes else None)
            elif now - connection.guard_stalled_since > self.limits.send_timeout:
                connection.guard_close(None)  # its client has stopped reading the answer
        self._sweeping = (
            loop.call_later(self.sweep_every, self._sweep, loop) if self.connections else None
        )


def guarded_protocol(limits: ServiceLimits, base: type[Any] | None = None) -> type[Any]:
    """uvicorn's HTTP protocol class (``base``, by default the one uvicorn would pick)
    under ``limits``: pass it as ``uvicorn.Config(http=...)``."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol
    guard = _Guard(limits, limits.resolve()[0])

    class Guarded(base):  # type: ignore[misc,valid-type]
        guard_since = 0.0
        guard_head_bytes = 0
        _guard_tail = b""  # the last bytes of a head still arriving, which may begin its end
        guard_stalled_since = math.inf  # since when the client has not read what is sent
        _guard_state: tuple[str, int] = (_HEAD, 0)

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._guard_enter(_HEAD, self.loop.time())
            guard.opened(self, self.loop)

        def connection_lost(self, exc: Exception | None) -> None:
            guard.closed(self)
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._guard_enter(_HEAD, self.loop.time())

        def pause_writing(self) -> None:
            super().pause_writing()
            self.guard_stalled_since = self.loop.time()

        def resume_writing(self) -> None:
            super().resume_writing()
            self.guard_stalled_since = math.inf

        def data_received(self, data: bytes) -> None:
            if not self.transport.is_closing() and self.guard_phase(self.loop.time()) == _HEAD:
                # Counted before parsing (a head sent in one write is a head too), up to the
                # blank line that ends it: a body sent with its head is not head.
                seen = self._guard_tail + data
                end = _HEAD_END.search(seen)
                self.guard_head_bytes += (
                    len(data) if end is None else end.end() - len(self._guard_tail)
                )
                self._guard_tail = seen[-3:] if end is None else b""
                if self.guard_head_bytes > limits.max_head_bytes:
                    self.guard_close(_TOO_LARGE)
                    return
            super().data_received(data)

        def guard_phase(self, now: float) -> str:
            """What the connection waits for: a request head, its body, or the answer;
            a new phase starts its clock."""
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                phase = _HEAD
            else:
                phase = _BODY if cycle.more_body else _ANSWER
            if (phase, id(cycle)) != self._guard_state and phase != _HEAD:
                self._guard_enter(phase, now)
            return phase

        def _guard_enter(self, phase: str, now: float) -> None:
            self._guard_state = (phase, id(self.cycle))
            self.guard_since = now
            self.guard_head_bytes = 0
            self._guard_tail = b""
            if phase == _HEAD:
                guard.waiting(self)

        def guard_close(self, response: bytes | None) -> None:
            guard.closed(self)
            if not self.transport.is_closing():
                if response is not None:
                    self.transport.write(response)
                    self.transport.close()
                else:
                    self.transport.abort()  # the descriptor is freed at once

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


# --- logging that a flood cannot fill ----------------------------------------------------

DEFAULT_LOG_INTERVAL = 10.0
GUARDED_LOGGERS = ("asyncio", "uvicorn.error", "perfkit.service")
logger = logging.getLogger("perfkit.service")


def uvicorn_options(limits: ServiceLimits) -> dict[str, Any]:
    """``uvicorn.Config`` options that apply ``limits`` (``backlog`` is the accept burst;
    :func:`guarded_server` then gives the kernel's queue its full length)."""
    cap, burst = limits.resolve()
    logger.info("serving at most %d connections at once", cap)
    return {
        "http": guarded_protocol(limits),
        "timeout_keep_alive": limits.keep_alive,
        "backlog": burst,
        "h11_max_incomplete_event_size": limits.max_head_bytes,
    }


def guarded_server(app: Any, limits: ServiceLimits, **options: Any) -> Any:
    """A ``uvicorn.Server`` of ``app`` under ``limits``; ``options`` go to its config."""
    import uvicorn

    class GuardedServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            # asyncio listens with the backlog it accepts per iteration; the kernel's
            # queue may be longer.
            for server in getattr(self, "servers", []):
                for listener in server.sockets:
                    with socket.socket(fileno=os.dup(listener.fileno())) as same:
                        same.listen(limits.backlog)

    return GuardedServer(uvicorn.Config(app, **options, **uvicorn_options(limits)))


class RepeatFilter(logging.Filter):
    """Collapses identical log lines: the first within ``interval`` seconds passes, the
    rest are counted, and the next to pass says how many were suppressed.

    >>> repeats = RepeatFilter(interval=60)
    >>> record = logging.LogRecord("asyncio", logging.ERROR, "", 0, "out of files", None, None)
    >>> [repeats.filter(record) for _ in range(3)]
    [True, False, False]
    """

    def __init__(
        self, interval: float = DEFAULT_LOG_INTERVAL, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval = _positive("interval", interval)
        self.clock = clock
        self._seen: dict[tuple[str, int, int], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # The line as written, not its format: "request %s failed" with each request's id
        # is a different line (a client's request id must find its detail in the log).
        key = (record.name, record.levelno, hash(record.getMessage()))
        now = self.clock()
        passed_at, suppressed = self._seen.get(key, (-float("inf"), 0))
        if now - passed_at < self.interval:
            self._seen[key] = (passed_at, suppressed + 1)
            return False
        if len(self._seen) > 1000:  # a bounded memory of lines, whatever logs them
            self._seen.clear()
        self._seen[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} more like this suppressed)"
        return True


@contextmanager
def repeats_collapsed(
    interval: float = DEFAULT_LOG_INTERVAL, loggers: tuple[str, ...] = GUARDED_LOGGERS
) -> Iterator[RepeatFilter]:
    """A :class:`RepeatFilter` on ``loggers`` while the block runs."""
    repeats = RepeatFilter(interval)
    for name in loggers:
        logging.getLogger(name).addFilter(repeats)
    try:
        yield repeats
    finally:
        for name in loggers:
            logging.getLogger(name).removeFilter(repeats)
