"""The agent as an HTTP service: an ASGI app (Starlette) with JSON and SSE chat endpoints,
Prometheus metrics and a health check.

=====================  ===============================================================
``POST /chat``         ``{"user_id", "message"}`` -> the reply as JSON
``POST /chat/stream``  the same request -> ``text/event-stream``: ``token`` events with
                       the text as it arrives, then ``done`` with the totals (or
                       ``error``)
``GET /metrics``       Prometheus text format
``GET /healthz``       ``{"status": "ok", ...}``
=====================  ===============================================================

Every mistake in a request is a 4xx with ``{"error": {"type", "message"}}``; a failure
upstream is a 502, 503 or 504 in the same shape, with a generic message and a request id
under which the log holds the detail, never an unexplained 500. A client that leaves
before its answer stops the agent's work and is counted 499. With tokens (see
:class:`~perfkit.service.BearerTokens`), every request but ``GET /healthz`` needs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import unicodedata
from collections import Counter
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Mapping,
)
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from perfkit._clock import Clock, RealClock
from perfkit._errors import PerfkitError
from perfkit.agents import MAX_MESSAGE_CHARS, Agent, AgentReply
from perfkit.service._auth import BearerTokens, RequireToken, conversation_id, principal_of
from perfkit.service._metrics import AgentMetrics, error_type

MAX_BODY_BYTES = 256 * 1024
MAX_USER_ID_CHARS = 256
CHAT_FIELDS = ("user_id", "message")

_STATUS_OF_ERROR = {
    "rate_limited": 503,
    "overloaded": 503,
    "timeout": 504,
    "connection": 502,
    "upstream_error": 502,
    "agent": 502,
    "internal": 500,
}
_ENDPOINTS = {"/chat": "chat", "/chat/stream": "stream"}
_CLIENT_CLOSED = 499  # nginx's status for a client that went away before the reply

_PUBLIC_MESSAGES = {
    "rate_limited": "the model API is rate limiting requests; try again later",
    "overloaded": "the model API is overloaded; try again later",
    "timeout": "the model API did not answer in time",
    "connection": "the service could not reach the model API",
    "upstream_error": "the model API failed to answer",
    "agent": "the agent could not complete the conversation",
    "internal": "the service failed unexpectedly",
}
"""What a client is told of a failure: upstream's own words (error bodies, addresses,
whatever a provider puts there) go to the service's log only, under the request id."""

logger = logging.getLogger("perfkit.service")

_T = TypeVar("_T")


