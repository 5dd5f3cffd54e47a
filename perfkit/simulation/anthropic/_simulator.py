"""The simulated Anthropic Messages API, on the simulated-server core."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

import httpx
import respx

from perfkit._clock import Clock
from perfkit.simulation._latency import LatencyModel, LLMLatency
from perfkit.simulation.anthropic._models import MODELS, resolve
from perfkit.simulation.anthropic._prompt_cache import PromptCache
from perfkit.simulation.anthropic._validation import Refusal, check_messages_request
from perfkit.simulation.anthropic._wire import (
    RenderedMessage,
    error_body,
    prompt_block_tokens,
    render,
    stream_chunks,
)
from perfkit.simulation.server import (
    DEFAULT_MAX_LOGGED,
    DELIVERY_KEY,
    Delivery,
    Fault,
    Reply,
    ScheduledStream,
    SimRequest,
    SimulatedServer,
    tokenize,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicSimulator(SimulatedServer):
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

    Requests are checked as the real API checks them (``strict=True``, the default):
    credentials and ``anthropic-version``, every field, and the conversation (each
    ``tool_result`` answers a ``tool_use`` of the turn before, ...), refused with the API's
    status, error type and message before any scripted answer or fault is used up.
    ``strict=False`` keeps only the old minimal checks (``model``, ``max_tokens`` and
    ``messages`` present), for clients that cannot send what the real API asks.

    The log (:attr:`requests`, and respx's call lists of :attr:`router`) keeps the
    newest ``max_logged`` requests, or every one with ``max_logged=None``;
    :attr:`call_count` and :attr:`output_tokens` count them all.
    """

    default_base_url = DEFAULT_BASE_URL
    sdk_base_clients = ("anthropic._base_client",)

    def __init__(
        self,
        *,
        latency: LLMLatency | LatencyModel | float = 0.0,
        clock: Clock | None = None,
        base_url: str = DEFAULT_BASE_URL,
        seed: int = 0,
        handshake: LatencyModel | float = 0.0,
        max_logged: int | None = DEFAULT_MAX_LOGGED,
        strict: bool = True,
    ) -> None:
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        self.strict = strict
        """Whether requests are validated as the real API validates them."""
        super().__init__(
            latency=latency,
            clock=clock,
            base_url=base_url,
            seed=seed,
            handshake=handshake,
            max_logged=max_logged,
        )
        self._prompt_cache = PromptCache()
        self.messages_route: respx.Route = self.add_route(
            "POST", "/v1/messages", self._answer_messages, name="messages"
        )

    # -- the Messages API ------------------------------------------------------------

    def _answer_messages(self, logged: SimRequest, request: httpx.Request) -> httpx.Response:
        refusal = self._refusal(logged, request)
        if refusal is not None:
            logged.status = refusal.status
            return self.error_response(refusal.status, refusal.error_type, refusal.message, logged)
        answer = self.next_answer(logged)
        logged.answer = answer
        if isinstance(answer, Fault):
            return self.fault_response(answer, logged, request)
        return self._reply_response(answer, logged)

    def _refusal(self, logged: SimRequest, request: httpx.Request) -> Refusal | None:
        """The error a request gets instead of an answer, checked before the scripts."""
        if logged.body_error is not None:
            return Refusal(400, "invalid_request_error", logged.body_error)
        if not self.strict:
            problem = _validate(logged.body)
            return None if problem is None else Refusal(400, "invalid_request_error", problem)
        return check_messages_request(
            logged.body,
            request.headers,
            beta=_beta(request),
            max_output_tokens=_output_limit(logged.body.get("model")),
        )

    def default_reply(self, body: dict[str, Any]) -> Reply:
        return default_reply(body)

    def error_body(
        self, status: int, error_type: str, message: str, logged: SimRequest | None
    ) -> Any:
        return error_body(error_type, message)

    def base_headers(self, logged: SimRequest | None) -> dict[str, str]:
        index = logged.index if logged is not None else 0
        return {"request-id": f"req_sim_{index:06d}"}

    def reset(self) -> None:
        """Forget scripted answers, injected faults, the request log and the prompt cache."""
        super().reset()
        self._prompt_cache.clear()

    def _render(self, reply: Reply, logged: SimRequest) -> RenderedMessage:
        """``reply`` rendered for ``logged``, its input tokens accounted by the prompt cache
        at the time the request is answered."""
        usage = self._prompt_cache.account(
            logged.body, count=prompt_block_tokens, now=self.clock.now()
        )
        return render(reply, logged.body, message_id=f"msg_sim_{logged.index:06d}", cache=usage)

    def _reply_response(self, reply: Reply, logged: SimRequest) -> httpx.Response:
        message = self._render(reply, logged)
        plan = (reply.latency or self._latency).plan(message.output_tokens)
        logged.status = 200
        if not logged.stream:
            logged.output_tokens = message.output_tokens
            self._log.add_output(message.output_tokens)
            return self.json_response(200, _dumps(message.to_json()), logged, delay=plan.total)
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
        headers = {**self.base_headers(logged), "content-type": "text/event-stream; charset=utf-8"}
        headers["cache-control"] = "no-cache"
        return httpx.Response(
            200,
            headers=headers,
            stream=stream,
            extensions={DELIVERY_KEY: Delivery(self.clock, delay)},
        )

    def fault_response(
        self, fault: Fault, logged: SimRequest, request: httpx.Request
    ) -> httpx.Response:
        if fault.kind == "stream_error" and logged.stream:
            reply = fault.reply or default_reply(logged.body)
            message = self._render(reply, logged)
            sent = min(fault.after_tokens, message.output_tokens)
            plan = (reply.latency or self._latency).plan(sent + 1)
            chunks = stream_chunks(
                message, plan, error_after_tokens=sent, error=(fault.error_type, fault.message)
            )
            logged.status = 200
            return self._stream_response(logged, plan.connect, chunks)
        return super().fault_response(fault, logged, request)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _beta(request: httpx.Request) -> bool:
    return bool(request.url.params.get("beta") == "true")


_LARGEST_OUTPUT = max(model.max_output_tokens for model in MODELS)


def _output_limit(model: object) -> int:
    """The model's output limit; for a model the catalog does not know, the largest of any
    model's (so ``max_tokens=10**9`` is refused whatever the model is called)."""
    found = resolve(model) if isinstance(model, str) else None
    return found.max_output_tokens if found is not None else _LARGEST_OUTPUT


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
