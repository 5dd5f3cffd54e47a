"""TraceRecorder: one trace line per Messages API request, taken at the HTTP transport."""

from __future__ import annotations

import importlib
import itertools
import logging
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from os import PathLike
from types import TracebackType
from typing import Any, TypeVar

import httpx2
import jiter

from perfkit._clock import Clock, RealClock
from perfkit.traces._format import Trace

logger = logging.getLogger("perfkit.traces")

HttpClient = TypeVar("HttpClient", httpx2.Client, httpx2.AsyncClient)

MAX_JSON_BODY = 16 * 1024 * 1024
"""The largest non-streamed body kept to read its usage (a Messages reply is far smaller:
128k output tokens are well under a megabyte); past it the line has no usage."""

CONTENT_DELTAS = frozenset({"text_delta", "thinking_delta", "input_json_delta"})
"""The deltas that carry generated content (visible text, thinking, tool input); a
``signature_delta`` closes a thinking block and is not a token."""

WATCHED_EVENTS = frozenset(
    {None, b"content_block_delta", b"message_start", b"message_delta", b"error"}
)
"""Events that may carry a content delta, usage or an error (an unnamed event is read
by its ``type``); ping, content_block_start/stop and message_stop are skipped unparsed."""

DELTA_EVENT = b"event: content_block_delta\ndata: "
"""How the API sends nearly every event: read without splitting it into lines."""

CONTENT_MARKERS = (b'"text_delta"', b'"thinking_delta"', b'"input_json_delta"')
"""A content delta's type as it appears, quoted, in the event's JSON: inside a string
(the text itself) a quote is escaped, so a quoted type can only be the delta's own."""

USAGE_FIELDS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


