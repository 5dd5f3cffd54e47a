"""Connection pooling: shared pooled clients, their lifecycle, and connection statistics.

A client made per request pays a TCP (and TLS) handshake every time; one shared client
keeps connections alive and reuses them. This module makes such clients (plain httpx,
and the anthropic SDK's client built on the SDK's own default client, so its timeouts,
limits and TCP keep-alive are kept), keeps exactly one per process or event loop
(:class:`SharedClient`, :class:`SharedAsyncClient`), and counts what the pool really
does (:func:`track_connections`): connections opened and closed where the socket is
opened and closed, and requests sent through the pool.

HTTP/2 is opt-in (``http2=True``): one connection carries concurrent requests, but
httpcore's HTTP/2 support has open bugs around stream limits, so HTTP/1.1 stays the
default.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import anthropic
import httpx

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "ConnectionStats",
    "SharedAsyncClient",
    "SharedClient",
    "anthropic_client",
    "async_anthropic_client",
    "connection_stats",
    "live_connection_stats",
    "pooled_async_client",
    "pooled_client",
    "register_stats",
    "track_connections",
]

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""The seed's pool size: 100 connections, 20 of them kept alive between requests."""

DEFAULT_TIMEOUT = httpx.Timeout(10.0)
"""The seed's timeout: 10 s for connect, read, write and pool waits."""

C = TypeVar("C")


