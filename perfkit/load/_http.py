"""The load generator's HTTP clients: a lean HTTP/1.1 client for ``http://`` URLs, and
httpx for everything else (``https://``, in-process ASGI apps).

A load generator must cost less than what it loads, or it measures itself: httpx spends
about a millisecond of CPU on a request, which caps one process near a thousand requests
per second. The lean client writes each request as bytes on a keep-alive connection and
parses the response with httptools (llhttp, the parser behind uvicorn and Node.js), at a
fraction of that cost. Both clients report each server-sent event of a successful
``text/event-stream`` response as it arrives, so time to first token is measured the
same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Protocol

import httptools
import httpx

from perfkit._url import parse_http_url
from perfkit.load._models import Request

MAX_EVENT_BYTES = 1 << 20
"""The longest server-sent event read: a stream that never ends one fails, rather than
fill the generator's memory."""
MAX_HEAD_BYTES = 64 << 10
"""The largest response head (status line and headers) read: a header that never ends
fails the request, rather than fill the generator's memory (h11 allows 16 KiB)."""
EventSink = Callable[[str], None]
"""Called with each server-sent event's name (``message`` when unnamed) as it completes."""


class Client(Protocol):
    """Sends one request and returns its status (calling ``on_event`` for SSE events)."""

    async def send(self, request: Request, on_event: EventSink | None) -> int: ...

    async def aclose(self) -> None: ...


def make_client(target: str | Any, max_connections: int, request_timeout: float) -> Client:
    """The lean client for an ``http://`` URL, httpx for an ``https://`` URL or an app."""
    if isinstance(target, str):
        if parse_http_url(target, "target").scheme == "http":
            return LeanClient(target, max_connections)
        return HttpxClient(target, max_connections, request_timeout)
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
        self._carry = b""  # a CR that may begin a CRLF split across chunks

    def feed(self, data: bytes) -> None:
        data = self._carry + data
        self._carry = data[-1:] if data.endswith(b"\r") else b""
        data = data[: len(data) - len(self._carry)]
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # all three line ends
        searched_to = max(0, len(self._buffer) - 1)  # each byte is searched once
        self._buffer += data
        while (end := self._buffer.find(b"\n\n", searched_to)) >= 0:
            block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            searched_to = 0
            self._dispatch(block.decode("utf-8", "replace").split("\n"))
        if len(self._buffer) > MAX_EVENT_BYTES:
            raise ConnectionError(f"a server-sent event over {MAX_EVENT_BYTES >> 20} MiB")

    def close(self) -> None:
        """The body ended: an event not followed by a blank line still counts."""
        self._buffer, self._carry = self._buffer + self._carry.replace(b"\r", b"\n"), b""
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
    """One keep-alive HTTP/1.1 connection, parsing responses with httptools.

    A response with neither ``Content-Length`` nor chunked encoding (HTTP/1.0's way)
    ends when the server closes the connection: that close completes it. A response
    head over ``MAX_HEAD_BYTES`` fails the request; a response nobody asked for (one
    more after the reply) makes the connection unfit for another request."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._done: asyncio.Future[int] | None = None
        self._on_body: Callable[[bytes], None] | None = None
        self.status = 0
        self.keep_alive = True
        self.closed = False
        self.received = False
        self._framed = False  # the response states its length (or is chunked)
        self._headers_done = False
        self._in_head = False
        self._head_bytes = 0  # received while the current response head was incomplete
        self._heads = 0  # response heads completed (1xx ones included)
        self.event_stream = False  # a successful text/event-stream response

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._done is None or self._done.done():
            self.close()  # bytes no request asked for: the connection cannot be trusted
            return
        self.received, heads = True, self._heads
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionError(f"malformed response: {error}"))
            self.close()
            return
        # A head that began in this read (after another ended in it) is counted from
        # the next read: the cap is on one head, not on a stream of 1xx responses.
        self._head_bytes = self._head_bytes + len(data) if heads == self._heads else 0
        self._head_bytes *= self._in_head
        if self._head_bytes > MAX_HEAD_BYTES:
            self._fail(ConnectionError(f"response headers over {MAX_HEAD_BYTES >> 10} KiB"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._headers_done and not self._framed:
            self.on_message_complete()  # the close ends an HTTP/1.0-style body
        self._fail(ConnectionError("the server closed the connection"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._framed = self._headers_done = self.event_stream = False
        self._in_head = True
        if self._done is not None and self._done.done():
            self.keep_alive = False  # a response after the reply: what else is queued?

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (
            name == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self._framed = True
        elif name == b"content-type":
            self.event_stream = value.partition(b";")[0].strip().lower() == b"text/event-stream"

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self.keep_alive and self._parser.should_keep_alive()
        self._headers_done, self._in_head = True, False
        self._heads += 1
        self.event_stream = self.event_stream and 200 <= self.status < 300
        if self.status in (204, 304) or 100 <= self.status < 200:
            self._framed = True  # bodiless by definition

    def on_body(self, body: bytes) -> None:
        if self._on_body is not None and self.event_stream:
            try:
                self._on_body(body)
            except ConnectionError as error:  # the body broke its own framing (SSE)
                self._fail(error)
                self.close()

    def on_message_complete(self) -> None:
        self._headers_done = False
        if 100 <= self.status < 200:
            return  # an informational response: the reply follows
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
    """HTTP/1.1 over keep-alive connections to one ``http://`` origin (credentials in
    its URL are sent as basic auth)."""

    def __init__(self, base_url: str, max_connections: int) -> None:
        url = parse_http_url(base_url, "target")
        self._host, self._port, self._prefix = url.host, url.port, url.path.rstrip("/")
        self._headers = {"Host": url.authority, "User-Agent": "perfkit-load"}
        if url.authorization is not None:
            self._headers["Authorization"] = url.authorization
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
        given = {name.lower() for name in request.headers}
        headers = {n: v for n, v in self._headers.items() if n.lower() not in given}
        headers.update(request.headers)
        if request.json is not None and "content-type" not in given:
            headers["Content-Type"] = "application/json"
        if body or request.method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        if request.stream and "accept" not in given:
            headers["Accept"] = "text/event-stream"
        lines = [f"{request.method} {self._prefix}{request.path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpxClient:
    """httpx, for HTTPS and in-process ASGI apps (credentials in the URL are sent as basic
    auth). Bodies are read and dropped as they arrive, so an endless one costs no memory."""

    def __init__(self, target: str | Any, max_connections: int, request_timeout: float) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        if isinstance(target, str):
            url = parse_http_url(target, "target")
            headers = {} if url.authorization is None else {"Authorization": url.authorization}
            self._client = httpx.AsyncClient(
                base_url=url.origin + url.path.rstrip("/"),
                headers=headers,
                timeout=request_timeout,
                limits=limits,
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
        async with self._client.stream(request.method, request.path, **arguments) as response:
            parser = (
                EventParser(on_event)
                if on_event is not None and _is_event_stream(response)
                else None
            )
            async for chunk in response.aiter_bytes():
                if parser is not None:
                    parser.feed(chunk)
            if parser is not None:
                parser.close()
            return response.status_code

    async def aclose(self) -> None:
        await self._client.aclose()


def _is_event_stream(response: httpx.Response) -> bool:
    """Whether ``response`` is a successful stream of server-sent events (the events of
    any other body, a large JSON answer or an error page, are none)."""
    content_type = response.headers.get("content-type", "").partition(";")[0]
    return response.is_success and content_type.strip().lower() == "text/event-stream"