class TraceRecorder:
    """Appends one line to a trace file for every Messages API request (each retry
    attempt its own line) sent through the HTTP clients it makes.

    It sits in the HTTP transport: it times the response headers, watches the body as the
    caller reads it (server-sent events are parsed incrementally for the first content
    delta, the gaps and the usage; a JSON reply for its usage) and writes the line when
    the body ends or the caller closes it. It keeps no prompt, reply, API key or header
    other than ``request-id``. A failure of its own (a full disk, a closed file) is logged
    once and never reaches the request.

        recorder = TraceRecorder("traces.jsonl")
        client = anthropic.Anthropic(http_client=recorder.http_client())
        async_client = anthropic.AsyncAnthropic(http_client=recorder.async_http_client())

    ``clock`` times the requests: real time by default; the virtual clock a simulator
    runs on makes every recorded time exact. On the real clock ``at`` is Unix time, on a
    virtual clock it is that clock's reading. ``gaps=False`` leaves out the gaps between
    tokens, most of a long reply's line (the time to the first token and to the end stay).
    """

    def __init__(
        self, path: str | PathLike[str], *, clock: Clock | None = None, gaps: bool = True
    ) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(
                f"clock must be a perfkit clock (RealClock, VirtualClock) or None, got {clock!r}"
            )
        self.path = path
        self.clock: Clock = clock if clock is not None else RealClock()
        self.gaps = gaps
        """Whether lines keep the gaps between tokens (about 8 bytes per output token)."""
        # Unbuffered, append-only: each line is one write(2) to the end of the file, so
        # threads, tasks and processes appending at once never interleave within a line.
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115  # closed by close()
        self.written = 0
        """Lines written."""
        self.dropped = 0
        """Lines lost to a failure of the recorder (logged once)."""
        self._warned = False
        self._cut = False
        """The file ends with part of a line (a write ran out of space): the next line
        begins with a newline, so it is not glued to the broken one."""
        self._lock = threading.Lock()  # the counters only; lines are written without it

    # -- HTTP clients -----------------------------------------------------------------

    def http_client(self, **kwargs: Any) -> httpx2.Client:
        """The anthropic SDK's default sync HTTP client (``DefaultHttpxClient``, with the
        SDK's limits, timeouts and keep-alive; ``kwargs`` as it takes them), recording."""
        import anthropic

        return self.instrument(anthropic.DefaultHttpxClient(**kwargs))

    def async_http_client(self, **kwargs: Any) -> httpx2.AsyncClient:
        """The SDK's default async HTTP client (``DefaultAsyncHttpxClient``), recording."""
        import anthropic

        return self.instrument(anthropic.DefaultAsyncHttpxClient(**kwargs))

    def instrument(self, client: HttpClient) -> HttpClient:
        """Record the requests of an existing ``httpx2.Client`` or ``httpx2.AsyncClient``
        (its transport and every mounted one, proxies included); returns the client."""
        if isinstance(client, httpx2.Client):
            wrap: Any = self.transport
        elif isinstance(client, httpx2.AsyncClient):
            wrap = self.async_transport
        else:
            raise TypeError(
                f"expected an httpx2.Client or httpx2.AsyncClient (what the anthropic SDK "
                f"takes as http_client), got {client!r}"
            )
        client._transport = wrap(client._transport)
        client._mounts = {
            pattern: None if mounted is None else wrap(mounted)
            for pattern, mounted in client._mounts.items()
        }
        return client

    def transport(self, inner: httpx2.BaseTransport) -> httpx2.BaseTransport:
        """``inner`` (a sync httpx2 transport), recording the Messages requests it sends."""
        if isinstance(inner, _RecordingTransport) and inner.recorder is self:
            return inner
        return _RecordingTransport(self, inner)

    def async_transport(self, inner: httpx2.AsyncBaseTransport) -> httpx2.AsyncBaseTransport:
        """``inner`` (an async httpx2 transport), recording the Messages requests it sends."""
        if isinstance(inner, _AsyncRecordingTransport) and inner.recorder is self:
            return inner
        return _AsyncRecordingTransport(self, inner)

    # -- the file ---------------------------------------------------------------------

    def write(self, trace: Trace) -> None:
        """Append ``trace`` as one line; a failure is counted and logged once, not raised."""
        try:
            line = (trace.to_json() + "\n").encode()
            if self._cut:
                line = b"\n" + line
            written = self._file.write(line) or 0
            if written != len(line):  # a partial write: the disk is full
                self._cut = self._cut or written > 0
                raise OSError(f"only part of a {len(line)}-byte line was written")
            self._cut = False
        except Exception as error:
            self.failed(error)
        else:
            with self._lock:
                self.written += 1

    def failed(self, error: BaseException) -> None:
        """Count a line lost to ``error``; the first one is logged as a warning."""
        with self._lock:
            self.dropped += 1
            warn, self._warned = not self._warned, True
        if warn:
            logger.warning(
                "perfkit trace recorder: cannot record to %s (%s: %s); requests go on "
                "unrecorded, this warning is not repeated",
                self.path,
                type(error).__name__,
                error,
            )

    def close(self) -> None:
        """Close the file; requests still in flight are not recorded."""
        self._file.close()

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TraceRecorder({str(self.path)!r}, written={self.written}, dropped={self.dropped})"


def is_messages_request(request: httpx2.Request) -> bool:
    """Whether ``request`` creates a message (``POST .../v1/messages``, beta or not), not a
    token count, a batch or another endpoint."""
    return request.method == "POST" and request.url.path.rstrip("/").endswith("/messages")