class ConnectionStats:
    """What one client's connection pool did: connections opened and closed, requests sent.

    Counted by the pool's own network backend (a connection counts once its TCP
    connection is open, and is closed when its socket is) and at the pool's entry point
    (every request the pool handles), so nothing is inferred.

    >>> stats = ConnectionStats()
    >>> stats.requests, stats.opened, stats.open, stats.reuse_ratio
    (0, 0, 0, 0.0)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.opened = 0
        self.closed = 0
        self.requests = 0

    @property
    def open(self) -> int:
        """Connections open now (opened and not yet closed)."""
        return self.opened - self.closed

    @property
    def reuse_ratio(self) -> float:
        """The share of requests that reused an open connection instead of opening one:
        0.0 when every request opened its own, 0.9 for 10 requests over 1 connection."""
        if not self.requests:
            return 0.0
        return max(0.0, 1.0 - self.opened / self.requests)

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def count_open(self) -> None:
        with self._lock:
            self.opened += 1

    def count_close(self) -> None:
        with self._lock:
            self.closed += 1

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "opened": self.opened,
            "closed": self.closed,
            "open": self.open,
            "reuse_ratio": self.reuse_ratio,
        }

    def __repr__(self) -> str:
        return (
            f"ConnectionStats(requests={self.requests}, opened={self.opened}, "
            f"closed={self.closed}, open={self.open})"
        )


_LIVE_STATS: weakref.WeakSet[ConnectionStats] = weakref.WeakSet()
_CLIENT_STATS: weakref.WeakKeyDictionary[Any, ConnectionStats] = weakref.WeakKeyDictionary()


def register_stats(stats: ConnectionStats) -> ConnectionStats:
    """Count ``stats`` among :func:`live_connection_stats` (for leak checks)."""
    _LIVE_STATS.add(stats)
    return stats


def live_connection_stats() -> list[ConnectionStats]:
    """Every :class:`ConnectionStats` still alive, for checking that none has a
    connection left open."""
    return list(_LIVE_STATS)


def track_connections(client: Any, stats: ConnectionStats | None = None) -> ConnectionStats:
    """Count the connections and requests of ``client``'s pools from now on.

    ``client`` is an ``httpx`` or ``httpx2`` client (sync or async), or an anthropic
    ``Anthropic``/``AsyncAnthropic`` client (its underlying httpx2 client is tracked).
    Pass ``stats`` to count several clients together (an agent's clients, say).
    Tracking the same client again returns the same statistics.
    """
    http_client = _http_client_of(client)
    existing = _CLIENT_STATS.get(http_client)
    if existing is not None:
        if stats is not None and stats is not existing:
            raise ValueError(f"{client!r} is already tracked with other statistics")
        return existing
    pools = [_pool_of(transport) for transport in _transports_of(http_client)]
    stats = register_stats(stats if stats is not None else ConnectionStats())
    for transport, pool in pools:
        pool._network_backend = _CountingBackend(pool._network_backend, stats)
        transport._pool = _PoolProbe(pool, stats)
    _CLIENT_STATS[http_client] = stats
    return stats


def connection_stats(client: Any) -> ConnectionStats:
    """The statistics of a client made by this module or passed to
    :func:`track_connections`."""
    stats = _CLIENT_STATS.get(_http_client_of(client))
    if stats is None:
        raise ValueError(
            f"{type(client).__name__} object is not tracked; make it with perfkit.pooling "
            "(pooled_client, anthropic_client, ...) or pass it to track_connections() first"
        )
    return stats


def pooled_client(
    *,
    http2: bool = False,
    limits: httpx.Limits = DEFAULT_LIMITS,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> httpx.Client:
    """A tracked ``httpx.Client`` with a shared keep-alive pool (the seed's limits and
    timeout by default); ``http2=True`` lets HTTPS origins negotiate HTTP/2.

    >>> with pooled_client() as client:
    ...     connection_stats(client).opened
    0
    """
    client = httpx.Client(http2=http2, limits=limits, timeout=timeout, **kwargs)
    track_connections(client)
    return client


def pooled_async_client(
    *,
    http2: bool = False,
    limits: httpx.Limits = DEFAULT_LIMITS,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """The asyncio twin of :func:`pooled_client`."""
    client = httpx.AsyncClient(http2=http2, limits=limits, timeout=timeout, **kwargs)
    track_connections(client)
    return client


def anthropic_client(
    *,
    http2: bool = False,
    http_options: Mapping[str, Any] | None = None,
    **client_options: Any,
) -> anthropic.Anthropic:
    """A tracked ``anthropic.Anthropic`` on the SDK's own default HTTP client.

    That client keeps the SDK's defaults (limits 1000/100, 600 s timeout, TCP
    keep-alive); ``http2`` and ``http_options`` (``verify``, ``limits``, ...) go to it,
    ``client_options`` to ``Anthropic`` (``api_key``, ``base_url``, ``max_retries``, ...).
    """
    http_client = anthropic.DefaultHttpxClient(http2=http2, **(http_options or {}))
    client = anthropic.Anthropic(http_client=http_client, **client_options)
    track_connections(http_client)
    return client


def async_anthropic_client(
    *,
    http2: bool = False,
    http_options: Mapping[str, Any] | None = None,
    **client_options: Any,
) -> anthropic.AsyncAnthropic:
    """The asyncio twin of :func:`anthropic_client`."""
    http_client = anthropic.DefaultAsyncHttpxClient(http2=http2, **(http_options or {}))
    client = anthropic.AsyncAnthropic(http_client=http_client, **client_options)
    track_connections(http_client)
    return client


class SharedClient(Generic[C]):
    """One client per process, made on first use and closed at :meth:`close`.

    A forked child process gets a client of its own (sockets are never shared across
    processes).

    >>> shared = SharedClient(pooled_client)
    >>> shared.get() is shared.get()
    True
    >>> shared.close()
    """

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._client: C | None = None
        self._pid = 0

    def get(self) -> C:
        """This process's client."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client, self._pid = self._factory(), os.getpid()
            return self._client

    def close(self) -> None:
        """Close this process's client, if one was made; the next :meth:`get` makes anew."""
        with self._lock:
            client, self._client = self._client, None
            mine = self._pid == os.getpid()
        if client is not None and mine:
            client.close()  # type: ignore[attr-defined]

    def __enter__(self) -> SharedClient[C]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SharedAsyncClient(Generic[C]):
    """One async client per event loop, made on first use in that loop.

    An async client's connections belong to the loop that opened them, so each loop
    gets its own. Close it from the loop that used it, with :meth:`aclose` or by
    running the application inside ``async with shared.lifespan():``.

    >>> import asyncio
    >>> shared = SharedAsyncClient(pooled_async_client)
    >>> async def main():
    ...     async with shared.lifespan():
    ...         return shared.get() is shared.get()
    >>> asyncio.run(main())
    True
    """

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, C] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> C:
        """The running event loop's client."""
        loop = _running_loop("SharedAsyncClient.get()")
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._factory()
        return client

    async def aclose(self) -> None:
        """Close the running event loop's client, if one was made."""
        client = self._clients.pop(_running_loop("SharedAsyncClient.aclose()"), None)
        if client is not None:
            closer = getattr(client, "aclose", None) or client.close  # type: ignore[attr-defined]
            result = closer()
            if inspect.isawaitable(result):
                await result

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[SharedAsyncClient[C]]:
        """Close this loop's client when the block ends (for an ASGI lifespan)."""
        try:
            yield self
        finally:
            await self.aclose()


