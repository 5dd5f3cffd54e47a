"""The provider-neutral simulated server: routes, scripts, faults, the request log,
modeled connections and delivery on a clock. A provider's simulator (Anthropic's
Messages API, OpenAI's Chat Completions) subclasses it, adds its routes and renders
replies and errors in its wire format."""

from __future__ import annotations

import json
import random
import re
import threading
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from re import Pattern
from types import ModuleType, TracebackType
from typing import Any, Self

import httpx
import respx

from perfkit._clock import Clock, RealClock
from perfkit._errors import SimulatorError
from perfkit._pricing import Usage, usd
from perfkit._url import redact_url
from perfkit.simulation._latency import (
    LatencyModel,
    LLMLatency,
    as_llm_latency,
    as_model,
    to_microseconds,
)
from perfkit.simulation.server._connections import ModeledConnections, after_handshake
from perfkit.simulation.server._intercept import (
    DELIVERY_KEY,
    POOL_KEY,
    REGISTRY,
    Delivery,
    Failures,
    Origin,
    ScheduledStream,
    is_loopback,
    origin_of,
)
from perfkit.simulation.server._log import RequestLog, Script, SimRequest
from perfkit.simulation.server._replies import Fault, Reply
from perfkit.simulation.server._sdk_clock import sdks_on_clock

DEFAULT_TIMEOUT_SECONDS = 600.0
DEFAULT_MAX_LOGGED = 1_000
"""How many requests the simulator's log keeps by default: the newest. A test sees every
request it made; a long-running process (``perfkit serve``) holds its memory flat."""

Responder = Callable[[SimRequest], Script]
Answer = Callable[[SimRequest, httpx.Request], httpx.Response]
"""A route's handler: the logged request (body parsed) and the raw request -> response."""


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


