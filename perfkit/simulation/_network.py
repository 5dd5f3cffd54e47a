"""A simulated network beneath httpcore's real connection pool.

respx replaces the transport, so under it the pool never runs and pooling cannot show.
Here the pool is real (keep-alive, reuse, limits, HTTP/2 multiplexing) and only the
network is simulated: opening a connection costs a modeled TCP handshake (and a TLS
handshake for https), each request a modeled server time, all on a perfkit clock, and
an in-memory server speaking HTTP/1.1, or HTTP/2 (through ``h2``) when the client offers
it, answers through a handler. Responses are due ``server`` seconds after their request
arrives, so requests multiplexed on one HTTP/2 connection are served in parallel.
:attr:`SimulatedNetwork.stats` counts what the pool really opened and closed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import h2.config
import h2.connection
import h2.events
import httpx

from perfkit._clock import Clock
from perfkit._connections import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_KEEPALIVE_CONNECTIONS,
    Connection,
    ConnectionStats,
    pools_of,
    register_stats,
    set_network_backend,
)
from perfkit._errors import SimulatorError
from perfkit.simulation._latency import LatencyModel, as_model

Handler = Callable[[httpx.Request], httpx.Response]
C = TypeVar("C")

# Headers that describe one HTTP/1.1 connection's framing, never a resource.
_HOP_BY_HOP = frozenset({"connection", "content-length", "keep-alive", "transfer-encoding"})


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
        http2: bool = True,
    ) -> None:
        self.clock = clock
        self.connect = as_model(connect, name="connect")
        self.tls = as_model(tls, name="tls")
        self.server = as_model(server, name="server")
        self.handler = handler
        self.http2 = http2
        self.stats = register_stats(ConnectionStats())
        self._lock = threading.Lock()

    @property
    def connections_opened(self) -> int:
        """Connections the pools on this network opened (TCP connections made)."""
        return self.stats.opened

    @property
    def requests(self) -> int:
        """Requests the simulated server answered."""
        return self.stats.requests

    def attach(self, client: C) -> C:
        """Run ``client``'s real pools (httpx or httpx2, sync or async, an anthropic
        client too) on this network; returns ``client``."""
        for pool in pools_of(client):
            backend_type = _AsyncBackend if hasattr(pool, "handle_async_request") else _SyncBackend
            set_network_backend(pool, backend_type(self, http1=pool._http1, http2=pool._http2))
        return client

    def client(self, *, pooled: bool = True, http2: bool = False, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` on this network. ``pooled=False`` opens a new connection
        for every request (no keep-alive); ``http2=True`` offers HTTP/2 over TLS."""
        return self.attach(httpx.Client(limits=_limits(pooled), http2=http2, **kwargs))

    def async_client(
        self, *, pooled: bool = True, http2: bool = False, **kwargs: Any
    ) -> httpx.AsyncClient:
        """The asyncio twin of :meth:`client`."""
        return self.attach(httpx.AsyncClient(limits=_limits(pooled), http2=http2, **kwargs))

    def _opened(self) -> tuple[float, Connection]:
        self.stats.count_open()
        with self._lock:
            return self.connect.sample(), Connection(self.stats)

    def _answer(self, request: httpx.Request) -> tuple[float, httpx.Response]:
        self.stats.count_request()
        with self._lock:
            delay = self.server.sample()
        response = self.handler(request)
        response.read()
        return delay, response


def _limits(pooled: bool) -> httpx.Limits:
    """The chapter's pool size, or no connection kept alive when not ``pooled``."""
    keepalive = DEFAULT_MAX_KEEPALIVE_CONNECTIONS if pooled else 0
    return httpx.Limits(
        max_connections=DEFAULT_MAX_CONNECTIONS, max_keepalive_connections=keepalive
    )


