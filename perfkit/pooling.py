"""Connection pooling: shared pooled clients, their lifecycle, and connection statistics.

A client made per request pays a TCP (and TLS) handshake every time; one shared client
keeps connections alive and reuses them. This module makes such clients (plain httpx,
and the anthropic SDK's client built on the SDK's own default client, so its timeouts,
limits and TCP keep-alive are kept), keeps exactly one per process or event loop
(:class:`SharedClient`, :class:`SharedAsyncClient`), and counts what the pool really
does (:func:`track_connections`): connections opened and closed where the socket is
opened and closed, and requests sent through the pool. The counting is
provider-neutral and lives in ``perfkit._connections`` (the simulated network counts
with it too); its public names are re-exported here.

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
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import anthropic
import httpx

from perfkit._connections import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_KEEPALIVE_CONNECTIONS,
    ConnectionStats,
    connection_stats,
    live_connection_stats,
    register_stats,
    track_connections,
)

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

DEFAULT_LIMITS = httpx.Limits(
    max_connections=DEFAULT_MAX_CONNECTIONS,
    max_keepalive_connections=DEFAULT_MAX_KEEPALIVE_CONNECTIONS,
)
"""The chapter's pool size: 100 connections, 20 of them kept alive between requests."""

DEFAULT_TIMEOUT = httpx.Timeout(10.0)
"""The chapter's timeout: 10 s for connect, read, write and pool waits."""

C = TypeVar("C")


def pooled_client(
    *,
    http2: bool = False,
    limits: httpx.Limits = DEFAULT_LIMITS,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> httpx.Client:
    """A tracked ``httpx.Client`` with a shared keep-alive pool (the chapter's limits
    and timeout by default); ``http2=True`` lets HTTPS origins negotiate HTTP/2.

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