class SimulatedServer:
    """A simulated HTTP API on a clock: what every provider's simulator shares.

    It intercepts the requests of httpx and httpx2 clients (the anthropic and openai SDKs
    among them) while active, answers each route after modeled latency on ``clock``, and
    logs them. Scripts (:meth:`enqueue`, :meth:`respond_with`, :meth:`inject`) decide
    what the model says or which :class:`Fault` happens; a subclass adds its routes
    (:meth:`add_route`) and renders replies and errors in its wire format
    (:meth:`default_reply`, :meth:`error_body`, and the route handlers).

    The log (:attr:`requests`, and respx's call lists of :attr:`router`) keeps the
    newest ``max_logged`` requests, or every one with ``max_logged=None``;
    :attr:`call_count` and :attr:`output_tokens` count them all.
    """

    default_base_url = "http://simulated.invalid"
    sdk_base_clients: tuple[str, ...] = ()
    """The ``_base_client`` modules of the SDKs to run on the clock (imported if installed)."""

    def __init__(
        self,
        *,
        latency: LLMLatency | LatencyModel | float = 0.0,
        clock: Clock | None = None,
        base_url: str | None = None,
        seed: int = 0,
        handshake: LatencyModel | float = 0.0,
        max_logged: int | None = DEFAULT_MAX_LOGGED,
        strict: bool = True,
    ) -> None:
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        self.strict = strict
        """Whether requests are checked as the real API checks them (a provider's
        simulator refuses what its API refuses); ``False`` keeps only the checks the
        simulator needs to answer at all."""
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
        self._connections = ModeledConnections(as_model(handshake, name="handshake"), self.clock)
        self.base_url = _check_base_url(base_url or self.default_base_url)
        self.router: respx.MockRouter = _Router(max_logged)
        self._queue: deque[Script] = deque()
        self._responder: Responder | None = None
        self._injected: list[tuple[Fault, float]] = []
        self._fault_rng = random.Random(seed)
        self._log = RequestLog(max_logged)
        self._lock = threading.Lock()
        self._active: ExitStack | None = None
        self._failures = Failures()

    # -- routes ----------------------------------------------------------------------

    def add_route(
        self, method: str, path: str | Pattern[str], answer: Answer, *, name: str
    ) -> respx.Route:
        """Answer ``method`` requests to ``base_url + path`` (a string, or a compiled
        regular expression matched against the whole path) with ``answer``."""
        if isinstance(path, str):
            route = self.router.route(method=method, url=f"{self.base_url}{path}", name=name)
        else:
            pattern = f"{re.escape(self.base_url)}{path.pattern}(?:[?].*)?$"
            route = self.router.route(method=method, url__regex=pattern, name=name)
        route.side_effect = lambda request: self._handle(request, answer)
        return route

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
            check_script(item)
        with self._lock:
            self._queue.extend(items)

    def respond_with(self, answer: Script | Responder | None) -> None:
        """Answer every request (once the queue is empty) with a fixed reply or fault, or
        with ``answer(request)``; ``None`` restores the default reply."""
        if answer is None or (callable(answer) and not isinstance(answer, (Reply, Fault))):
            self._responder = answer
        else:
            fixed = check_script(answer)
            self._responder = lambda _request: fixed

    def inject(self, fault: Fault, *, rate: float) -> None:
        """Answer a random share ``rate`` of requests with ``fault`` (seeded by ``seed``,
        so the same requests fail on every run). Scripted queue entries come first."""
        check_script(fault)
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
    def usage(self) -> Usage:
        """The tokens charged since the start (or :meth:`reset`), by kind, over every
        request: a streamed reply the client stopped reading counts what was sent."""
        with self._log.lock:
            return self._log.usage

    @property
    def usd(self) -> float:
        """What :attr:`usage` cost, in dollars (rounded to 6 decimals), at the prices in
        use when each request was charged (``perfkit.price_table()``)."""
        with self._log.lock:
            return usd(self._log.femto)

    def charge(self, model: str, usage: Usage, *, batch: bool = False) -> None:
        """Charge ``usage`` on ``model`` (at the batch discount if ``batch``): this
        simulator's totals and the process-wide meter (``perfkit.METER``). A provider's
        simulator calls it as it delivers each reply."""
        self._log.charge(model, usage, batch=batch)

    @property
    def last_request(self) -> SimRequest:
        with self._log.lock:
            if not self._log.requests:
                if self._log.count:
                    raise SimulatorError("the simulator logs no request (max_logged=0)")
                raise SimulatorError("the simulator has received no request yet")
            return self._log.requests[-1]

    # -- activation ------------------------------------------------------------------

    def start(self) -> Self:
        """Intercept HTTP requests until :meth:`stop` (prefer ``with simulator:``)."""
        if self._active is not None:
            raise SimulatorError("this simulator is already active")
        with ExitStack() as stack:
            REGISTRY.activate(self.router, owns=self._loopback_origin())
            stack.callback(self._deactivate)
            stack.enter_context(sdks_on_clock(self._sdk_modules(), self.clock, self.seed))
            self._active = stack.pop_all()
        return self

    def _loopback_origin(self) -> tuple[Origin, str] | None:
        """On a loopback ``base_url`` (a local OpenAI-compatible server's, such as
        ``http://localhost:8000/v1``), its origin: the simulator owns that host and port,
        so a request there that no route serves is an :class:`UnmatchedRequestError` too.
        Unrouted loopback requests otherwise pass through to the network, where a client
        whose base_url lacks (or adds) a path prefix would reach whatever really listens
        there."""
        url = httpx.URL(self.base_url)
        return (origin_of(url), type(self).__name__) if is_loopback(url.host) else None

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

    def _sdk_modules(self) -> list[ModuleType]:
        import importlib

        modules = []
        for name in self.sdk_base_clients:
            try:
                modules.append(importlib.import_module(name))
            except ImportError:  # that SDK is not installed: nothing to put on the clock
                continue
        return modules

    @property
    def active(self) -> bool:
        return self._active is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop(check=exc is None)

    # -- answering -------------------------------------------------------------------

    def _handle(self, request: httpx.Request, answer: Answer) -> httpx.Response:
        handshake, done = self._connections.checkout(request.extensions.get(POOL_KEY))
        logged = self._record(request, handshake)
        try:
            response = answer(logged, request)
        except BaseException:
            done(False)
            raise
        if DELIVERY_KEY not in response.extensions:  # built by the route itself: at once
            response.extensions[DELIVERY_KEY] = self._delivered_at_once(logged, response)
        return after_handshake(response, handshake, done)

    def _delivered_at_once(self, logged: SimRequest, response: httpx.Response) -> Delivery:
        """The delivery of a response a route made without one (a plain ``httpx.Response``):
        no modeled wait, and logged as sent with its status."""
        if logged.status is None:
            logged.status = response.status_code

        def on_sent() -> None:
            logged.completed_at = self.clock.now()
            logged.completed = True

        return Delivery(self.clock, 0.0, on_sent=on_sent)

    def _record(self, request: httpx.Request, handshake: float) -> SimRequest:
        problem: str | None = None
        body: dict[str, Any] = {}
        if request.content:
            try:
                parsed = json.loads(request.content)
            except ValueError as error:
                problem = f"invalid JSON body: {error}"
            else:
                if isinstance(parsed, dict):
                    body = parsed
                else:
                    problem = "the body must be a JSON object"
        with self._log.lock:
            logged = SimRequest(
                index=self._log.count,
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                body=body,
                sent_at=round(self.clock.now() + handshake, 6),
                handshake=handshake,
                body_error=problem,
            )
            self._log.requests.append(logged)
            self._log.count += 1
        return logged

    def next_answer(self, logged: SimRequest) -> Script:
        """The scripted answer to ``logged``: the queue first, then injected faults, then
        the responder, else :meth:`default_reply`."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            for fault, rate in self._injected:
                if self._fault_rng.random() < rate:
                    return fault
        if self._responder is not None:
            return check_script(self._responder(logged))
        return self.default_reply(logged.body)

    def default_reply(self, body: dict[str, Any]) -> Reply:
        """The reply when nothing is scripted."""
        return Reply.text("Simulated answer.")

    def error_body(
        self, status: int, error_type: str, message: str, logged: SimRequest | None
    ) -> Any:
        """The provider's JSON error body."""
        return {"error": {"type": error_type, "message": message}}

    def base_headers(self, logged: SimRequest | None) -> dict[str, str]:
        """Headers of every response."""
        return {}

    def fault_response(
        self, fault: Fault, logged: SimRequest, request: httpx.Request
    ) -> httpx.Response:
        """``fault`` delivered: a transport failure, or an error status after ``connect``.
        A ``stream_error`` fault is the provider's to render (a subclass overrides this)."""
        connect = to_microseconds(self._latency.connect.sample())
        if fault.kind == "connection_error":
            error = httpx.ConnectError(fault.message, request=request)
            return self.failing(connect, error)
        if fault.kind == "timeout":
            wait = fault.after if fault.after is not None else _read_timeout(request)
            return self.failing(connect + wait, httpx.ReadTimeout(fault.message, request=request))
        if fault.kind == "stream_error":  # not streamed: the error arrives as a status
            fault = (
                Fault.overloaded()
                if fault.error_type == "overloaded_error"
                else Fault.server_error()
            )
        logged.status = fault.status
        return self.error_response(
            fault.status,
            fault.error_type,
            fault.message,
            logged,
            headers=fault.headers,
            delay=connect,
        )

    def error_response(
        self,
        status: int,
        error_type: str,
        message: str,
        logged: SimRequest | None = None,
        *,
        headers: dict[str, str] | Any = None,
        delay: float = 0.0,
    ) -> httpx.Response:
        content = json.dumps(self.error_body(status, error_type, message, logged)).encode()
        return self.json_response(status, content, logged, delay=delay, headers=headers)

    def json_response(
        self,
        status: int,
        content: bytes,
        logged: SimRequest | None,
        *,
        delay: float,
        headers: dict[str, str] | Any = None,
    ) -> httpx.Response:
        """A JSON response, delivered ``delay`` modeled seconds after the request arrived."""

        def on_sent() -> None:
            if logged is not None:
                logged.completed_at = self.clock.now()
                logged.completed = True

        all_headers = {
            **self.base_headers(logged),
            "content-type": "application/json",
            **dict(headers or {}),
        }
        return httpx.Response(
            status,
            headers=all_headers,
            content=content,
            extensions={DELIVERY_KEY: Delivery(self.clock, delay, on_sent=on_sent)},
        )

    def event_stream_response(
        self,
        logged: SimRequest,
        delay: float,
        chunks: list[tuple[float, bytes]],
        *,
        tokens: list[int],
        first_text: int | None,
        headers: dict[str, str] | None = None,
        on_delivered: Callable[[int], None] | None = None,
    ) -> httpx.Response:
        """A streamed 200 (server-sent events): ``chunks`` of (wait, bytes) delivered on
        the clock, the first ``delay`` modeled seconds after the request arrived.
        ``tokens[i]`` is the output tokens sent once chunk ``i`` is (a running total) and
        ``first_text`` the chunk of the first text token, if any. The log gets the times
        of the first token and first text token, and the tokens the client received (it
        may stop reading early); ``on_delivered(output_tokens)`` is told what was sent once
        the stream closes (the provider charges it)."""
        received = 0

        def on_chunk(index: int) -> None:
            nonlocal received
            received = tokens[index]
            if received and logged.first_token_at is None:
                logged.first_token_at = self.clock.now()
            if index == first_text and logged.first_text_at is None:
                logged.first_text_at = self.clock.now()

        def on_close(finished: bool) -> None:
            logged.completed_at = self.clock.now()
            logged.completed = finished
            logged.output_tokens = received
            self._log.add_output(received)
            if on_delivered is not None:
                on_delivered(received)

        body = ScheduledStream(chunks, self.clock, on_chunk=on_chunk, on_close=on_close)
        return httpx.Response(
            200,
            headers={
                **self.base_headers(logged),
                "content-type": "text/event-stream; charset=utf-8",
                **(headers or {}),
            },
            stream=body,
            extensions={DELIVERY_KEY: Delivery(self.clock, delay)},
        )

    def failing(self, delay: float, error: httpx.TransportError) -> httpx.Response:
        """No response: ``error`` is raised in the client ``delay`` modeled seconds later."""
        return httpx.Response(
            599, extensions={DELIVERY_KEY: Delivery(self.clock, delay, error=error)}
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={redact_url(self.base_url)!r}, "
            f"latency={self._latency!r}, "
            f"clock={self.clock!r}, requests={self.call_count})"
        )


def check_script(item: object) -> Script:
    """``item`` if it is a :class:`Reply` or a :class:`Fault`, else a ``TypeError``."""
    if isinstance(item, (Reply, Fault)):
        return item
    raise TypeError(f"a scripted answer must be a Reply or a Fault, got {item!r}")


def _check_base_url(base_url: str) -> str:
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    return str(url).rstrip("/")


def _read_timeout(request: httpx.Request) -> float:
    timeout = request.extensions.get("timeout") or {}
    read = timeout.get("read") if isinstance(timeout, dict) else None
    return float(read) if isinstance(read, (int, float)) else DEFAULT_TIMEOUT_SECONDS
