"""Routes every HTTP request of httpx and httpx2 (the anthropic SDK's client) through
the active simulators' respx routers.

respx patches only httpx's own connection pool. The anthropic SDK (1.x and later)
sends through httpx2 and httpcore2, which respx never sees. Rather than aliasing one
package to the other (which must happen before any import, and changes what user code
gets), this module patches the connection-pool entry points of *both* httpcore and
httpcore2 while a simulator is active, converts each request to an ``httpx.Request``
for the respx router, and converts the answer back to the calling library's types,
exceptions included. Patching classes at activation time makes it independent of
import order: clients created before activation are intercepted too.

Modeled latency is applied here, where the sync or async nature of the caller is known:
a response may carry a :class:`Delivery` (wait, then answer or fail), and its body may
be a :class:`ScheduledStream` (wait before each chunk).
"""

from __future__ import annotations

import ipaddress
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import respx
from respx.models import AllMockedAssertionError, PassThrough

from perfkit._clock import Clock, sleep_at_once
from perfkit._errors import UnmatchedRequestError
from perfkit._secrets import Secret, hide_secrets, is_secret_name
from perfkit._url import redact_url
from perfkit.simulation.server._patches import install_patches

DELIVERY_KEY = "perfkit.delivery"
"""The response extension holding a :class:`Delivery`."""

POOL_KEY = "perfkit.pool"
"""The request extension holding a weak reference to the connection pool the request
was sent through (weak: routers keep their requests, and must not keep pools alive)."""

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

CLOSED_POOLS: weakref.WeakSet[Any] = weakref.WeakSet()
"""Connection pools closed while a simulator was active (a closed client's): a closed
pool has no connection left, idle or not."""

MAX_FAILURES_KEPT = 100
"""Failures kept per router until taken: the first ones, the rest only counted. A
long-running process (``perfkit serve``) whose requests keep failing must not keep every
exception, with its traceback's frames, for as long as its simulator is active."""


@dataclass(frozen=True)
class Delivery:
    """How a simulated response is delivered: wait ``delay`` on ``clock``, then return
    the response, or raise ``error`` (an ``httpx`` transport exception) instead."""

    clock: Clock
    delay: float = 0.0
    error: httpx.TransportError | None = None
    on_sent: Callable[[], None] | None = None
    on_abandoned: Callable[[], None] | None = None
    """Called if the caller stops waiting (a cancelled task) before the response."""


class ScheduledStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body whose chunks arrive on a schedule of modeled waits.

    Iterated from sync code it waits with ``clock.sleep``; from async code with
    ``clock.asleep``. ``on_chunk`` and ``on_close`` let the simulator log timing.
    """

    def __init__(
        self,
        chunks: list[tuple[float, bytes]],
        clock: Clock,
        *,
        on_chunk: Callable[[int], None] | None = None,
        on_close: Callable[[bool], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._clock = clock
        self._on_chunk = on_chunk
        self._on_close = [on_close] if on_close is not None else []
        self._sent = 0
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        for delay, data in self._chunks[self._sent :]:
            if delay:
                self._clock.sleep(delay)
            yield self._advance(data)
        self.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        at_once = sleep_at_once(self._clock)
        for delay, data in self._chunks[self._sent :]:
            if delay and not at_once(delay):
                await self._clock.asleep(delay)
            yield self._advance(data)
        await self.aclose()

    def _advance(self, data: bytes) -> bytes:
        index = self._sent
        self._sent += 1
        if self._on_chunk is not None:
            self._on_chunk(index)
        return data

    def add_close_callback(self, callback: Callable[[bool], None]) -> None:
        """Also call ``callback(finished)`` when the stream is closed."""
        self._on_close.append(callback)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for callback in self._on_close:
                callback(self._sent == len(self._chunks))

    async def aclose(self) -> None:
        self.close()


class Failures:
    """The failures recorded for one router: the first :data:`MAX_FAILURES_KEPT`, and how
    many more were dropped."""

    def __init__(self) -> None:
        self.kept: list[Exception] = []
        self.dropped = 0

    def add(self, error: Exception) -> None:
        if len(self.kept) < MAX_FAILURES_KEPT:
            self.kept.append(error)
        else:
            self.dropped += 1

    def extend(self, other: Failures) -> None:
        for error in other.kept:
            self.add(error)
        self.dropped += other.dropped


Origin = tuple[str, str, int]
"""A URL's scheme, host and port (the scheme's default when it names none)."""


def origin_of(url: httpx.URL) -> Origin:
    """``url``'s origin."""
    port = url.port if url.port is not None else {"http": 80, "https": 443}.get(url.scheme, 0)
    return url.scheme, url.host, port


