"""The simulated OpenAI Chat Completions API, on the simulated-server core."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import respx

from perfkit._clock import Clock
from perfkit._errors import SimulatorError
from perfkit._pricing import Usage
from perfkit.simulation._latency import LatencyModel, LatencyPlan, LLMLatency
from perfkit.simulation.openai._validation import RequestError, validate
from perfkit.simulation.openai._wire import (
    RenderedCompletion,
    RenderedStream,
    error_body,
    render,
    stream_chunks,
    user_texts,
)
from perfkit.simulation.server import (
    DEFAULT_MAX_LOGGED,
    Fault,
    Reply,
    SimRequest,
    SimulatedServer,
    TextBlock,
    ToolUseBlock,
    tokenize,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""The openai SDK's default base URL (``OPENAI_BASE_URL`` unset)."""


def sdk_default_base_url() -> str:
    """Where an openai client built without ``base_url`` sends its requests:
    ``OPENAI_BASE_URL`` if set, else :data:`DEFAULT_BASE_URL` (the SDK's
    ``lib/_client_auth.py``). The simulator's default follows it, so that such a client
    is answered, not sent (for a loopback URL such as a local vLLM's) to the network."""
    return os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL


VIRTUAL_EPOCH = 1_767_225_600
"""``created`` on the virtual clock counts from here (2026-01-01T00:00:00Z), so that the
same run gives the same bodies; on the real clock it is the Unix time."""
API_VERSION = "2020-10-01"
"""The ``openai-version`` header the API sends."""

UNPARSABLE_BODY = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"

GENEROUS_LIMITS = {"requests": 10_000, "tokens": 30_000_000}
"""Per-minute limits every response reports: generous, as for a high usage tier."""
RATE_LIMIT_HEADERS = {
    f"x-ratelimit-{field}-{kind}": value
    for field in ("limit", "remaining", "reset")
    for kind, limit in GENEROUS_LIMITS.items()
    for value in [str(limit) if field != "reset" else "0s"]
}
"""The API's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers, in the
order a recorded response has them (openai-php/client's test fixture of a response's
headers; resets as durations, ``20ms``): untouched (remaining = limit) and
reset at once, since the simulator limits nothing unless a fault says so."""