def _running_loop(caller: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"{caller} must be called from a running event loop") from None


def _http_client_of(client: Any) -> Any:
    inner = getattr(client, "_client", None)  # anthropic clients wrap an httpx2 client
    if isinstance(client, anthropic.Anthropic | anthropic.AsyncAnthropic) and inner is not None:
        return inner
    if not hasattr(client, "_transport"):
        raise TypeError(
            "expected an httpx/httpx2 Client or AsyncClient or an anthropic client, "
            f"got {type(client).__name__}"
        )
    return client


def _transports_of(http_client: Any) -> Iterator[Any]:
    yield http_client._transport
    for transport in getattr(http_client, "_mounts", {}).values():
        if transport is not None:
            yield transport


def _pool_of(transport: Any) -> tuple[Any, Any]:
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        raise TypeError(
            f"a {type(transport).__name__} has no connection pool; only httpx/httpx2 "
            "HTTPTransport and AsyncHTTPTransport have one"
        )
    return transport, pool


def _pools_of(client: Any) -> list[Any]:
    """The connection pools beneath ``client`` (seen through any tracking probe)."""
    pools = [_pool_of(transport)[1] for transport in _transports_of(_http_client_of(client))]
    return [pool._inner if isinstance(pool, _PoolProbe) else pool for pool in pools]


def _set_network_backend(pool: Any, backend: Any) -> None:
    """Make ``pool`` open its connections through ``backend``, still counted if tracked."""
    if isinstance(pool._network_backend, _CountingBackend):
        pool._network_backend._inner = backend
    else:
        pool._network_backend = backend


class _PoolProbe:
    """Stands in for a transport's connection pool and counts the requests it handles."""

    def __init__(self, pool: Any, stats: ConnectionStats) -> None:
        self._inner = pool
        self._stats = stats

    def handle_request(self, request: Any) -> Any:
        self._stats.count_request()
        return self._inner.handle_request(request)

    async def handle_async_request(self, request: Any) -> Any:
        self._stats.count_request()
        return await self._inner.handle_async_request(request)

    def __enter__(self) -> _PoolProbe:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._inner.__exit__(*exc_info)

    async def __aenter__(self) -> _PoolProbe:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._inner.__aexit__(*exc_info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CountingBackend:
    """Wraps a pool's network backend (sync or async, httpcore or httpcore2): counts
    each connection when its TCP connection opens and when its socket closes."""

    def __init__(self, inner: Any, stats: ConnectionStats) -> None:
        self._inner = inner
        self._stats = stats

    def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
        if inspect.iscoroutinefunction(self._inner.connect_tcp):
            return self._aconnect(self._inner.connect_tcp, *args, **kwargs)
        return self._opened(self._inner.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        if inspect.iscoroutinefunction(self._inner.connect_unix_socket):
            return self._aconnect(self._inner.connect_unix_socket, *args, **kwargs)
        return self._opened(self._inner.connect_unix_socket(*args, **kwargs))

    async def _aconnect(self, connect: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._opened(await connect(*args, **kwargs))

    def _opened(self, stream: Any) -> Any:
        self._stats.count_open()
        return _CountedStream(stream, _Connection(self._stats))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Connection:
    """One counted connection: closes once, however many stream objects (plain, then
    TLS) it went through."""

    def __init__(self, stats: ConnectionStats) -> None:
        self._stats = stats
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stats.count_close()


class _CountedStream:
    """A network stream that reports its close to its :class:`_Connection`."""

    def __init__(self, inner: Any, connection: _Connection) -> None:
        self._inner = inner
        self._connection = connection

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._connection.close()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._connection.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> Any:
        if inspect.iscoroutinefunction(self._inner.start_tls):
            return self._astart_tls(*args, **kwargs)
        try:
            return _CountedStream(self._inner.start_tls(*args, **kwargs), self._connection)
        except BaseException:
            self._connection.close()  # the backend closes the socket of a failed handshake
            raise

    async def _astart_tls(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return _CountedStream(await self._inner.start_tls(*args, **kwargs), self._connection)
        except BaseException:
            self._connection.close()
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