class _Registry:
    """The active routers, most recent first; patches are installed while any is active."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routers: list[respx.MockRouter] = []
        self._failures: dict[int, Failures] = {}
        self._owners: dict[int, tuple[Origin, str]] = {}
        self._patches: ExitStack | None = None

    def activate(self, router: respx.MockRouter, *, owns: tuple[Origin, str] | None = None) -> None:
        """Route to ``router`` (first, until a newer one is activated). ``owns`` is a
        loopback origin its simulator stands in for, and the simulator's name: a request
        there that no router routes is unmatched, never passed to the network."""
        with self._lock:
            self._routers.insert(0, router)
            self._failures[id(router)] = Failures()
            if owns is not None:
                self._owners[id(router)] = owns
            if self._patches is None:
                self._patches = _install_patches()

    def deactivate(self, router: respx.MockRouter) -> Failures:
        """Stop routing to ``router``; returns the failures recorded while it was active."""
        with self._lock:
            if router in self._routers:
                self._routers.remove(router)
            self._owners.pop(id(router), None)
            if not self._routers and self._patches is not None:
                self._patches.close()
                self._patches = None
            return self._failures.pop(id(router), Failures())

    def take_failures(self, router: respx.MockRouter) -> Failures:
        """The failures recorded for ``router`` so far, forgotten once taken."""
        with self._lock:
            if id(router) not in self._failures:
                return Failures()
            taken, self._failures[id(router)] = self._failures[id(router)], Failures()
            return taken

    def record_failure(self, error: Exception, router: respx.MockRouter | None = None) -> None:
        """Keep ``error`` for ``router`` (or every active router): an HTTP client may wrap
        or retry an exception raised in its transport, so the simulator re-raises it when
        it stops."""
        with self._lock:
            for routed in [router] if router is not None else self._routers:
                if id(routed) in self._failures:
                    self._failures[id(routed)].add(error)

    def routers(self) -> list[respx.MockRouter]:
        with self._lock:
            return list(self._routers)

    def owner_of(self, url: httpx.URL) -> tuple[respx.MockRouter, str] | None:
        """The newest active router whose simulator owns ``url``'s origin, with the
        simulator's name, or None."""
        origin = origin_of(url)
        with self._lock:
            for router in self._routers:
                owned = self._owners.get(id(router))
                if owned is not None and owned[0] == origin:
                    return router, owned[1]
        return None

    @property
    def active(self) -> bool:
        with self._lock:
            return bool(self._routers)


REGISTRY = _Registry()


def _install_patches() -> ExitStack:
    return install_patches(
        {"sync_entry": _sync_entry, "async_entry": _async_entry, "close": _closing}
    )