FAULT_TYPES: dict[str, tuple[str, str | None]] = {
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "overloaded_error": ("server_error", None),
    "api_error": ("server_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "permission_error": ("invalid_request_error", None),
    "not_found_error": ("invalid_request_error", None),
    "request_too_large": ("invalid_request_error", None),
}
"""A :class:`Fault`'s error type (the core's names) -> OpenAI's ``type`` and ``code``: a
429 says ``"type": "requests", "code": "rate_limit_exceeded"``, a 5xx ``server_error``,
a wrong key ``invalid_api_key``. Other types are sent as given."""


class OpenAISimulator(SimulatedServer):
    """A simulated OpenAI Chat Completions API for tests and benchmarks.

    It answers ``POST {base_url}/chat/completions`` (``base_url`` by default the
    openai SDK's: ``OPENAI_BASE_URL`` if set, else ``https://api.openai.com/v1``) for the
    openai SDK (sync and async, streamed or not, with tool calls) and any httpx client,
    after modeled latency on ``clock``: the same scripts, faults, latency models, modeled
    connections and request log as :class:`~perfkit.simulation.AnthropicSimulator`.

    >>> import openai
    >>> from perfkit import VirtualClock
    >>> clock = VirtualClock()
    >>> with OpenAISimulator(latency=LLMLatency(ttft=0.3), clock=clock) as sim:
    ...     sim.enqueue(Reply.text("Hello!"))
    ...     client = openai.OpenAI(api_key="test")
    ...     start = clock.now()
    ...     completion = client.chat.completions.create(
    ...         model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    ...     client.close()
    >>> completion.choices[0].message.content, clock.elapsed(start), sim.call_count
    ('Hello!', 0.3, 1)

    A :class:`Reply`'s text becomes the message's ``content`` and its tool-use blocks its
    ``tool_calls``. Only ``n=1`` is simulated (a request for more choices gets a 400 that
    says so); streamed chunks carry no ``obfuscation`` field, as with
    ``stream_options.include_obfuscation`` false.

    Requests are checked as the real API checks them (``strict=True``, the default): a
    refused request gets the API's 400 before any scripted answer is used up.
    ``strict=False`` accepts whatever the simulator can answer.
    """

    default_base_url = DEFAULT_BASE_URL
    sdk_base_clients = ("openai._base_client",)

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
        super().__init__(
            latency=latency,
            clock=clock,
            base_url=base_url if base_url is not None else sdk_default_base_url(),
            seed=seed,
            handshake=handshake,
            max_logged=max_logged,
            strict=strict,
        )
        self.completions_route: respx.Route = self.add_route(
            "POST", "/chat/completions", self._answer_completions, name="chat_completions"
        )

    # -- the Chat Completions API ----------------------------------------------------

    def _answer_completions(self, logged: SimRequest, request: httpx.Request) -> httpx.Response:
        problem = (
            RequestError(UNPARSABLE_BODY)
            if logged.body_error
            else validate(logged.body, strict=self.strict)
        )
        if problem is not None:
            logged.status = problem.status
            body = error_body(problem.message, problem.type, param=problem.param, code=problem.code)
            return self.json_response(problem.status, _dumps(body), logged, delay=0.0)
        answer = self.next_answer(logged)
        logged.answer = answer
        if isinstance(answer, Fault):
            return self.fault_response(answer, logged, request)
        return self._reply_response(answer, logged)

    def default_reply(self, body: dict[str, Any]) -> Reply:
        return default_reply(body)

    def error_body(
        self, status: int, error_type: str, message: str, logged: SimRequest | None
    ) -> Any:
        openai_type, code = FAULT_TYPES.get(error_type, (error_type, None))
        return error_body(message, openai_type, code=code)

    def base_headers(self, logged: SimRequest | None) -> dict[str, str]:
        index = logged.index if logged is not None else 0
        return {
            "x-request-id": f"req_sim{index:06d}",
            "openai-version": API_VERSION,
            **RATE_LIMIT_HEADERS,
        }

    def _render(self, reply: Reply, logged: SimRequest) -> RenderedCompletion:
        return render(
            reply,
            logged.body,
            completion_id=f"chatcmpl-sim{logged.index:06d}",
            created=self._created(),
        )

    def _plan(self, reply: Reply, completion: RenderedCompletion, tokens: int) -> LatencyPlan:
        """The latency of ``tokens`` output tokens after prefilling the whole prompt (the
        simulator keeps no prompt cache)."""
        latency = reply.latency or self._latency
        return latency.plan(tokens, input_tokens=completion.prompt_tokens)

    def _created(self) -> int:
        if self.clock.mode == "virtual":
            return VIRTUAL_EPOCH + int(self.clock.now())
        return int(time.time())

    def _reply_response(self, reply: Reply, logged: SimRequest) -> httpx.Response:
        _check_structured_output(reply, logged.body)
        _check_forced_tool_call(reply, logged.body)
        completion = self._render(reply, logged)
        plan = self._plan(reply, completion, completion.completion_tokens)
        logged.status = 200
        if not logged.stream:
            logged.output_tokens = completion.completion_tokens
            self._log.add_output(completion.completion_tokens)
            self.charge(completion.model, _usage(completion, completion.completion_tokens))
            processing = {"openai-processing-ms": str(round(plan.total * 1000))}
            return self.json_response(
                200, _dumps(completion.to_json()), logged, delay=plan.total, headers=processing
            )
        stream = stream_chunks(completion, plan, include_usage=_include_usage(logged.body))
        return self._stream_response(logged, plan.connect, stream, completion)

    def _stream_response(
        self,
        logged: SimRequest,
        delay: float,
        stream: RenderedStream,
        completion: RenderedCompletion,
    ) -> httpx.Response:
        return self.event_stream_response(
            logged,
            delay,
            stream.chunks,
            tokens=stream.tokens,
            first_text=stream.first_text,
            headers={"openai-processing-ms": str(round(delay * 1000))},
            # Charged as sent: a stream the client stops reading costs the output sent.
            on_delivered=lambda sent: self.charge(completion.model, _usage(completion, sent)),
        )

    def fault_response(
        self, fault: Fault, logged: SimRequest, request: httpx.Request
    ) -> httpx.Response:
        if fault.kind == "stream_error":
            if not logged.stream:  # not streamed: the error arrives as a 500
                return super().fault_response(
                    Fault.http_error(500, "api_error", SERVER_ERROR), logged, request
                )
            reply = fault.reply or default_reply(logged.body)
            completion = self._render(reply, logged)
            sent = min(fault.after_tokens, completion.completion_tokens)
            plan = self._plan(reply, completion, sent + 1)
            error = FAULT_TYPES.get(fault.error_type, (fault.error_type, None))[0]
            stream = stream_chunks(
                completion,
                plan,
                include_usage=_include_usage(logged.body),
                error_after_tokens=sent,
                error=(error, fault.message),
            )
            logged.status = 200
            return self._stream_response(logged, plan.connect, stream, completion)
        return super().fault_response(fault, logged, request)


def _usage(completion: RenderedCompletion, output_tokens: int) -> Usage:
    """What ``completion`` costs with ``output_tokens`` of it sent: its whole prompt as
    uncached input (the simulator keeps no prompt cache), priced from the price table's
    OpenAI rows (``gpt-4o``, ``gpt-4o-mini``) or its fallback row."""
    return Usage(input_tokens=completion.prompt_tokens, output_tokens=output_tokens)


def _check_structured_output(reply: Reply, body: dict[str, Any]) -> None:
    """Refuse to answer a structured-output request (``response_format`` of type
    ``json_schema``, what the SDK's ``chat.completions.parse(response_format=Model)``
    sends) with text that is not JSON: the API's answer follows the schema (the SDK's
    ``response_format`` docstring: Structured Outputs "ensures the model will match your
    supplied JSON schema"), and the SDK would fail parsing it far from the cause. The
    simulator does not invent a document from the schema: the test scripts one."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return
    text = "".join(block.text for block in reply.blocks if isinstance(block, TextBlock))
    if not text:
        return
    try:
        json.loads(text)
    except ValueError:
        schema = response_format.get("json_schema")
        name = schema.get("name") if isinstance(schema, dict) else None
        raise SimulatorError(
            f"the request asks for structured output (response_format json_schema "
            f"{name!r}), but the reply's text is not JSON: {text[:80]!r}. The API would "
            "answer with a JSON document that follows the schema: script one, e.g. "
            "sim.enqueue(Reply.text(json.dumps({...})))"
        ) from None


def _check_forced_tool_call(reply: Reply, body: dict[str, Any]) -> None:
    """Refuse to answer a request that forces a tool call (``tool_choice`` ``required``,
    or a named function) with a reply that makes none, or calls another function: the
    SDK's ``tool_choice`` docstring says "the model must call one or more tools" and a
    named function "forces the model to call that tool", so an agent tested against such
    an answer would be tested against something the API never sends."""
    choice = body.get("tool_choice")
    if choice == "required":
        wanted = None
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        wanted = choice["function"].get("name")
    else:
        return
    called = [block.name for block in reply.blocks if isinstance(block, ToolUseBlock)]
    if called and (wanted is None or all(name == wanted for name in called)):
        return
    forced = "a tool call" if wanted is None else f"a call of {wanted!r}"
    raise SimulatorError(
        f"the request forces {forced} (tool_choice {choice!r}), but the reply calls "
        f"{', '.join(called) or 'no tool'}. Script the call, e.g. "
        f"sim.enqueue(Reply.tool_use({(wanted or 'name')!r}, {{...}}))"
    )


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def default_reply(body: dict[str, Any]) -> Reply:
    """The reply when nothing is scripted: deterministic, and different per question."""
    question = next(iter(user_texts(body)), "")
    snippet = "".join(tokenize(question)[:24]).strip()
    return Reply.text(f"Simulated answer to: {snippet}" if snippet else "Simulated answer.")