class RequestError(PerfkitError):
    """A request the service refuses: its status, error type and a readable message (and,
    for a failure whose detail only the service's log holds, the id it is logged under)."""

    def __init__(
        self, status: int, kind: str, message: str, *, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class ChatRequest:
    user_id: str
    message: str


def create_app(
    agent: Agent,
    *,
    metrics: AgentMetrics | None = None,
    clock: Clock | None = None,
    info: Mapping[str, str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    lifespan: Any = None,
    tokens: BearerTokens | None = None,
) -> Starlette:
    """The service around ``agent``; the agent is closed when the app shuts down.

    ``info`` is shown by ``/healthz`` (agent and backend names, say); ``lifespan`` is an
    async context manager factory run around the app's life (e.g. starting a simulator).
    With ``tokens``, every request but ``GET /healthz`` needs one of them, and each
    principal has conversations of its own (one principal's ``user_id`` never reaches
    another's history).

    >>> from starlette.testclient import TestClient
    >>> from perfkit.agents import NaiveAgent
    >>> with TestClient(create_app(NaiveAgent())) as client:
    ...     client.post("/chat", content=b"{oops").json()["error"]["type"]
    'invalid_json'
    """
    service = _Service(
        agent,
        metrics if metrics is not None else AgentMetrics(agent),
        clock if clock is not None else RealClock(),
        max_body_bytes,
    )
    details = {"status": "ok", "agent": type(agent).__name__, **dict(info or {})}

    async def healthz(request: Request) -> Response:
        return JSONResponse(details)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan_of(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(agent.aclose)
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            yield

    app = Starlette(
        routes=[
            Route("/chat", service.chat, methods=["POST"]),
            Route("/chat/stream", service.chat_stream, methods=["POST"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: service.http_error},
        lifespan=lifespan_of,
        middleware=[]
        if tokens is None
        else [Middleware(RequireToken, tokens=tokens, on_refusal=service.unauthorized)],
    )
    # Slash redirection builds its Location from the client's Host header: an open
    # redirect (GET /metrics/ with Host: evil.example -> http://evil.example/metrics).
    app.router.redirect_slashes = False
    app.state.agent = agent
    app.state.metrics = service.metrics
    app.state.tokens = tokens
    return app


class _Service:
    def __init__(
        self, agent: Agent, metrics: AgentMetrics, clock: Clock, max_body_bytes: int
    ) -> None:
        self.agent = agent
        self.metrics = metrics
        self.clock = clock
        self.max_body_bytes = max_body_bytes

    async def chat(self, request: Request) -> Response:
        started = self.clock.now()
        with self.metrics.in_progress.labels("chat").track_inprogress():
            try:
                chat = await self._read(request)
                reply = await _unless_disconnected(
                    request.receive, self.agent.chat(_conversation(request, chat), chat.message)
                )
            except RequestError as refused:
                return self._refuse("chat", refused)
            except Exception as error:  # every failure is answered, and counted
                return self._refuse("chat", _upstream(error))
            elapsed = self.clock.elapsed(started)
            self._count_reply(reply)
            self.metrics.ttft_seconds.labels("chat").observe(elapsed)
            self.metrics.response_seconds.labels("chat").observe(elapsed)
            self.metrics.requests.labels("chat", "200").inc()
            return JSONResponse({"user_id": chat.user_id, **_reply_json(reply)})

    async def chat_stream(self, request: Request) -> Response:
        started = self.clock.now()
        try:
            chat = await self._read(request)
        except RequestError as refused:
            return self._refuse("stream", refused)
        except Exception as error:  # a bug of ours is a JSON 500 too, never a plain-text one
            return self._refuse("stream", _upstream(error))
        events = self.agent.chat_events(_conversation(request, chat), chat.message)
        in_progress = self.metrics.in_progress.labels("stream")
        in_progress.inc()
        try:
            # Wait for the first event before answering, so that a failure before any
            # text is a proper error status rather than a 200 with an error inside (and
            # stop waiting if the client leaves meanwhile).
            first = await _unless_disconnected(request.receive, _first(events))
        except Exception as error:
            in_progress.dec()
            await events.aclose()
            gone = error if isinstance(error, RequestError) else _upstream(error)
            return self._refuse("stream", gone)
        self.metrics.ttft_seconds.labels("stream").observe(self.clock.elapsed(started))
        outcome = {"status": str(_CLIENT_CLOSED)}

        async def finish() -> None:
            await events.aclose()
            in_progress.dec()
            self.metrics.requests.labels("stream", outcome["status"]).inc()
            self.metrics.response_seconds.labels("stream").observe(self.clock.elapsed(started))

        return _ChatStream(self._relay(first, events, outcome), finish)

    async def _relay(
        self,
        first: str | AgentReply,
        events: AsyncGenerator[str | AgentReply, None],
        outcome: dict[str, str],
    ) -> AsyncIterator[bytes]:
        step: str | AgentReply | None = first
        try:
            while step is not None:
                if isinstance(step, AgentReply):
                    self._count_reply(step)
                    outcome["status"] = "200"
                    yield _sse("done", _reply_json(step))
                else:
                    yield _sse("token", {"text": step})
                step = await anext(events, None)
        except Exception as error:
            refused = _upstream(error)
            self.metrics.count_error(refused.kind)
            outcome["status"] = str(refused.status)
            yield _sse("error", _error_json(refused))

    def unauthorized(self, path: str) -> None:
        self.metrics.count_error("unauthorized")
        if path in _ENDPOINTS:
            self.metrics.requests.labels(_ENDPOINTS[path], "401").inc()

    async def http_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(
            error.status_code, "invalid_request"
        )
        self.metrics.count_error(kind)
        return JSONResponse(
            _error_json(
                RequestError(
                    error.status_code, kind, f"{error.detail}: {request.method} {request.url.path}"
                )
            ),
            status_code=error.status_code,
            headers=error.headers,
        )

    async def _read(self, request: Request) -> ChatRequest:
        content_type = request.headers.get("content-type", "application/json")
        if content_type.split(";")[0].strip().lower() not in ("application/json", ""):
            raise RequestError(
                415,
                "unsupported_media_type",
                f"the body must be JSON (content-type application/json), got {content_type!r}",
            )
        declared = request.headers.get("content-length", "")
        if declared.isdecimal() and int(declared) > self.max_body_bytes:  # refused unread
            raise RequestError(
                413, "payload_too_large", f"the body is over {self.max_body_bytes} bytes"
            )
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > self.max_body_bytes:
                    raise RequestError(
                        413,
                        "payload_too_large",
                        f"the body is over {self.max_body_bytes} bytes",
                    )
        except ClientDisconnect:
            raise RequestError(
                _CLIENT_CLOSED, "client_closed", "the client went away while sending"
            ) from None
        return parse_chat_request(bytes(body))

    def _refuse(self, endpoint: str, refused: RequestError) -> Response:
        if refused.status != _CLIENT_CLOSED:  # a client that left is not our error
            self.metrics.count_error(refused.kind)
        self.metrics.requests.labels(endpoint, str(refused.status)).inc()
        return JSONResponse(_error_json(refused), status_code=refused.status)

    def _count_reply(self, reply: AgentReply) -> None:
        self.metrics.tokens.labels("input").inc(reply.input_tokens)
        self.metrics.tokens.labels("output").inc(reply.output_tokens)
        self.metrics.count_usage(reply)
        self.metrics.tool_calls.inc(reply.tool_calls)


class _ChatStream(StreamingResponse):
    """An SSE response whose bookkeeping (``finish``) runs once it ends, however it
    ends: finished, failed, or the client gone, even before the first byte."""

    def __init__(self, body: AsyncIterator[bytes], finish: Callable[[], Awaitable[None]]):
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        self._finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._finish()


def _conversation(request: Request, chat: ChatRequest) -> str:
    return conversation_id(principal_of(request.scope), chat.user_id)


async def _unless_disconnected(receive: Receive, work: Coroutine[Any, Any, _T]) -> _T:
    """What ``work`` returns, unless the client disconnects first: then ``work`` is
    cancelled (and with it the agent's upstream request) and the client counted gone."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (gone, task):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if task.cancelled():
        raise RequestError(_CLIENT_CLOSED, "client_closed", "the client went away")
    return task.result()


async def _first(events: AsyncGenerator[str | AgentReply, None]) -> str | AgentReply:
    return await anext(events)


async def _disconnect(receive: Receive) -> None:
    """Return once the client has disconnected (the body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def parse_chat_request(body: bytes) -> ChatRequest:
    """The chat request in ``body``, or a :class:`RequestError` saying what is wrong."""
    payload = _strict_json(body)
    if not isinstance(payload, dict):
        raise RequestError(
            422, "invalid_request", f"the body must be a JSON object, got {type(payload).__name__}"
        )
    missing = [name for name in CHAT_FIELDS if name not in payload]
    unknown = sorted(set(payload) - set(CHAT_FIELDS))
    if missing or unknown:
        problems = [f"missing field(s) {', '.join(missing)}"] if missing else []
        problems += [f"unknown field(s) {_some(unknown)}"] if unknown else []
        raise RequestError(
            422,
            "invalid_request",
            f"{'; '.join(problems)}; a chat request has exactly {', '.join(CHAT_FIELDS)}",
        )
    user_id, message = payload["user_id"], payload["message"]
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > MAX_USER_ID_CHARS:
        raise RequestError(
            422,
            "invalid_request",
            f"user_id must be a non-empty string of at most {MAX_USER_ID_CHARS} characters, "
            f"got {_shorten(user_id)}",
        )
    if any(unicodedata.category(char) == "Cc" for char in user_id):
        raise RequestError(
            422,
            "invalid_request",
            f"user_id must not hold control characters, got {_shorten(user_id)}",
        )
    if not isinstance(message, str) or not message.strip():
        raise RequestError(
            422, "invalid_request", f"message must be a non-empty string, got {_shorten(message)}"
        )
    if len(message) > MAX_MESSAGE_CHARS:
        raise RequestError(
            413,
            "payload_too_large",
            f"message is {len(message)} characters; at most {MAX_MESSAGE_CHARS} are allowed",
        )
    return ChatRequest(user_id, message)


def _strict_json(body: bytes) -> Any:
    """``body`` parsed as strict JSON (RFC 8259): no NaN or Infinity, no number that
    overflows a float, no duplicate key, no lone surrogate, nesting the parser can hold."""
    try:
        payload = json.loads(
            body,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
        # A lone surrogate ("\\ud800") parses, then fails whoever encodes it as UTF-8.
        json.dumps(payload, ensure_ascii=False).encode()
    except RecursionError:
        raise RequestError(
            400, "invalid_json", "the body is not valid JSON: it is nested too deeply"
        ) from None
    except UnicodeEncodeError as error:
        surrogate = error.object[error.start : error.end]
        raise RequestError(
            400,
            "invalid_json",
            f"the body is not valid JSON: it holds a lone surrogate {surrogate!r}, which is "
            "not a Unicode character",
        ) from None
    except ValueError as error:
        raise RequestError(400, "invalid_json", f"the body is not valid JSON: {error}") from None
    return payload


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {_shorten(text)} is out of range")
    return number


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    payload = dict(pairs)
    if len(payload) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        duplicate = next(key for key, count in counts.items() if count > 1)
        raise ValueError(f"duplicate key {_shorten(duplicate)}")
    return payload


def _some(names: list[str], shown: int = 8) -> str:
    listed = ", ".join(name if len(name) <= 40 else f"{name[:37]}..." for name in names[:shown])
    return listed if len(names) <= shown else f"{listed}, and {len(names) - shown} more"


def _upstream(error: BaseException) -> RequestError:
    """The sanitized answer to a failed chat; the detail is logged under its request id."""
    kind = error_type(error)
    request_id = secrets.token_hex(8)
    if kind == "internal":
        logger.error("request %s failed unexpectedly", request_id, exc_info=error)
    else:
        logger.warning(
            "request %s failed (%s): %s: %r", request_id, kind, type(error).__name__, str(error)
        )
    return RequestError(_STATUS_OF_ERROR[kind], kind, _PUBLIC_MESSAGES[kind], request_id=request_id)


def _reply_json(reply: AgentReply) -> dict[str, Any]:
    return {
        "reply": reply.text,
        "turns": reply.turns,
        "tool_calls": reply.tool_calls,
        "stop_reason": reply.stop_reason,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _error_json(error: RequestError) -> dict[str, Any]:
    detail = {"type": error.kind, "message": error.message}
    if error.request_id is not None:
        detail["request_id"] = error.request_id
    return {"error": detail}


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _shorten(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
