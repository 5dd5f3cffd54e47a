"""A simulated network beneath httpcore's real connection pool.

respx replaces the transport, so under it the pool never runs and pooling cannot show.
Here the pool is real (keep-alive, reuse, limits) and only the network is simulated:
opening a connection costs a modeled TCP handshake (and a TLS handshake for https),
each request a modeled server time, all on a perfkit clock, and an in-memory HTTP/1.1
server answers through a handler. ``connections_opened`` counts what the pool really
opened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpcore
import httpx

from perfkit._clock import Clock
from perfkit.simulation._latency import LatencyModel, as_model

Handler = Callable[[httpx.Request], httpx.Response]


def _default_handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"path": request.url.path})


class SimulatedNetwork:
    """Modeled handshakes and server time under a real pool; counts connections.

    >>> from perfkit import VirtualClock
    >>> clock = VirtualClock()
    >>> network = SimulatedNetwork(clock=clock, connect=0.1, server=0.5)
    >>> with network.client() as client:
    ...     for _ in range(3):
    ...         _ = client.get("http://api.test/")
    >>> network.connections_opened, clock.now()
    (1, 1.6)
    """

    def __init__(
        self,
        *,
        clock: Clock,
        connect: LatencyModel | float = 0.0,
        tls: LatencyModel | float = 0.0,
        server: LatencyModel | float = 0.0,
        handler: Handler = _default_handler,
    ) -> None:
        self.clock = clock
        self.connect = as_model(connect, name="connect")
        self.tls = as_model(tls, name="tls")
        self.server = as_model(server, name="server")
        self.handler = handler
        self._lock = threading.Lock()
        self.connections_opened = 0
        self.requests = 0
        self.sync_backend = _SyncBackend(self)
        self.async_backend = _AsyncBackend(self)

    def _opened(self) -> float:
        with self._lock:
            self.connections_opened += 1
            return self.connect.sample()

    def _answer(self, request: httpx.Request) -> tuple[float, bytes]:
        with self._lock:
            self.requests += 1
            delay = self.server.sample()
        return delay, _serve(self.handler, request)

    def client(self, *, pooled: bool = True, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` whose real pool runs on this network; ``pooled=False``
        opens a new connection for every request (no keep-alive)."""
        transport = httpx.HTTPTransport()
        transport._pool = httpcore.ConnectionPool(
            network_backend=self.sync_backend, **_pool_options(transport._pool, pooled)
        )
        return httpx.Client(transport=transport, **kwargs)

    def async_client(self, *, pooled: bool = True, **kwargs: Any) -> httpx.AsyncClient:
        """The asyncio twin of :meth:`client`."""
        transport = httpx.AsyncHTTPTransport()
        transport._pool = httpcore.AsyncConnectionPool(
            network_backend=self.async_backend, **_pool_options(transport._pool, pooled)
        )
        return httpx.AsyncClient(transport=transport, **kwargs)


def _pool_options(default_pool: Any, pooled: bool) -> dict[str, Any]:
    # The transport's own SSL context, made once: without it httpcore would build one
    # (loading the CA bundle) for every new connection.
    return {
        "ssl_context": default_pool._ssl_context,
        "max_connections": 100,
        "max_keepalive_connections": 20 if pooled else 0,
    }


class _Exchange:
    """The byte-level state of one connection, shared by the sync and async streams."""

    def __init__(self, network: SimulatedNetwork) -> None:
        self.network = network
        self.inbound = b""
        self.outbound = b""
        self.pending_delay = 0.0

    def write(self, buffer: bytes) -> None:
        self.inbound += buffer
        parsed = _read_request(self.inbound)
        if parsed is not None:
            request, consumed = parsed
            self.inbound = self.inbound[consumed:]
            delay, response = self.network._answer(request)
            self.pending_delay += delay
            self.outbound += response

    def take(self, max_bytes: int) -> tuple[float, bytes]:
        delay, self.pending_delay = self.pending_delay, 0.0
        chunk, self.outbound = self.outbound[:max_bytes], self.outbound[max_bytes:]
        return delay, chunk


class _SyncStream(httpcore.NetworkStream):
    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        delay, chunk = self._exchange.take(max_bytes)
        if delay:
            self._exchange.network.clock.sleep(delay)
        return chunk

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._exchange.write(buffer)

    def close(self) -> None:
        return None

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self._exchange.network.clock.sleep(self._exchange.network.tls.sample())
        return self

    def get_extra_info(self, info: str) -> Any:
        return None  # no ssl_object: HTTP/1.1; not readable while idle: still open


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        delay, chunk = self._exchange.take(max_bytes)
        if delay:
            await self._exchange.network.clock.asleep(delay)
        return chunk

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._exchange.write(buffer)

    async def aclose(self) -> None:
        return None

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        await self._exchange.network.clock.asleep(self._exchange.network.tls.sample())
        return self

    def get_extra_info(self, info: str) -> Any:
        return None


class _SyncBackend(httpcore.NetworkBackend):
    def __init__(self, network: SimulatedNetwork) -> None:
        self._network = network

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        self._network.clock.sleep(self._network._opened())
        return _SyncStream(_Exchange(self._network))

    def sleep(self, seconds: float) -> None:
        self._network.clock.sleep(seconds)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, network: SimulatedNetwork) -> None:
        self._network = network

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        await self._network.clock.asleep(self._network._opened())
        return _AsyncStream(_Exchange(self._network))

    async def sleep(self, seconds: float) -> None:
        await self._network.clock.asleep(seconds)


def _read_request(buffer: bytes) -> tuple[httpx.Request, int] | None:
    """The first whole HTTP/1.1 request in ``buffer`` (headers and a content-length
    body) and how many bytes it took, or None while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    headers = [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    ]
    by_name = {name.lower(): value for name, value in headers}
    total = end + 4 + int(by_name.get("content-length", "0"))
    if len(buffer) < total:
        return None
    method, target, _ = lines[0].split(" ", 2)
    url = f"http://{by_name.get('host', 'simulated')}{target}"
    return httpx.Request(method, url, headers=headers, content=buffer[end + 4 : total]), total


def _serve(handler: Handler, request: httpx.Request) -> bytes:
    response = handler(request)
    body = response.read()
    head = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
    head += [
        f"{k}: {v}"
        for k, v in response.headers.items()
        if k.lower() not in ("content-length", "transfer-encoding")
    ]
    head.append(f"content-length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