class _Attempt:
    """What one HTTP attempt has shown so far; both transports feed it, and it writes the
    line once, when the body ends, the caller closes it or the request fails."""

    __slots__ = (
        "at",
        "body",
        "body_size",
        "buffer",
        "decoder",
        "done",
        "error",
        "first_token",
        "headers_at",
        "held_cr",
        "model",
        "recorder",
        "request_id",
        "retries",
        "sse",
        "start",
        "status",
        "stream",
        "token_times",
        "usage",
    )

    def __init__(self, recorder: TraceRecorder, request: httpx2.Request) -> None:
        clock = recorder.clock
        self.recorder = recorder
        self.start = clock.now()
        self.at = time.time() if clock.mode == "real" else self.start
        self.model = ""
        self.stream = False
        self.retries = 0
        self.status = 0
        self.request_id: str | None = None
        self.error: str | None = None
        self.headers_at: float | None = None
        self.first_token: float | None = None
        self.token_times: list[float] = []
        """When each content delta after the first arrived (with ``gaps`` on)."""
        self.usage: dict[str, int] = {}
        self.sse = False
        self.buffer = bytearray()
        """The event being received (line ends made LF), up to its blank line."""
        self.held_cr = False
        """The last chunk ended with a CR, held back: it may be the CR of a CRLF."""
        self.body: list[bytes] | None = None
        self.decoder: Callable[[bytes], bytes] | None = None
        """Undoes the body's ``content-encoding`` (gzip, deflate, br when brotli is installed)."""
        self.body_size = 0
        self.done = False
        self._read_request(request)

    def _read_request(self, request: httpx2.Request) -> None:
        self.retries = _int_or_zero(request.headers.get("x-stainless-retry-count"))
        body = jiter.from_json(request.content)
        if isinstance(body, dict):
            model = body.get("model")
            self.model = model if isinstance(model, str) else ""
            self.stream = body.get("stream") is True

    def on_headers(self, response: httpx2.Response) -> None:
        self.headers_at = self.recorder.clock.now()
        self.status = response.status_code
        self.request_id = response.headers.get("request-id")
        content_type = response.headers.get("content-type", "")
        self.sse = content_type.startswith("text/event-stream")
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            # The transport sees the bytes as sent; an encoding it cannot undo leaves the
            # line with its times but no token or usage.
            self.decoder = _decoder(encoding)
            if self.decoder is None:
                self.sse = False
                return
        if not self.sse:
            self.body = []

    def on_chunk(self, chunk: bytes) -> None:
        if self.decoder is not None:
            chunk = self.decoder(chunk)
        if not self.sse:
            self._keep(chunk)
            return
        # Only this chunk is scanned and copied (an event may arrive in a great many).
        if self.held_cr:
            chunk, self.held_cr = b"\r" + chunk, False
        if b"\r" in chunk:  # CRLF or CR line ends (the API sends LF)
            if chunk.endswith(b"\r"):  # it may be the CR of a CRLF split between chunks
                chunk, self.held_cr = chunk[:-1], True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self.buffer
        if buffer:
            start = len(buffer) - 1  # a blank line may begin at the buffer's last byte
            buffer += chunk
            if buffer.find(b"\n\n", start) < 0:
                if len(buffer) > MAX_JSON_BODY:
                    raise ValueError(f"a server-sent event over {MAX_JSON_BODY} bytes")
                return
            *events, rest = bytes(buffer).split(b"\n\n")
        else:  # most chunks: whole events, nothing held before them
            *events, rest = chunk.split(b"\n\n")
        buffer[:] = rest
        if len(rest) > MAX_JSON_BODY:
            raise ValueError(f"a server-sent event over {MAX_JSON_BODY} bytes")
        now = self.recorder.clock.now()
        for event in events:
            self._on_event(event, now)

    def _flush(self, now: float) -> None:
        """At the body's end: the events held back for a CR that could have begun a CRLF."""
        if self.sse and self.held_cr:
            for event in bytes(self.buffer + b"\n").split(b"\n\n")[:-1]:
                self._on_event(event, now)
        self.buffer, self.held_cr = bytearray(), False

    def _keep(self, chunk: bytes) -> None:
        if self.body is None:
            return
        self.body_size += len(chunk)
        if self.body_size > MAX_JSON_BODY:
            self.body = None
        else:
            self.body.append(chunk)

    def _on_event(self, event: bytes, now: float) -> None:
        """One server-sent event (its lines, without the blank line that ends it)."""
        if event.startswith(DELTA_EVENT):  # most events: one line each of event and data
            data = event[len(DELTA_EVENT) :]
            if b"\n" not in data:
                if _is_content(data):
                    self._on_token(now)
                return
        name: bytes | None = None
        lines: list[bytes] = []
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:]
                lines.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                name = line[6:].strip()
        if lines and name in WATCHED_EVENTS:
            self._on_data(b"\n".join(lines), now)

    def _on_data(self, data: bytes, now: float) -> None:
        try:
            event = jiter.from_json(data)
        except ValueError:  # not JSON: the SDK raises on it; the line keeps what came before
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("type") in CONTENT_DELTAS:
                self._on_token(now)
        elif kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                self._take_usage(message.get("usage"))
        elif kind == "message_delta":
            self._take_usage(event.get("usage"))
        elif kind == "error":
            self.error = _error_type(event) or "error"

    def _on_token(self, now: float) -> None:
        if self.first_token is None:
            self.first_token = now
        elif self.recorder.gaps:
            self.token_times.append(now)

    def _take_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            for name in USAGE_FIELDS:
                value = usage.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    self.usage[name] = value

    def _read_body(self) -> None:
        if not self.body:
            return
        reply = jiter.from_json(b"".join(self.body))
        self.body = None
        if not isinstance(reply, dict):
            return
        if self.status >= 400:
            self.error = _error_type(reply)
        else:
            self._take_usage(reply.get("usage"))

    def finish(self, error: str | None = None) -> None:
        """Write the line (once): ``error`` names why the body did not end normally."""
        if self.done:
            return
        self.done = True
        end = self.recorder.clock.now()
        try:
            if self.headers_at is not None and error is None:
                self._flush(end)
                self._read_body()
        finally:
            self._write(end, error)

    def _write(self, end: float, error: str | None) -> None:
        # The server's own error type first; an error status whose body the SDK closed
        # unread (a response it retries) is named by its status, never "abandoned".
        status_error = f"HTTP {self.status}" if self.status >= 400 else error
        error = self.error or status_error
        headers_at = self.headers_at if self.headers_at is not None else end
        self.recorder.write(
            Trace(
                at=self.at,
                model=self.model,
                status=self.status,
                stream=self.stream,
                retries=self.retries,
                request_id=self.request_id,
                error=error,
                headers_s=self._since_start(headers_at),
                ttft_s=None
                if self.first_token is None
                else _seconds(self.first_token - self.start),
                complete_s=self._since_start(end),
                gaps_s=self._gaps(),
                **self.usage,
            )
        )

    def _gaps(self) -> tuple[float, ...]:
        if self.first_token is None or not self.token_times:
            return ()
        times = [self.first_token, *self.token_times]
        return tuple([round(later - earlier, 6) for earlier, later in itertools.pairwise(times)])

    def _since_start(self, moment: float) -> float:
        return _seconds(moment - self.start)


