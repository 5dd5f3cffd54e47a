"""The simulated Anthropic Messages API: respx routes with modeled latency and faults."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import accumulate
from types import TracebackType
from typing import Any

import httpx
import respx

from perfkit._clock import Clock, RealClock
from perfkit._connections import keepalive_limits
from perfkit._errors import SimulatorError
from perfkit._secrets import hide_secrets
from perfkit._url import redact_url
from perfkit.simulation._intercept import (
    CLOSED_POOLS,
    DELIVERY_KEY,
    POOL_KEY,
    REGISTRY,
    Delivery,
    Failures,
    ScheduledStream,
)
from perfkit.simulation._latency import (
    LatencyModel,
    LLMLatency,
    as_llm_latency,
    as_model,
    to_microseconds,
)
from perfkit.simulation._replies import Fault, Reply, tokenize
from perfkit.simulation._wire import error_body, render, stream_chunks

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_TIMEOUT_SECONDS = 600.0
DEFAULT_MAX_LOGGED = 1_000
"""How many requests the simulator's log keeps by default: the newest. A test sees every
request it made; a long-running process (``perfkit serve``) holds its memory flat."""

Script = Reply | Fault
Responder = Callable[["SimRequest"], Script]


@dataclass(repr=False)
class SimRequest:
    """One request the simulator received, and when (on its clock) it was answered.

    ``sent_at`` is when the request reached the server: after ``handshake``, the modeled
    seconds its client spent opening a new connection (0 when it reused an idle one).
    Its repr shows credentials (``x-api-key``, ``authorization``, cookies, a password in
    the URL) as ``***``; ``headers["x-api-key"]`` reads the real value.
    """

    index: int
    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    sent_at: float
    handshake: float = 0.0
    answer: Script | None = None
    status: int | None = None
    first_token_at: float | None = None
    completed_at: float | None = None
    completed: bool = False
    output_tokens: int = 0

    def __post_init__(self) -> None:
        self.headers = hide_secrets(self.headers)

    def __repr__(self) -> str:
        shown = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        shown["url"] = redact_url(self.url)
        return f"SimRequest({', '.join(f'{name}={value!r}' for name, value in shown.items())})"

    __str__ = __repr__

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def retry_count(self) -> int:
        """The SDK's retry number for this attempt (``x-stainless-retry-count``)."""
        try:
            return int(self.headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            return 0

    @property
    def duration(self) -> float | None:
        """Modeled seconds from arrival to the last byte, once delivered."""
        if self.completed_at is None:
            return None
        return round(self.completed_at - self.sent_at, 6)

    @property
    def ttft(self) -> float | None:
        """Modeled seconds from arrival to the first content token, for streamed replies."""
        if self.first_token_at is None:
            return None
        return round(self.first_token_at - self.sent_at, 6)


class _Log:
    """The newest ``keep`` requests (every one with None), and totals over all of them."""

    def __init__(self, keep: int | None) -> None:
        self.requests: deque[SimRequest] = deque(maxlen=keep)
        self.count = 0
        self.output_tokens = 0
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.count = self.output_tokens = 0

    def add_output(self, tokens: int) -> None:
        with self.lock:
            self.output_tokens += tokens


class _Router(respx.MockRouter):
    """A respx router whose call lists keep only the newest ``keep`` calls: respx keeps
    every request and response (streamed bodies included) for as long as the router lives."""

    def __init__(self, keep: int | None) -> None:
        super().__init__(assert_all_mocked=True, assert_all_called=False)
        self._keep = keep

    def record(
        self,
        request: httpx.Request,
        *,
        response: httpx.Response | None = None,
        route: respx.Route | None = None,
    ) -> None:
        super().record(request, response=response, route=route)
        if self._keep is not None:
            for calls in (self.calls, route.calls if route is not None else []):
                del calls[: max(0, len(calls) - self._keep)]


class AnthropicSimulator:
    """A simulated Anthropic Messages API for tests and benchmarks.

    It answers ``POST {base_url}/v1/messages`` for the anthropic SDK (sync and async,
    streaming or not) and plain httpx clients, after modeled latency on ``clock``.

    >>> import anthropic
    >>> from perfkit import VirtualClock
    >>> clock = VirtualClock()
    >>> with AnthropicSimulator(latency=LLMLatency(ttft=0.3), clock=clock) as sim:
    ...     sim.enqueue(Reply.text("Hello!"))
    ...     client = anthropic.Anthropic(api_key="test")
    ...     start = clock.now()
    ...     message = client.messages.create(
    ...         model="claude-sonnet-5", max_tokens=64,
    ...         messages=[{"role": "user", "content": "Hi"}])
    ...     client.close()
    >>> message.content[0].text, clock.elapsed(start), sim.call_count
    ('Hello!', 0.3, 1)

    The log (:attr:`requests`, and respx's call lists of :attr:`router`) keeps the
    newest ``max_logged`` requests, or every one with ``max_logged=None``;
    :attr:`call_count` and :attr:`output_tokens` count them all.
    """

    def __init__(
        self,
        *,
        latency: LLMLatency | LatencyModel | float = 0.0,
        clock: Clock | None = None,
        base_url: str = DEFAULT_BASE_URL,
        seed: int = 0,
        handshake: LatencyModel | float = 0.0,
        max_logged: int | None = DEFAULT_MAX_LOGGED,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if max_logged is not None and (
            isinstance(max_logged, bool) or not isinstance(max_logged, int) or max_logged < 0
        ):
            raise ValueError(
                f"max_logged must be an int >= 0, or None to keep every request; got {max_logged!r}"
            )
        self.max_logged = max_logged
        self.seed = seed
        self._latency = as_llm_latency(latency)
        self.clock: Clock = clock if clock is not None else RealClock()
        self._connections = _Connections(as_model(handshake, name="handshake"), self.clock)
        self.base_url = _check_base_url(base_url)
        self.router: respx.MockRouter = _Router(max_logged)
        self.messages_route = self.router.post(f"{self.base_url}/v1/messages", name="messages")
        self.messages_route.side_effect = self._handle
        self._queue: deque[Script] = deque()
        self._responder: Responder | None = None
        self._injected: list[tuple[Fault, float]] = []
        self._fault_rng = random.Random(seed)
        self._log = _Log(max_logged)
        self._lock = threading.Lock()
        self._active: ExitStack | None = None
        self._failures = Failures()

    # -- configuration ---------------------------------------------------------------

    @property
    def latency(self) -> LLMLatency:
        return self._latency

    @latency.setter
    def latency(self, value: LLMLatency | LatencyModel | float) -> None:
        self._latency = as_llm_latency(value)

    def enqueue(self, *items: Script) -> None:
        """Answer the next requests with these replies or faults, in order."""
        for item in items:
            _check_script(item)
        with self._lock:
            self._queue.extend(items)

    def respond_with(self, answer: Script | Responder | None) -> None:
        """Answer every request (once the queue is empty) with a fixed reply or fault, or
        with ``answer(request)``; ``None`` restores the default reply."""
        if answer is None or (callable(answer) and not isinstance(answer, (Reply, Fault))):
            self._responder = answer
        else:
            fixed = _check_script(answer)
            self._responder = lambda _request: fixed

    def inject(self, fault: Fault, *, rate: float) -> None:
        """Answer a random share ``rate`` of requests with ``fault`` (seeded by ``seed``,
        so the same requests fail on every run). Scripted queue entries come first."""
        _check_script(fault)
        if not isinstance(fault, Fault):
            raise TypeError(f"inject takes a Fault, got {fault!r}")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"rate must be a number between 0 and 1, got {rate!r}")
        with self._lock:
            self._injected.append((fault, float(rate)))

    def reset(self) -> None:
        """Forget scripted answers, injected faults and the request log."""
        with self._lock:
            self._queue.clear()
            self._injected.clear()
            self._fault_rng = random.Random(self.seed)
        self._responder = None
        self._log.clear()
        self.router.reset()

    # -- the request log -------------------------------------------------------------

    @property
    def requests(self) -> list[SimRequest]:
        """The requests received so far, in arrival order: the newest ``max_logged``."""
        with self._log.lock:
            return list(self._log.requests)

    @property
    def connections_opened(self) -> int:
        """Connections the clients opened to the simulator (see ``handshake``)."""
        return self._connections.opened

    @property
    def open_connections(self) -> int:
        """Connections open now: carrying a request, or idle in a live client's pool (at
        most its keep-alive limit, for at most its keep-alive expiry)."""
        return self._connections.open

    @property
    def call_count(self) -> int:
        """Requests received since the start (or :meth:`reset`), logged or not."""
        with self._log.lock:
            return self._log.count

    @property
    def output_tokens(self) -> int:
        """Output tokens delivered since the start (or :meth:`reset`), over every request."""
        with self._log.lock:
            return self._log.output_tokens

    @property
    def last_request(self) -> SimRequest:
        with self._log.lock:
            if not self._log.requests:
                if self._log.count:
                    raise SimulatorError("the simulator logs no request (max_logged=0)")
                raise SimulatorError("the simulator has received no request yet")
            return self._log.requests[-1]

    # -- activation ------------------------------------------------------------------

    def start(self) -> AnthropicSimulator:
        """Intercept HTTP requests until :meth:`stop` (prefer ``with simulator:``)."""
        if self._active is not None:
            raise SimulatorError("this simulator is already active")
        with ExitStack() as stack:
            REGISTRY.activate(self.router)
            stack.callback(self._deactivate)
            stack.enter_context(_sdk_on_clock(self.clock, self.seed))
            self._active = stack.pop_all()
        return self

    def stop(self, *, check: bool = True) -> None:
        """Stop intercepting requests.

        A client may retry or wrap an exception raised in its transport (the anthropic
        SDK turns any of them into ``APIConnectionError``), which would hide an unmatched
        request or a failing responder. So the first such failure not taken with
        :meth:`pop_failures` is raised here, unless ``check`` is false."""
        if self._active is None:
            return
        stack, self._active = self._active, None
        stack.close()
        failures, self._failures = self._failures, Failures()
        if check and failures.kept:
            first = failures.kept[0]
            more = len(failures.kept) - 1 + failures.dropped
            if more:
                first.add_note(f"({more} more failures while the simulator was active)")
            raise first

    def pop_failures(self) -> list[Exception]:
        """The failures recorded so far (unmatched requests, errors raised by responders),
        forgotten once taken, so that :meth:`stop` does not raise them. Only the first
        100 since the last call are kept (a long-running process keeps no more)."""
        failures, self._failures = self._failures, Failures()
        if self._active is not None:
            failures.extend(REGISTRY.take_failures(self.router))
        return failures.kept

    def _deactivate(self) -> None:
        self._failures.extend(REGISTRY.deactivate(self.router))

    @property
    def active(self) -> bool:
        return self._active is not None

    def __enter__(self) -> AnthropicSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop(check=exc is None)

    # -- answering -------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        handshake, done = self._connections.checkout(request.extensions.get(POOL_KEY))
        problem: str | None = None
        try:
            parsed = json.loads(request.content or b"{}")
        except ValueError as error:
            parsed, problem = {}, f"invalid JSON body: {error}"
        if not isinstance(parsed, dict):
            parsed, problem = {}, "the body must be a JSON object"
        logged = self._record(request, parsed, handshake)
        try:
            response = self._answer(logged, parsed, problem, request)
        except BaseException:
            done(False)
            raise
        return _after_handshake(response, handshake, done)

    def _answer(
        self,
        logged: SimRequest,
        parsed: dict[str, Any],
        problem: str | None,
        request: httpx.Request,
    ) -> httpx.Response:
        problem = problem or _validate(parsed)
        if problem:
            logged.status = 400
            return self._error_response(400, "invalid_request_error", problem, logged)
        answer = self._next_answer(logged)
        logged.answer = answer
        if isinstance(answer, Fault):
            return self._fault_response(answer, logged, request)
        return self._reply_response(answer, logged)

    def _record(self, request: httpx.Request, body: dict[str, Any], handshake: float) -> SimRequest:
        with self._log.lock:
            logged = SimRequest(
                index=self._log.count,
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                body=body,
                sent_at=round(self.clock.now() + handshake, 6),
                handshake=handshake,
            )
            self._log.requests.append(logged)
            self._log.count += 1
        return logged

    def _next_answer(self, logged: SimRequest) -> Script:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            for fault, rate in self._injected:
                if self._fault_rng.random() < rate:
                    return fault
        if self._responder is not None:
            return _check_script(self._responder(logged))
        return default_reply(logged.body)

    def _reply_response(self, reply: Reply, logged: SimRequest) -> httpx.Response:
        message = render(reply, logged.body, message_id=f"msg_sim_{logged.index:06d}")
        plan = (reply.latency or self._latency).plan(message.output_tokens)
        logged.status = 200
        if not logged.stream:
            logged.output_tokens = message.output_tokens
            self._log.add_output(message.output_tokens)
            return self._response(
                200, json.dumps(message.to_json()).encode(), logged, delay=plan.total
            )
        return self._stream_response(logged, plan.connect, stream_chunks(message, plan))

    def _stream_response(
        self, logged: SimRequest, delay: float, chunks: list[tuple[float, bytes]]
    ) -> httpx.Response:
        # Tokens delivered once each chunk is sent: the client may stop reading early, and
        # the first chunk after message_start need not hold a token (an empty text block).
        delivered = list(
            accumulate(data.count(b"event: content_block_delta\n") for _, data in chunks)
        )
        received = 0

        def on_chunk(index: int) -> None:
            nonlocal received
            received = delivered[index]
            if received and logged.first_token_at is None:
                logged.first_token_at = self.clock.now()

        def on_close(finished: bool) -> None:
            logged.completed_at = self.clock.now()
            logged.completed = finished
            logged.output_tokens = received
            self._log.add_output(received)

        stream = ScheduledStream(chunks, self.clock, on_chunk=on_chunk, on_close=on_close)
        headers = {**_base_headers(logged), "content-type": "text/event-stream; charset=utf-8"}
        headers["cache-control"] = "no-cache"
        return httpx.Response(
            200,
            headers=headers,
            stream=stream,
            extensions={DELIVERY_KEY: Delivery(self.clock, delay)},
        )

    def _fault_response(
        self, fault: Fault, logged: SimRequest, request: httpx.Request
    ) -> httpx.Response:
        if fault.kind == "stream_error" and logged.stream:
            reply = fault.reply or default_reply(logged.body)
            message = render(reply, logged.body, message_id=f"msg_sim_{logged.index:06d}")
            sent = min(fault.after_tokens, message.output_tokens)
            plan = (reply.latency or self._latency).plan(sent + 1)
            chunks = stream_chunks(
                message, plan, error_after_tokens=sent, error=(fault.error_type, fault.message)
            )
            logged.status = 200
            return self._stream_response(logged, plan.connect, chunks)
        connect = to_microseconds(self._latency.connect.sample())
        if fault.kind == "connection_error":
            error = httpx.ConnectError(fault.message, request=request)
            return _failing(self.clock, connect, error)
        if fault.kind == "timeout":
            wait = fault.after if fault.after is not None else _read_timeout(request)
            return _failing(
                self.clock, connect + wait, httpx.ReadTimeout(fault.message, request=request)
            )
        if fault.kind == "stream_error":  # not streamed: the error arrives as a status
            fault = (
                Fault.overloaded()
                if fault.error_type == "overloaded_error"
                else Fault.server_error()
            )
        logged.status = fault.status
        return self._error_response(
            fault.status,
            fault.error_type,
            fault.message,
            logged,
            headers=fault.headers,
            delay=connect,
        )

    def _error_response(
        self,
        status: int,
        error_type: str,
        message: str,
        logged: SimRequest | None = None,
        *,
        headers: dict[str, str] | Any = None,
        delay: float = 0.0,
    ) -> httpx.Response:
        content = json.dumps(error_body(error_type, message)).encode()
        return self._response(status, content, logged, delay=delay, headers=headers)

    def _response(
        self,
        status: int,
        content: bytes,
        logged: SimRequest | None,
        *,
        delay: float,
        headers: dict[str, str] | Any = None,
    ) -> httpx.Response:
        def on_sent() -> None:
            if logged is not None:
                logged.completed_at = self.clock.now()
                logged.completed = True

        all_headers = {
            **_base_headers(logged),
            "content-type": "application/json",
            **dict(headers or {}),
        }
        return httpx.Response(
            status,
            headers=all_headers,
            content=content,
            extensions={DELIVERY_KEY: Delivery(self.clock, delay, on_sent=on_sent)},
        )

    def __repr__(self) -> str:
        return (
            f"AnthropicSimulator(base_url={redact_url(self.base_url)!r}, "
            f"latency={self._latency!r}, "
            f"clock={self.clock!r}, requests={self.call_count})"
        )


class _Connections:
    """Keep-alive connections per client pool, modeled: a request that finds no idle
    connection in its pool opens one (paying ``handshake``); a response delivered in full
    leaves its connection idle for the next request, and a failed or abandoned one
    closes it, as httpcore's pool does. Like the pool, it keeps at most its limits'
    ``max_keepalive_connections`` idle (closing the surplus) and closes one idle for
    longer than ``keepalive_expiry`` (on ``clock``); the most recently idle is reused
    first. A new client is a new pool, with no connection, and a pool's idle
    connections close with it (when it is closed, or collected)."""

    def __init__(self, handshake: LatencyModel, clock: Clock) -> None:
        self.handshake = handshake
        self.clock = clock
        self.opened = 0
        self._in_use = 0
        # When each idle connection of a pool went idle, oldest first.
        self._idle: weakref.WeakKeyDictionary[Any, list[float]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        now = self.clock.now()
        with self._lock:
            return self._in_use + sum(len(self._alive(pool, now)) for pool in list(self._idle))

    def checkout(self, pool_ref: weakref.ref[Any] | None) -> tuple[float, Callable[[bool], None]]:
        """The modeled handshake this request pays, and ``done(reusable)`` to call when
        its response was delivered (or failed). The pool is held weakly throughout."""
        pool = pool_ref() if pool_ref is not None else None
        now = self.clock.now()
        with self._lock:
            self._in_use += 1
            idle = self._alive(pool, now) if pool is not None else []
            if idle:
                idle.pop()
                cost = 0.0
            else:
                self.opened += 1
                cost = to_microseconds(self.handshake.sample())
        return cost, lambda reusable: self._done(pool_ref, reusable)

    def _done(self, pool_ref: weakref.ref[Any] | None, reusable: bool) -> None:
        pool = pool_ref() if pool_ref is not None else None
        now = self.clock.now()
        with self._lock:
            self._in_use -= 1
            if reusable and pool is not None:
                idle = self._alive(pool, now)
                if len(idle) < keepalive_limits(pool)[0]:
                    idle.append(now)

    def _alive(self, pool: Any, now: float) -> list[float]:
        """``pool``'s idle connections, once those past their keep-alive are closed (all of
        them once the pool is closed: a new list, kept nowhere)."""
        if pool in CLOSED_POOLS:
            self._idle.pop(pool, None)
            return []
        idle = self._idle.setdefault(pool, [])
        expiry = keepalive_limits(pool)[1]
        if expiry is not None:
            idle[:] = [since for since in idle if now <= since + expiry]
        return idle


def _after_handshake(
    response: httpx.Response, handshake: float, done: Callable[[bool], None]
) -> httpx.Response:
    """``response`` delivered ``handshake`` later; its connection is given back once the
    response is delivered in full, or closed if it fails or is abandoned."""
    delivery = response.extensions[DELIVERY_KEY]
    on_sent, on_abandoned = delivery.on_sent, delivery.on_abandoned
    if isinstance(response.stream, ScheduledStream):
        response.stream.add_close_callback(done)  # also when abandoned: it is closed
    elif delivery.error is not None:
        done(False)
    else:
        on_sent = _chain(on_sent, lambda: done(True))
        on_abandoned = _chain(on_abandoned, lambda: done(False))
    response.extensions[DELIVERY_KEY] = dataclasses.replace(
        delivery,
        delay=to_microseconds(delivery.delay + handshake),
        on_sent=on_sent,
        on_abandoned=on_abandoned,
    )
    return response


def _chain(first: Callable[[], None] | None, then: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        if first is not None:
            first()
        then()

    return both


def default_reply(body: dict[str, Any]) -> Reply:
    """The reply when nothing is scripted: deterministic, and different per question."""
    question = _last_user_text(body)
    snippet = "".join(tokenize(question)[:24]).strip()
    return Reply.text(f"Simulated answer to: {snippet}" if snippet else "Simulated answer.")


def _last_user_text(body: dict[str, Any]) -> str:
    return next(user_texts(body), "")


def user_texts(body: dict[str, Any]) -> Iterator[str]:
    """The text of each user turn of a request body, newest first ("" for a turn with no
    text blocks, such as one of tool results only)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                yield content
            elif isinstance(content, list):
                yield " ".join(
                    b.get("text", "")
                    for b in content
                    if isinstance(b, dict) and b.get("type") == "text"
                )


def _validate(body: dict[str, Any]) -> str | None:
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return f"max_tokens: must be a positive integer, got {body['max_tokens']!r}"
    if not isinstance(body["messages"], list):
        return "messages: must be a list"
    return None


def _check_script(item: object) -> Script:
    if isinstance(item, (Reply, Fault)):
        return item
    raise TypeError(f"a scripted answer must be a Reply or a Fault, got {item!r}")


def _check_base_url(base_url: str) -> str:
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    return str(url).rstrip("/")


def _base_headers(logged: SimRequest | None) -> dict[str, str]:
    index = logged.index if logged is not None else 0
    return {"request-id": f"req_sim_{index:06d}"}


def _failing(clock: Clock, delay: float, error: httpx.TransportError) -> httpx.Response:
    return httpx.Response(599, extensions={DELIVERY_KEY: Delivery(clock, delay, error=error)})


def _read_timeout(request: httpx.Request) -> float:
    timeout = request.extensions.get("timeout") or {}
    read = timeout.get("read") if isinstance(timeout, dict) else None
    return float(read) if isinstance(read, (int, float)) else DEFAULT_TIMEOUT_SECONDS


@contextmanager
def _sdk_on_clock(clock: Clock, seed: int) -> Iterator[None]:
    """Make the anthropic SDK deterministic on a virtual clock.

    The async client sleeps through the event loop, which virtual time already covers;
    the sync client calls ``time.sleep``, which would cost real seconds, so it sleeps on
    ``clock`` instead. Back-off without ``retry-after`` has random jitter, which would
    make modeled times differ between runs; it is drawn from a generator seeded by
    ``seed`` instead. And each async client's first request looks up the platform in a
    worker thread: a thread finishes in real time, while virtual timers of other tasks
    may fire meanwhile, so the request's modeled time would depend on the machine's
    speed; the (quick) lookup runs inline instead."""
    if clock.mode != "virtual":
        yield
        return
    try:
        from anthropic import _base_client
    except ImportError:  # pragma: no cover - anthropic is a dependency
        yield
        return
    from unittest import mock

    with (
        mock.patch.object(_base_client, "time", _ClockTime(clock)),
        mock.patch.object(_base_client, "random", random.Random(seed).random),
        mock.patch.object(_base_client, "asyncify", _inline),
    ):
        yield


def _inline(function: Callable[..., Any]) -> Callable[..., Any]:
    """``asyncify`` without the worker thread: the coroutine calls ``function`` itself."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return call


class _ClockTime:
    """Stands in for the ``time`` module inside the SDK: ``sleep`` uses the clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)
