"""The load generator's HTTP clients: a lean HTTP/1.1 client for ``http://`` URLs, and
httpx for everything else (``https://``, in-process ASGI apps).

A load generator must cost less than what it loads, or it measures itself: httpx spends
about a millisecond of CPU on a request, which caps one process near a thousand requests
per second. The lean client writes each request as bytes on a keep-alive connection and
parses the response with httptools (llhttp, the parser behind uvicorn and Node.js), at a
fraction of that cost. Both clients report each server-sent event as it arrives, so time
to first token is measured the same way.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

import httptools
import httpx

from perfkit.load._models import Request

EventSink = Callable[[str], None]
"""Called with each server-sent event's name (``message`` when unnamed) as it completes."""


class Client(Protocol):
    """Sends one request and returns its status (calling ``on_event`` for SSE events)."""

    async def send(self, request: Request, on_event: EventSink | None) -> int: ...

    async def aclose(self) -> None: ...


def make_client(target: str | Any, max_connections: int, request_timeout: float) -> Client:
    """The lean client for an ``http://`` URL, httpx for an ``https://`` URL or an app."""
    if isinstance(target, str):
        if target.startswith("http://"):
            return LeanClient(target, max_connections)
        if target.startswith("https://"):
            return HttpxClient(target, max_connections, request_timeout)
        raise ValueError(
            f"target must be an http:// or https:// URL or an ASGI app, got {target!r}"
        )
    if not callable(target):
        raise TypeError(f"target must be a URL or an ASGI app, got {target!r}")
    return HttpxClient(target, max_connections, request_timeout)


class EventParser:
    """Server-sent events from body bytes as they arrive (comments and ``ping``s skipped).

    >>> names = []
    >>> parser = EventParser(names.append)
    >>> parser.feed(b": hi\\n\\nevent: token\\ndata: {}\\n\\nevent: do")
    >>> parser.feed(b"ne\\ndata: {}\\n\\n")
    >>> names
    ['token', 'done']
    """

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        # Line ends are normalised on the buffer, so a CRLF split across chunks is one.
        self._buffer = (self._buffer + data).replace(b"\r\n", b"\n")
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            self._dispatch(block.decode("utf-8", "replace").split("\n"))

    def close(self) -> None:
        """The body ended: an event not followed by a blank line still counts."""
        if self._buffer.strip():
            self._dispatch(self._buffer.decode("utf-8", "replace").split("\n"))
        self._buffer = b""

    def _dispatch(self, lines: list[str]) -> None:
        name, has_data = "message", False
        for line in lines:
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                has_data = True
        if has_data and name != "ping":
            self._sink(name)


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, parsing responses with httptools."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._done: asyncio.Future[int] | None = None
        self._on_body: Callable[[bytes], None] | None = None
        self.status = 0
        self.keep_alive = True
        self.closed = False
        self.received = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionError(f"malformed response: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("the server closed the connection"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self._on_body is not None:
            self._on_body(body)

    def on_message_complete(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(self.status)

    async def exchange(self, payload: bytes, on_body: Callable[[bytes], None] | None) -> int:
        """Write one request and wait for its whole response; its status."""
        assert self.transport is not None
        if self.closed:
            raise ConnectionError("the server closed the connection")
        self._done = asyncio.get_running_loop().create_future()
        self._on_body, self.received = on_body, False
        self.transport.write(payload)
        return await self._done

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)


class LeanClient:
    """HTTP/1.1 over keep-alive connections to one ``http://`` origin."""

    def __init__(self, base_url: str, max_connections: int) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if not parts.hostname:
            raise ValueError(f"target must be a URL with a host, got {base_url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._authority = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._idle: list[_Connection] = []
        self._max = max_connections

    async def send(self, request: Request, on_event: EventSink | None) -> int:
        payload = self._payload(request)
        parser = EventParser(on_event) if on_event is not None else None
        while self._idle and self._idle[-1].closed:  # the server closed them while idle
            self._idle.pop()
        reused = bool(self._idle)
        connection = self._idle.pop() if self._idle else await self._connect()
        try:
            status = await connection.exchange(payload, parser.feed if parser else None)
        except ConnectionError:
            connection.close()
            if not (reused and not connection.received):
                raise
            # The server had closed this idle connection: send again on a new one.
            connection = await self._connect()
            try:
                status = await connection.exchange(payload, parser.feed if parser else None)
            except BaseException:
                connection.close()
                raise
        except BaseException:
            connection.close()
            raise
        if parser is not None:
            parser.close()
        if connection.keep_alive and not connection.closed and len(self._idle) < self._max:
            self._idle.append(connection)
        else:
            connection.close()
        return status

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _transport, connection = await loop.create_connection(_Connection, self._host, self._port)
        return connection

    def _payload(self, request: Request) -> bytes:
        body = b"" if request.json is None else json.dumps(request.json).encode()
        headers = {"Host": self._authority, "User-Agent": "perfkit-load", **request.headers}
        if request.json is not None:
            headers.setdefault("Content-Type", "application/json")
        if body or request.method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        if request.stream:
            headers.setdefault("Accept", "text/event-stream")
        lines = [f"{request.method} {self._prefix}{request.path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpxClient:
    """httpx, for HTTPS and in-process ASGI apps."""

    def __init__(self, target: str | Any, max_connections: int, request_timeout: float) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        if isinstance(target, str):
            self._client = httpx.AsyncClient(
                base_url=target, timeout=request_timeout, limits=limits
            )
        else:
            transport = httpx.ASGITransport(app=target, raise_app_exceptions=False)
            self._client = httpx.AsyncClient(
                transport=transport, base_url="http://app", timeout=request_timeout
            )

    async def send(self, request: Request, on_event: EventSink | None) -> int:
        try:
            return await self._send(request, on_event)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.TransportError as error:
            raise ConnectionError(str(error)) from None

    async def _send(self, request: Request, on_event: EventSink | None) -> int:
        arguments: dict[str, Any] = {"json": request.json, "headers": request.headers}
        if on_event is None:
            response = await self._client.request(request.method, request.path, **arguments)
            return response.status_code
        async with self._client.stream(request.method, request.path, **arguments) as response:
            parser = EventParser(on_event) if response.status_code < 400 else None
            async for chunk in response.aiter_raw():
                if parser is not None:
                    parser.feed(chunk)
            if parser is not None:
                parser.close()
            return response.status_code

    async def aclose(self) -> None:
        await self._client.aclose()