def _seconds(value: float) -> float:
    """A duration to the microsecond, the virtual clock's resolution (never below 0)."""
    return max(round(value, 6), 0.0)


def _decoder(encoding: str) -> Callable[[bytes], bytes] | None:
    """A function undoing ``encoding`` piece by piece (as httpx2 does), or None."""
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32).decompress  # gzip or zlib, detected
    if encoding == "br":
        for name in ("brotli", "brotlicffi"):  # optional, as they are for httpx2
            try:
                decompressor = importlib.import_module(name).Decompressor()
            except ImportError:
                continue
            return getattr(decompressor, "decompress", None) or decompressor.process  # type: ignore[no-any-return]
    return None


def _is_content(data: bytes) -> bool:
    """Whether a ``content_block_delta`` event's data is a content delta (not a signature
    or citation), without decoding it (see :data:`CONTENT_MARKERS`)."""
    text, thinking, tool_input = CONTENT_MARKERS
    return text in data or thinking in data or tool_input in data


def _int_or_zero(value: str | None) -> int:
    try:
        return max(int(value or 0), 0)
    except ValueError:
        return 0


def _error_type(body: dict[str, Any]) -> str | None:
    error = body.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


def _start(recorder: TraceRecorder, request: httpx2.Request) -> _Attempt | None:
    if not is_messages_request(request):
        return None
    try:
        return _Attempt(recorder, request)
    except Exception as error:
        recorder.failed(error)
        return None