def _closing(_flavor: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    """A pool's ``close`` (or ``aclose``), noting the pool in :data:`CLOSED_POOLS` first."""

    def close(pool: Any) -> Any:
        CLOSED_POOLS.add(pool)
        return original(pool)

    return close


def _sync_entry(flavor: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    def handle_request(pool: Any, request: Any) -> Any:
        body = b"".join(request.stream)
        response = _answer(flavor, pool, request, body)
        if response is None:
            return original(pool, request)
        delivery = response.extensions.get(DELIVERY_KEY)
        if isinstance(delivery, Delivery) and delivery.delay:
            delivery.clock.sleep(delivery.delay)
        return _deliver(flavor, response)

    return handle_request


def _async_entry(flavor: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    async def handle_async_request(pool: Any, request: Any) -> Any:
        body = b"".join([part async for part in request.stream])
        response = _answer(flavor, pool, request, body)
        if response is None:
            return await original(pool, request)
        delivery = response.extensions.get(DELIVERY_KEY)
        if isinstance(delivery, Delivery) and delivery.delay:
            try:
                await delivery.clock.asleep(delivery.delay)
            except BaseException:
                _abandon(delivery, response)
                raise
        return _deliver(flavor, response)

    return handle_async_request


def _answer(flavor: ModuleType, pool: Any, request: Any, body: bytes) -> httpx.Response | None:
    """The routed answer to a transport request, or None to send it to the network."""
    request.stream = flavor._models.ByteStream(body)  # readable again for a pass-through
    routed = _to_httpx(request, body)
    routed.extensions[POOL_KEY] = weakref.ref(pool)
    try:
        return _resolve(flavor, routed)
    except _PassThroughSignal:
        return None


def _abandon(delivery: Delivery, response: httpx.Response) -> None:
    if isinstance(response.stream, ScheduledStream):
        response.stream.close()
    if delivery.on_abandoned is not None:
        delivery.on_abandoned()


def _deliver(flavor: ModuleType, response: httpx.Response) -> Any:
    """After the modeled wait: the calling library's response, or its transport error."""
    delivery = response.extensions.get(DELIVERY_KEY)
    if isinstance(delivery, Delivery):
        if delivery.error is not None:
            raise _to_flavor_error(flavor, delivery.error)
        if delivery.on_sent is not None:
            delivery.on_sent()
    return _from_httpx(flavor, response)


class _PassThroughSignal(Exception):
    pass


def _resolve(flavor: ModuleType, request: httpx.Request) -> httpx.Response:
    """Ask each active router in turn; loopback requests nobody routes go to the network."""
    routers = REGISTRY.routers()
    for router in routers:
        try:
            # Routes are matched synchronously even for async callers: simulator side
            # effects never block; modeled waits happen in the Delivery and the stream.
            return router.handler(request)
        except AllMockedAssertionError:
            continue
        except PassThrough:
            raise _PassThroughSignal() from None
        except httpx.TransportError as error:  # a route's side effect raised it
            raise _to_flavor_error(flavor, error) from error
        except Exception as error:  # a bug in a side effect: never let a client hide it
            REGISTRY.record_failure(error, router)
            raise
    owner = REGISTRY.owner_of(request.url) if is_loopback(request.url.host) else None
    if owner is None and is_loopback(request.url.host):
        raise _PassThroughSignal()
    unmatched = UnmatchedRequestError(_unmatched_message(request, routers, owner))
    REGISTRY.record_failure(unmatched, owner[0] if owner is not None else None)
    raise unmatched


def _unmatched_message(
    request: httpx.Request,
    routers: list[respx.MockRouter],
    owner: tuple[respx.MockRouter, str] | None = None,
) -> str:
    routes = [repr(route.pattern) for router in routers for route in router.routes]
    listed = "\n  ".join(routes) or "(none)"
    url = redact_url(str(request.url))
    if owner is not None:
        port = origin_of(request.url)[2]
        return (
            f"perfkit simulator: no route for {request.method} {url}; this {owner[1]} "
            f"owns {request.url.host}:{port} (is the client's base_url the simulator's, "
            f"with the same path prefix?). Routes:\n  {listed}"
        )
    return (
        f"perfkit simulator: no route for {request.method} {url}; requests may not "
        f"leave the machine while the simulator is active. Routes:\n  {listed}"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (a request to it never leaves the machine)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _to_httpx(request: Any, body: bytes) -> httpx.Request:
    method = request.method.decode("ascii") if isinstance(request.method, bytes) else request.method
    url = request.url
    scheme = url.scheme.decode("ascii")
    host = url.host.decode("ascii")
    target = url.target.decode("ascii")
    default_port = {"http": 80, "https": 443}.get(scheme)
    netloc = host if url.port in (None, default_port) else f"{host}:{url.port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" if url.port in (None, default_port) else f"[{host}]:{url.port}"
    routed = httpx.Request(
        method,
        f"{scheme}://{netloc}{target}",
        headers=list(request.headers),
        content=body,
        extensions=dict(request.extensions),
    )
    routed.headers = _RoutedHeaders(routed.headers)
    return routed


class _RoutedHeaders(httpx.Headers):
    """A routed request's headers, kept in respx's call lists: a credential is read as a
    :class:`~perfkit._secrets.Secret` and shown as ``***`` (httpx hides only
    ``authorization``, not ``x-api-key`` or cookies)."""

    def __getitem__(self, key: str) -> str:
        value = super().__getitem__(key)
        return Secret(value) if is_secret_name(key) else value

    def __repr__(self) -> str:
        return f"Headers({hide_secrets(dict(self.items()))!r})"


def _from_httpx(flavor: ModuleType, response: httpx.Response) -> Any:
    extensions = {k: v for k, v in response.extensions.items() if k != DELIVERY_KEY}
    return flavor.Response(
        status=response.status_code,
        headers=response.headers.raw,
        content=response.stream,
        extensions=extensions,
    )


def _to_flavor_error(flavor: ModuleType, error: httpx.TransportError) -> Exception:
    """The calling library's own exception for an ``httpx`` transport error."""
    for cls in type(error).__mro__:
        mapped = getattr(flavor, cls.__name__, None)
        if isinstance(mapped, type) and issubclass(mapped, Exception):
            return mapped(str(error))
    return flavor.NetworkError(str(error))  # type: ignore[no-any-return]