class _Http11Server:
    """The server end of one HTTP/1.1 connection: requests in, response bytes out."""

    def __init__(self) -> None:
        self._inbound = b""

    def receive(self, data: bytes) -> list[tuple[int, httpx.Request]]:
        self._inbound += data
        requests = []
        while (parsed := _read_http11_request(self._inbound)) is not None:
            request, consumed = parsed
            self._inbound = self._inbound[consumed:]
            requests.append((0, request))
        return requests

    def respond(self, stream_id: int, response: httpx.Response) -> bytes:
        head = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
        head += [f"{k}: {v}" for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP]
        head.append(f"content-length: {len(response.content)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.content

    def data_to_send(self) -> bytes:
        return b""


class _Http2Server:
    """The server end of one HTTP/2 connection, framed by ``h2``."""

    def __init__(self) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.initiate_connection()
        self._streams: dict[int, tuple[list[tuple[bytes, bytes]], bytearray]] = {}

    def receive(self, data: bytes) -> list[tuple[int, httpx.Request]]:
        requests = []
        for event in self._h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self._streams[event.stream_id] = (list(event.headers or []), bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self._streams[event.stream_id][1].extend(event.data or b"")
                self._h2.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
            elif isinstance(event, h2.events.StreamEnded):
                headers, body = self._streams.pop(event.stream_id)
                requests.append((event.stream_id, _http2_request(headers, bytes(body))))
        return requests

    def respond(self, stream_id: int, response: httpx.Response) -> bytes:
        headers = [(":status", str(response.status_code))]
        headers += [
            (k.lower(), v) for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP
        ]
        headers.append(("content-length", str(len(response.content))))
        body = response.content
        window = self._h2.local_flow_control_window(stream_id)
        if len(body) > window:  # sent at once, the simulated server never waits for updates
            raise SimulatorError(
                f"a simulated HTTP/2 response body of {len(body)} bytes exceeds the "
                f"client's flow-control window of {window} bytes"
            )
        self._h2.send_headers(stream_id, headers, end_stream=not body)
        frame = self._h2.max_outbound_frame_size
        for start in range(0, len(body), frame):
            end_stream = start + frame >= len(body)
            self._h2.send_data(stream_id, body[start : start + frame], end_stream=end_stream)
        return self._h2.data_to_send()

    def data_to_send(self) -> bytes:
        return self._h2.data_to_send()


def _http2_request(headers: list[tuple[bytes, bytes]], body: bytes) -> httpx.Request:
    pseudo = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name.startswith(b":")
    }
    regular = [(name, value) for name, value in headers if not name.startswith(b":")]
    url = f"{pseudo[':scheme']}://{pseudo[':authority']}{pseudo[':path']}"
    return httpx.Request(pseudo[":method"], url, headers=regular, content=body)


class _Exchange:
    """The byte-level state of one simulated connection, shared by the sync and async
    streams: requests are answered when they arrive and become due ``server`` later;
    due responses are encoded in the order they are delivered."""

    def __init__(
        self, network: SimulatedNetwork, connection: Connection, *, offers_h2: bool, h2_prior: bool
    ) -> None:
        self.network = network
        self.connection = connection
        self._offers_h2 = offers_h2
        self._h2_prior = h2_prior
        self._alpn: str | None = None
        self._server: _Http11Server | _Http2Server | None = None
        self._due: list[tuple[float, int, httpx.Response]] = []
        self._outbound = b""

    def negotiate(self) -> None:
        """The TLS handshake's ALPN: HTTP/2 when both ends speak it."""
        self._alpn = "h2" if self._offers_h2 and self.network.http2 else "http/1.1"

    @property
    def alpn(self) -> str | None:
        return self._alpn

    def _server_end(self) -> _Http11Server | _Http2Server:
        if self._server is None:
            if self._alpn == "h2" or (self._alpn is None and self._h2_prior):
                if not self.network.http2:
                    raise SimulatorError(
                        "the client speaks HTTP/2 with prior knowledge (http1=False) but "
                        "this SimulatedNetwork was made with http2=False"
                    )
                self._server = _Http2Server()
            else:
                self._server = _Http11Server()
        return self._server

    def write(self, data: bytes) -> None:
        server = self._server_end()
        arrivals = server.receive(data)
        self._outbound += server.data_to_send()
        for stream_id, request in arrivals:
            delay, response = self.network._answer(request)
            self._due.append((self.network.clock.now() + delay, stream_id, response))

    def wait(self) -> float:
        """Seconds until there is something to read (0 when there is already)."""
        if self._outbound or not self._due:
            return 0.0
        return max(0.0, min(due for due, _, _ in self._due) - self.network.clock.now())

    def take(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of what is due now; b"" when nothing ever will be (the
        server has nothing left to say, which the client reads as a close)."""
        if not self._outbound and self._due:
            now = self.network.clock.now() + 1e-9
            ready = sorted((d for d in self._due if d[0] <= now), key=lambda d: d[0])
            self._due = [d for d in self._due if d[0] > now]
            server = self._server_end()
            for _, stream_id, response in ready:
                self._outbound += server.respond(stream_id, response)
        chunk, self._outbound = self._outbound[:max_bytes], self._outbound[max_bytes:]
        return chunk


class _NegotiatedTLS:
    """What httpcore asks of a TLS connection: the ALPN protocol the server chose."""

    def __init__(self, protocol: str) -> None:
        self._protocol = protocol

    def selected_alpn_protocol(self) -> str:
        return self._protocol


class _SyncStream:
    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        wait = self._exchange.wait()
        if wait:
            self._exchange.network.clock.sleep(wait)
        return self._exchange.take(max_bytes)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._exchange.write(buffer)

    def close(self) -> None:
        self._exchange.connection.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> _SyncStream:
        self._exchange.network.clock.sleep(self._exchange.network.tls.sample())
        self._exchange.negotiate()
        return self

    def get_extra_info(self, info: str) -> Any:
        return _extra_info(self._exchange, info)


class _AsyncStream:
    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        wait = self._exchange.wait()
        if wait:
            await self._exchange.network.clock.asleep(wait)
        return self._exchange.take(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._exchange.write(buffer)

    async def aclose(self) -> None:
        self._exchange.connection.close()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> _AsyncStream:
        await self._exchange.network.clock.asleep(self._exchange.network.tls.sample())
        self._exchange.negotiate()
        return self

    def get_extra_info(self, info: str) -> Any:
        return _extra_info(self._exchange, info)


def _extra_info(exchange: _Exchange, info: str) -> Any:
    if info == "ssl_object" and exchange.alpn is not None:
        return _NegotiatedTLS(exchange.alpn)
    return None  # not readable while idle: the server never closes a kept-alive connection


class _Backend:
    """What the sync and async backends share: the client's protocol offer, and a new
    connection's exchange."""

    def __init__(self, network: SimulatedNetwork, *, http1: bool, http2: bool) -> None:
        self._network = network
        self._offers_h2 = http2
        self._h2_prior = http2 and not http1

    def _exchange(self, connection: Connection) -> _Exchange:
        return _Exchange(
            self._network, connection, offers_h2=self._offers_h2, h2_prior=self._h2_prior
        )


class _SyncBackend(_Backend):
    def connect_tcp(self, host: str, port: int, **kwargs: Any) -> _SyncStream:
        delay, connection = self._network._opened()
        try:
            self._network.clock.sleep(delay)
        except BaseException:
            connection.close()
            raise
        return _SyncStream(self._exchange(connection))

    def sleep(self, seconds: float) -> None:
        self._network.clock.sleep(seconds)


class _AsyncBackend(_Backend):
    async def connect_tcp(self, host: str, port: int, **kwargs: Any) -> _AsyncStream:
        delay, connection = self._network._opened()
        try:
            await self._network.clock.asleep(delay)
        except BaseException:  # cancelled while connecting: the connection never opened
            connection.close()
            raise
        return _AsyncStream(self._exchange(connection))

    async def sleep(self, seconds: float) -> None:
        await self._network.clock.asleep(seconds)


def _read_http11_request(buffer: bytes) -> tuple[httpx.Request, int] | None:
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