def _call(recorder: TraceRecorder, attempt: _Attempt, method: str, *args: Any) -> bool:
    """Call ``attempt.<method>(*args)``; on a failure of the recorder's own, count it, stop
    recording this attempt and return False. The request never sees it."""
    if attempt.done:
        return False
    try:
        getattr(attempt, method)(*args)
    except Exception as error:
        attempt.done = True
        recorder.failed(error)
        return False
    return True


def _read_already(attempt: _Attempt, response: httpx2.Response) -> bool:
    """Whether ``response`` came with its body in memory (an in-process transport, a mock):
    then it is all there now, and the line is written at once."""
    try:
        content = response.content  # decoded already
    except httpx2.ResponseNotRead:
        return False
    attempt.decoder = None
    if _call(attempt.recorder, attempt, "on_chunk", content):
        _call(attempt.recorder, attempt, "finish")
    return True


def _failure_name(error: BaseException) -> str:
    return type(error).__name__


class _RecordingTransport(httpx2.BaseTransport):
    def __init__(self, recorder: TraceRecorder, inner: httpx2.BaseTransport) -> None:
        self.recorder = recorder
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        attempt = _start(self.recorder, request)
        if attempt is None:
            return self.inner.handle_request(request)
        try:
            response = self.inner.handle_request(request)
        except BaseException as error:
            _call(self.recorder, attempt, "finish", _failure_name(error))
            raise
        if _call(self.recorder, attempt, "on_headers", response) and not _read_already(
            attempt, response
        ):
            response.stream = _RecordingStream(response.stream, attempt)
        return response

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> _RecordingTransport:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.inner.__exit__(*exc_info)


class _AsyncRecordingTransport(httpx2.AsyncBaseTransport):
    def __init__(self, recorder: TraceRecorder, inner: httpx2.AsyncBaseTransport) -> None:
        self.recorder = recorder
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        attempt = _start(self.recorder, request)
        if attempt is None:
            return await self.inner.handle_async_request(request)
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException as error:
            _call(self.recorder, attempt, "finish", _failure_name(error))
            raise
        if _call(self.recorder, attempt, "on_headers", response) and not _read_already(
            attempt, response
        ):
            response.stream = _AsyncRecordingStream(response.stream, attempt)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> _AsyncRecordingTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.inner.__aexit__(*exc_info)


class _RecordingStream(httpx2.SyncByteStream):
    """A response body that shows each chunk to its attempt as the caller reads it."""

    def __init__(self, inner: Any, attempt: _Attempt) -> None:
        self.inner = inner
        self.attempt = attempt

    def __iter__(self) -> Iterator[bytes]:
        attempt, recorder = self.attempt, self.attempt.recorder
        try:
            for chunk in self.inner:
                if not attempt.done:
                    _call(recorder, attempt, "on_chunk", chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as error:
            _call(recorder, attempt, "finish", _failure_name(error))
            raise
        _call(recorder, attempt, "finish")

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            _call(self.attempt.recorder, self.attempt, "finish", "abandoned")


class _AsyncRecordingStream(httpx2.AsyncByteStream):
    """The async twin of :class:`_RecordingStream`."""

    def __init__(self, inner: Any, attempt: _Attempt) -> None:
        self.inner = inner
        self.attempt = attempt

    async def __aiter__(self) -> AsyncIterator[bytes]:
        attempt, recorder = self.attempt, self.attempt.recorder
        try:
            async for chunk in self.inner:
                if not attempt.done:
                    _call(recorder, attempt, "on_chunk", chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as error:
            _call(recorder, attempt, "finish", _failure_name(error))
            raise
        _call(recorder, attempt, "finish")

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            _call(self.attempt.recorder, self.attempt, "finish", "abandoned")
