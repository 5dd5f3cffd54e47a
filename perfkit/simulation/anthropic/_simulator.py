"""The simulated Anthropic Messages API, on the simulated-server core."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any
from urllib.parse import unquote

import httpx
import respx

from perfkit._clock import Clock
from perfkit._pricing import Usage
from perfkit.simulation._latency import LatencyModel, LatencyPlan, LLMLatency, to_microseconds
from perfkit.simulation.anthropic._batches import (
    DEFAULT_LIMIT,
    DEFAULT_ORIGIN,
    Answer,
    BatchStore,
    Refused,
    check_limit,
    check_requests,
    check_size,
    page_body,
    paginate,
)
from perfkit.simulation.anthropic._models import MODELS, model_id, resolve
from perfkit.simulation.anthropic._output_format import (
    output_format_problem,
    output_schema,
    schema_instance,
)
from perfkit.simulation.anthropic._prompt_cache import CacheUsage, PromptCache
from perfkit.simulation.anthropic._rate_limits import (
    Exceeded,
    RateLimits,
    RateLimitState,
    check_rate_limits,
)
from perfkit.simulation.anthropic._validation import (
    Refusal,
    check_count_tokens_request,
    check_headers,
    check_messages_request,
)
from perfkit.simulation.anthropic._wire import (
    RateLimit,
    RenderedMessage,
    count_input_tokens,
    error_body,
    prompt_block_tokens,
    rate_limit_headers,
    render,
    should_retry,
    stream_chunks,
    thinking_budget,
    tokens_in,
    unlimited,
)
from perfkit.simulation.server import (
    DEFAULT_MAX_LOGGED,
    DELIVERY_KEY,
    Fault,
    Reply,
    SimRequest,
    SimulatedServer,
    TextBlock,
    ThinkingBlock,
    tokenize,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"

Handler = Callable[[SimRequest, httpx.Request], httpx.Response]


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

    ``rate_limits`` (a :class:`RateLimits`) enforces an organization's limits as the API
    does, per model: past one, a request gets 429 ``rate_limit_error`` with ``retry-after``
    before any scripted answer or fault is used up; every response reports what is left in
    its ``anthropic-ratelimit-*`` headers. None (the default) limits nothing.

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
        rate_limits: RateLimits | None = None,
    ) -> None:
        limits = check_rate_limits(rate_limits)
        super().__init__(
            latency=latency,
            clock=clock,
            base_url=base_url,
            seed=seed,
            handshake=handshake,
            max_logged=max_logged,
            strict=strict,
        )
        self._prompt_cache = PromptCache()
        self._rate_limits = None if limits is None else RateLimitState(limits)
        self._estimates: dict[int, tuple[str, int]] = {}
        """Admitted requests' output estimates (max_tokens) by log index, until settled."""
        self._open_streams: dict[int, tuple[str, int, int]] = {}
        """Settled streams' model, estimate and give-back key by log index, until closed:
        a stream the client closes early ends then."""
        self.messages_route: respx.Route = self.add_route(
            "POST", "/v1/messages", self._answer_messages, name="messages"
        )
        self.batches = BatchStore(
            self.clock,
            base_url=self.base_url,
            origin=_origin(self.clock),
            on_output=self._log.add_output,
            on_charge=lambda model, usage: self.charge(model, usage, batch=True),
        )
        """The message batches created so far (``batches.concurrency`` sets how many requests
        of a batch are processed at once)."""
        self._add_endpoints()

    # -- the Messages API ------------------------------------------------------------

    def _answer_messages(
        self,
        logged: SimRequest,
        request: httpx.Request,
        *,
        count_output: bool = True,
        limited: bool = True,
    ) -> httpx.Response:
        refusal = self._refusal(logged, request)
        if refusal is not None:
            logged.status = refusal.status
            return self.error_response(refusal.status, refusal.error_type, refusal.message, logged)
        exceeded = self._admit(logged) if limited else None
        if exceeded is not None:
            logged.status = 429
            retry = {"retry-after": str(exceeded.retry_after)}
            return self.error_response(
                429, "rate_limit_error", exceeded.message, logged, headers=retry
            )
        answer = self.next_answer(logged)
        logged.answer = answer
        if isinstance(answer, Fault):
            self._settle(logged, used=0, after=0.0)  # the stream_error fault settles its own
            return self.fault_response(answer, logged, request)
        return self._reply_response(answer, logged, count_output=count_output)

    def _refusal(self, logged: SimRequest, request: httpx.Request) -> Refusal | None:
        """The error a request gets instead of an answer, checked before the scripts."""
        if logged.body_error is not None:
            return Refusal(400, "invalid_request_error", logged.body_error)
        if not self.strict:
            problem = _validate(logged.body)
        else:
            refusal = check_messages_request(
                logged.body,
                request.headers,
                beta=_beta(request),
                max_output_tokens=_output_limit(logged.body.get("model")),
            )
            if refusal is not None:
                return refusal
            problem = None
        # An output schema the API does not support, or one no reply could satisfy.
        problem = problem or output_format_problem(logged.body, strict=self.strict)
        return None if problem is None else Refusal(400, "invalid_request_error", problem)

    def default_reply(self, body: dict[str, Any]) -> Reply:
        return default_reply(body)

    def error_body(
        self, status: int, error_type: str, message: str, logged: SimRequest | None
    ) -> Any:
        return error_body(error_type, message, request_id=_request_id(logged))

    def base_headers(self, logged: SimRequest | None) -> dict[str, str]:
        return {"request-id": _request_id(logged), **rate_limit_headers(self.rate_limits(logged))}

    def rate_limits(self, logged: SimRequest | None) -> dict[str, RateLimit]:
        """The rate limits every response reports in its ``anthropic-ratelimit-*`` headers:
        with ``rate_limits`` set, what the request's model has left now (after this
        request, on a 200); limits not set (and requests naming no model) report generous
        ones, untouched, reset now on the clock."""
        now = self.clock.now()
        found = unlimited(_origin(self.clock) + timedelta(seconds=now))
        model = logged.body.get("model") if logged is not None else None
        if self._rate_limits is not None and isinstance(model, str):
            found.update(self._rate_limits.report(model, now, _origin(self.clock)))
        return found

    def _admit(self, logged: SimRequest) -> Exceeded | None:
        """Count ``logged`` against its model's limits (if set): one request, its uncached
        input and cache writes (what the prompt cache would account now; cache reads do
        not count) and ``max_tokens`` of output, adjusted when it ends. None: admitted."""
        if self._rate_limits is None:
            return None
        model, now = str(logged.body["model"]), self.clock.now()
        usage = self._prompt_cache.peek(logged.body, count=prompt_block_tokens, now=now)
        estimate = int(logged.body["max_tokens"])
        exceeded = self._rate_limits.admit(
            model,
            input_tokens=usage.input_tokens + usage.cache_creation_input_tokens,
            output_tokens=estimate,
            now=now,
        )
        if exceeded is None:
            self._estimates[logged.index] = (model, estimate)
        return exceeded

    def _settle(self, logged: SimRequest, *, used: int, after: float) -> None:
        """An admitted request's output estimate replaced by the ``used`` output tokens,
        ``after`` seconds from now (when it ends)."""
        found = self._estimates.pop(logged.index, None)
        if found is not None and self._rate_limits is not None:
            model, estimate = found
            key = self._rate_limits.settle(
                model, estimated=estimate, used=used, at=self.clock.now() + after
            )
            if key is not None and logged.stream:
                self._open_streams[logged.index] = (model, estimate, key)

    def _stream_closed(self, logged: SimRequest, sent: int) -> None:
        """A settled stream closed having sent ``sent`` output tokens: if before its
        planned end (the client stopped reading), the request ends now, using what it
        sent."""
        found = self._open_streams.pop(logged.index, None)
        if found is not None and self._rate_limits is not None:
            model, estimate, key = found
            self._rate_limits.end_early(
                model, key, estimated=estimate, used=sent, at=self.clock.now()
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
        """An error status with ``x-should-retry`` as the API sends it (a fault's own
        headers win)."""
        retry = {"x-should-retry": "true" if should_retry(status) else "false"}
        return super().error_response(
            status,
            error_type,
            message,
            logged,
            headers={**retry, **dict(headers or {})},
            delay=delay,
        )

    def reset(self) -> None:
        """Forget scripted answers, injected faults, the request log, the prompt cache,
        the message batches and what the rate limits have counted (every bucket full)."""
        super().reset()
        self._prompt_cache.clear()
        self.batches.clear()
        self._estimates.clear()
        self._open_streams.clear()
        if self._rate_limits is not None:
            self._rate_limits.clear()

    def _render(
        self, reply: Reply, logged: SimRequest, tokens: Callable[[int], int] = lambda n: n
    ) -> tuple[RenderedMessage, LatencyPlan]:
        """``reply`` rendered for ``logged`` with its latency plan for ``tokens(output
        tokens)`` tokens; its input tokens accounted by the prompt cache at the time the
        request is answered, then planned: the uncached input (a reply's scripted
        ``input_tokens``, else the cache's rest) and the cache write are prefilled, the
        cache read is read. What it writes is readable once its first token is out."""
        message = render(
            reply,
            logged.body,
            message_id=f"msg_sim_{logged.index:06d}",
            model=model_id(str(logged.body.get("model", "claude-simulated"))),
            cache=_UNACCOUNTED,
        )
        latency = reply.latency or self._latency
        scripted = reply.input_tokens
        plans: list[LatencyPlan] = []

        def first_token(usage: CacheUsage) -> float:  # called once, by the cache
            uncached = usage.input_tokens if scripted is None else scripted
            plan = latency.plan(
                tokens(message.output_tokens),
                input_tokens=uncached + usage.cache_creation_input_tokens,
                cached_tokens=usage.cache_read_input_tokens,
            )
            plans.append(plan)
            return plan.first_token

        usage = self._prompt_cache.account(
            logged.body, count=prompt_block_tokens, now=self.clock.now(), ready_after=first_token
        )
        input_tokens = usage.input_tokens if scripted is None else scripted
        self._settle(logged, used=tokens(message.output_tokens), after=plans[0].total)
        return dataclasses.replace(message, cache=usage, input_tokens=input_tokens), plans[0]

    def _reply_response(
        self, reply: Reply, logged: SimRequest, *, count_output: bool = True
    ) -> httpx.Response:
        message, plan = self._render(reply, logged)
        logged.status = 200
        if not logged.stream:
            logged.output_tokens = message.output_tokens
            if count_output:  # a batch's requests are charged by the batch store
                self._log.add_output(message.output_tokens)
                self.charge(message.model, _usage(message, message.output_tokens))
            return self.json_response(200, _dumps(message.to_json()), logged, delay=plan.total)
        return self._stream_response(logged, plan.connect, stream_chunks(message, plan), message)

    def _stream_response(
        self,
        logged: SimRequest,
        delay: float,
        chunks: list[tuple[float, bytes]],
        message: RenderedMessage,
    ) -> httpx.Response:
        # Tokens delivered once each chunk is sent: the client may stop reading early, and
        # the first chunk after message_start need not hold a token (an empty text block).
        first_text = next(
            (i for i, (_, data) in enumerate(chunks) if b'"type":"text_delta"' in data), None
        )
        return self.event_stream_response(
            logged,
            delay,
            chunks,
            tokens=list(accumulate(tokens_in(data) for _, data in chunks)),
            first_text=first_text,
            headers={"cache-control": "no-cache"},
            on_delivered=lambda sent: self._delivered(logged, message, sent),
        )

    def _delivered(self, logged: SimRequest, message: RenderedMessage, sent: int) -> None:
        # Charged as sent: a stream the client stops reading costs the output sent.
        self.charge(message.model, _usage(message, sent))
        self._stream_closed(logged, sent)

    def fault_response(
        self, fault: Fault, logged: SimRequest, request: httpx.Request
    ) -> httpx.Response:
        if fault.kind == "stream_error" and logged.stream:
            reply = fault.reply or default_reply(logged.body)
            message, plan = self._render(
                reply, logged, lambda tokens: min(fault.after_tokens, tokens) + 1
            )
            sent = min(fault.after_tokens, message.output_tokens)
            chunks = stream_chunks(
                message, plan, error_after_tokens=sent, error=(fault.error_type, fault.message)
            )
            logged.status = 200
            return self._stream_response(logged, plan.connect, chunks, message)
        return super().fault_response(fault, logged, request)

    # -- token counting, models and message batches ----------------------------------

    def _add_endpoints(self) -> None:
        """One respx route per HTTP method for every endpoint besides messages: respx
        builds mock call lists for each route, the bulk of a simulator's construction."""
        batch = r"/v1/messages/batches/[^/?]+"
        endpoints: dict[str, list[tuple[str, Callable[[SimRequest, httpx.Request], Any]]]] = {
            "POST": [
                (r"/v1/messages/count_tokens", self._answer_count_tokens),
                (r"/v1/messages/batches", self._answer_create_batch),
                (batch + "/cancel", self._answer_cancel_batch),
            ],
            "GET": [
                (r"/v1/models", self._answer_models),
                (r"/v1/models/[^/?]+", self._answer_model),
                (r"/v1/messages/batches", self._answer_list_batches),
                (batch, self._answer_batch),
                (batch + "/results", self._answer_batch_results),
            ],
            "DELETE": [(batch, self._answer_delete_batch)],
        }
        prefix = re.escape(httpx.URL(self.base_url).path.rstrip("/"))
        for method, table in endpoints.items():
            paths = [(re.compile(prefix + path), self._endpoint(answer)) for path, answer in table]
            pattern = re.compile("(?:" + "|".join(path for path, _ in table) + ")")
            handler = _dispatch(paths, otherwise=self._endpoint(_not_found))
            self.add_route(method, pattern, handler, name=f"{method.lower()}_endpoints")

    def _endpoint(self, answer: Callable[[SimRequest, httpx.Request], Any]) -> Handler:
        """A route handler for ``answer``: headers checked first (when :attr:`strict`); a
        :class:`Refusal` it returns or a :class:`Refused` it raises answered as the API's
        error, JSON (or the response it makes) otherwise, after one modeled time to first
        byte (``latency.connect``)."""

        def handle(logged: SimRequest, request: httpx.Request) -> httpx.Response:
            delay = to_microseconds(self._latency.connect.sample())
            result = check_headers(request.headers) if self.strict else None
            if result is None and logged.body_error is not None:
                result = Refusal(400, "invalid_request_error", logged.body_error)
            if result is None:
                try:
                    result = answer(logged, request)
                except Refused as refused:
                    result = Refusal(refused.status, refused.error_type, refused.message)
            if isinstance(result, Refusal):
                logged.status = result.status
                return self.error_response(
                    result.status, result.error_type, result.message, logged, delay=delay
                )
            logged.status = 200
            if isinstance(result, httpx.Response):
                return result
            return self.json_response(200, _dumps(result), logged, delay=delay)

        return handle

    def _answer_count_tokens(self, logged: SimRequest, request: httpx.Request) -> Any:
        """``{"input_tokens": N}``: the whole prompt (system, messages and tools), as
        ``MessageTokensCount`` documents it. It is the ``usage.input_tokens`` the same
        request gets from ``POST /v1/messages`` unless a reply scripts its own count; with
        prompt caching, that ``input_tokens`` is only the uncached rest, and ``N`` equals
        input + cache creation + cache read tokens. No scripted answer is consumed."""
        if self.strict:
            refusal = check_count_tokens_request(logged.body, request.headers, beta=_beta(request))
            if refusal is not None:
                return refusal
        else:  # the lenient checks of messages.create, less max_tokens (not taken here)
            problem = _validate({**logged.body, "max_tokens": 0})
            if problem is not None:
                return Refusal(400, "invalid_request_error", problem)
        return {"input_tokens": count_input_tokens(logged.body)}

    def _answer_models(self, logged: SimRequest, request: httpx.Request) -> Any:
        """A page of the model catalog, newest first (``limit``, ``after_id``, ``before_id``)."""
        items, has_more = paginate(MODELS, **_page_params(request), key=lambda model: model.id)
        return page_body([model.to_json() for model in items], has_more)

    def _answer_model(self, logged: SimRequest, request: httpx.Request) -> Any:
        """One model by id or alias (an alias answers with its dated id); 404 if unknown."""
        name = _last_segment(request)
        model = resolve(name)
        if model is None:
            return Refusal(404, "not_found_error", f"model: {name}")
        return model.to_json()

    def _answer_create_batch(self, logged: SimRequest, request: httpx.Request) -> Any:
        """A new batch: each request answered now as ``POST /v1/messages`` would answer it
        (scripts, responder, default reply, validation), its result shown once the batch's
        modeled processing reaches it (see :class:`BatchStore`). A body over 256 MB is
        refused first, as the API refuses it (413 ``request_too_large``)."""
        check_size(request.content)
        requests = check_requests(logged.body)
        # One request object for all: the messages route reads only its URL and headers
        # (each request's parameters are the logged body it is handed).
        url = f"{self.base_url}/v1/messages" + ("?beta=true" if _beta(request) else "")
        single = httpx.Request("POST", url, headers=request.headers)
        answers = [
            self._batch_answer(item, position, logged, single)
            for position, item in enumerate(requests)
        ]
        return self.batches.view(self.batches.create(answers).id)

    def _batch_answer(
        self, item: Mapping[str, Any], position: int, logged: SimRequest, single: httpx.Request
    ) -> Answer:
        """One request of a batch, answered by the messages route itself, unlogged: the
        result is its JSON (a message, its id made unique in the batch, or the error body),
        the duration its modeled delivery time. A transport fault (connection error,
        timeout) errors as ``api_error``; streaming is refused, as the batch API takes only
        non-streaming parameters (``MessageCreateParamsNonStreaming``)."""
        custom_id, params = item["custom_id"], dict(item["params"])
        if params.get("stream"):
            error = error_body(
                "invalid_request_error", "stream: streaming is not supported in a message batch"
            )
            return Answer(custom_id, {"type": "errored", "error": error}, 0.0)
        one = copy.copy(logged)  # its headers already hidden: no dataclasses.replace
        one.url, one.body, one.body_error, one.answer, one.status = (
            str(single.url),
            params,
            None,
            None,
            None,
        )
        # Counted by the batch store once it knows which requests are processed.
        # A batch has limits of its own, shared by all models (rate-limits page): its
        # requests do not draw on the Messages API's.
        response = self._answer_messages(one, single, count_output=False, limited=False)
        delivery = response.extensions[DELIVERY_KEY]
        if delivery.error is not None:
            error = error_body("api_error", "Internal server error")
            return Answer(custom_id, {"type": "errored", "error": error}, delivery.delay)
        content = json.loads(response.read())
        if response.status_code == 200:
            content["id"] = f"{content['id']}_{position}"  # one batch, many messages
            result = {"type": "succeeded", "message": content}
            usage = _usage_of(content["usage"])
            return Answer(
                custom_id, result, delivery.delay, one.output_tokens, content["model"], usage
            )
        return Answer(custom_id, {"type": "errored", "error": content}, delivery.delay)

    def _answer_list_batches(self, logged: SimRequest, request: httpx.Request) -> Any:
        return self.batches.page(**_page_params(request))

    def _answer_batch(self, logged: SimRequest, request: httpx.Request) -> Any:
        return self.batches.view(_last_segment(request))

    def _answer_delete_batch(self, logged: SimRequest, request: httpx.Request) -> Any:
        return self.batches.delete(_last_segment(request))

    def _answer_cancel_batch(self, logged: SimRequest, request: httpx.Request) -> Any:
        return self.batches.cancel(_last_segment(request, 1))

    def _answer_batch_results(self, logged: SimRequest, request: httpx.Request) -> Any:
        content = self.batches.results(_last_segment(request, 1))
        delay = to_microseconds(self._latency.connect.sample())
        # The SDK asks for the results with ``Accept: application/binary``.
        headers = {"content-type": "application/binary"}
        return self.json_response(200, content, logged, delay=delay, headers=headers)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _usage(message: RenderedMessage, output_tokens: int) -> Usage:
    """What ``message`` costs with ``output_tokens`` of it sent: its input as the prompt
    cache accounted it (uncached, written for 5 minutes or an hour, read)."""
    cache = message.cache
    if cache is None:
        return Usage(input_tokens=message.input_tokens, output_tokens=output_tokens)
    return Usage(
        input_tokens=message.input_tokens,
        cache_write_5m_tokens=cache.ephemeral_5m_input_tokens,
        cache_write_1h_tokens=cache.ephemeral_1h_input_tokens,
        cache_read_tokens=cache.cache_read_input_tokens,
        output_tokens=output_tokens,
    )


def _usage_of(usage: Mapping[str, Any]) -> Usage:
    """The :class:`Usage` of a message's ``usage`` object."""
    creation = usage.get("cache_creation") or {}
    return Usage(
        input_tokens=usage["input_tokens"],
        cache_write_5m_tokens=creation.get("ephemeral_5m_input_tokens", 0),
        cache_write_1h_tokens=creation.get("ephemeral_1h_input_tokens", 0),
        cache_read_tokens=usage.get("cache_read_input_tokens", 0),
        output_tokens=usage["output_tokens"],
    )


def _beta(request: httpx.Request) -> bool:
    return bool(request.url.params.get("beta") == "true")


def _dispatch(paths: list[tuple[re.Pattern[str], Handler]], *, otherwise: Handler) -> Handler:
    """A route handler that hands each request to the handler of the path it matches (as
    sent, still percent-encoded), or to ``otherwise``."""

    def answer(logged: SimRequest, request: httpx.Request) -> httpx.Response:
        path = _raw_path(request)
        handle = next((handle for pattern, handle in paths if pattern.fullmatch(path)), otherwise)
        return handle(logged, request)

    return answer


def _not_found(logged: SimRequest, request: httpx.Request) -> Refusal:
    return Refusal(404, "not_found_error", f"Not found: {_raw_path(request)}")


def _raw_path(request: httpx.Request) -> str:
    return request.url.raw_path.split(b"?", 1)[0].decode("ascii")


def _origin(clock: Clock) -> datetime:
    """The date and time of the clock's time 0: a fixed date on a virtual clock (so runs
    are identical), the wall clock's reading on a real one."""
    if clock.mode == "virtual":
        return DEFAULT_ORIGIN
    return datetime.now(UTC) - timedelta(seconds=clock.now())


def _last_segment(request: httpx.Request, back: int = 0) -> str:
    """A path segment counted from the end (the id in ``/v1/models/{id}``), decoded."""
    return unquote(_raw_path(request).split("/")[-1 - back])


def _page_params(request: httpx.Request) -> dict[str, Any]:
    params = request.url.params
    raw = params.get("limit")
    limit: object = DEFAULT_LIMIT if raw is None else int(raw) if raw.isdigit() else raw
    return {
        "limit": check_limit(limit),
        "after_id": params.get("after_id"),
        "before_id": params.get("before_id"),
    }


_LARGEST_OUTPUT = max(model.max_output_tokens for model in MODELS)

_UNACCOUNTED = CacheUsage(0)
"""A draft's input accounting, replaced once the prompt cache accounts the request."""


def _output_limit(model: object) -> int:
    """The model's output limit; for a model the catalog does not know, the largest of any
    model's (so ``max_tokens=10**9`` is refused whatever the model is called)."""
    found = resolve(model) if isinstance(model, str) else None
    return found.max_output_tokens if found is not None else _LARGEST_OUTPUT


def default_reply(body: dict[str, Any]) -> Reply:
    """The reply when nothing is scripted: deterministic, and different per question;
    a thinking block first when the request enables extended thinking."""
    question = _last_user_text(body)
    snippet = "".join(tokenize(question)[:24]).strip()
    answer = f"Simulated answer to: {snippet}" if snippet else "Simulated answer."
    schema = output_schema(body)
    if schema is not None:  # structured output: a JSON document valid against the schema
        answer = json.dumps(schema_instance(schema))
    if thinking_budget(body) is None:
        return Reply.text(answer)
    thought = (
        f"The user asks: {snippet}. A short, direct answer will do."
        if snippet
        else "There is no question to think about. A short answer will do."
    )
    return Reply(ThinkingBlock(thought), TextBlock(answer))


def _request_id(logged: SimRequest | None) -> str:
    """The request's id: its ``request-id`` header, and ``request_id`` in an error body."""
    return f"req_sim_{logged.index if logged is not None else 0:06d}"


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
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 0:
        # 0 populates the prompt cache (message_create_params.py), as the strict checks allow
        return f"max_tokens: must be a non-negative integer, got {body['max_tokens']!r}"
    if not isinstance(body["messages"], list):
        return "messages: must be a list"
    return None
