"""Counting what a client's connection pools do: connections opened and closed, requests.

Provider-neutral core beneath :mod:`perfkit.pooling` (which makes tracked clients) and
:mod:`perfkit.simulation` (which runs a client's real pool on a simulated network). It
works on any httpx or httpx2 client, or on a wrapper of one such as an anthropic client,
through the attributes their pools share, so it imports neither httpx nor anthropic.
"""

from __future__ import annotations

import inspect
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_KEEPALIVE_CONNECTIONS",
    "Connection",
    "ConnectionStats",
    "connection_stats",
    "keepalive_limits",
    "live_connection_stats",
    "pools_of",
    "register_stats",
    "set_network_backend",
    "track_connections",
]

DEFAULT_MAX_CONNECTIONS = 100
"""The chapter's pool size: at most 100 connections per client."""
DEFAULT_MAX_KEEPALIVE_CONNECTIONS = 20
"""How many of them the chapter's pool keeps alive between requests."""


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
    """The statistics of a client made by :mod:`perfkit.pooling` or passed to
    :func:`track_connections`."""
    stats = _CLIENT_STATS.get(_http_client_of(client))
    if stats is None:
        raise ValueError(
            f"{type(client).__name__} object is not tracked; make it with perfkit.pooling "
            "(pooled_client, anthropic_client, ...) or pass it to track_connections() first"
        )
    return stats


def pools_of(client: Any) -> list[Any]:
    """The connection pools beneath ``client`` (seen through any tracking probe)."""
    pools = [_pool_of(transport)[1] for transport in _transports_of(_http_client_of(client))]
    return [pool._inner if isinstance(pool, _PoolProbe) else pool for pool in pools]


def keepalive_limits(pool: Any) -> tuple[int, float | None]:
    """How many idle connections ``pool`` keeps alive, and for how many seconds each
    (None: until it is used or closed), as its ``Limits`` say: httpx's default keeps 20
    for 5 s, the anthropic SDK's 100 for 5 s."""
    return (
        getattr(pool, "_max_keepalive_connections", sys.maxsize),
        getattr(pool, "_keepalive_expiry", None),
    )


def set_network_backend(pool: Any, backend: Any) -> None:
    """Make ``pool`` open its connections through ``backend``, still counted if tracked."""
    if isinstance(pool._network_backend, _CountingBackend):
        pool._network_backend._inner = backend
    else:
        pool._network_backend = backend


def _http_client_of(client: Any) -> Any:
    # An anthropic client (or any wrapper like it) keeps its httpx2 client in ``_client``.
    inner = getattr(client, "_client", None)
    if hasattr(inner, "_transport"):
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
        return _CountedStream(stream, Connection(self._stats))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Connection:
    """One counted connection: closes once, however many stream objects (plain, then
    TLS) it went through.

    >>> stats = ConnectionStats()
    >>> stats.count_open()
    >>> connection = Connection(stats)
    >>> connection.close()
    >>> connection.close()
    >>> stats.closed
    1
    """

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
    """A network stream that reports its close to its :class:`Connection`."""

    def __init__(self, inner: Any, connection: Connection) -> None:
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
