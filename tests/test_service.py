"""The agent service: chat over JSON and SSE, refusals, metrics, and real servers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect

from perfkit import AnthropicSimulator, Fault, LLMLatency, Reply, VirtualClock
from perfkit.agents import (
    MAX_MESSAGE_CHARS,
    Agent,
    AgentError,
    AgentReply,
    NaiveAgent,
    OptimizedAgent,
    demo_tools,
)
from perfkit.cache import MultiLayerCache
from perfkit.cli import main
from perfkit.service import (
    ERROR_TYPES,
    LATENCY_BUCKETS,
    AgentMetrics,
    RequestError,
    build_agent,
    build_app,
    create_app,
    error_type,
    parse_chat_request,
)
from perfkit.simulation import SimulatedAssistant
from tests.loopback_anthropic import fake_anthropic_app
from tests.loopback_asgi import running_uvicorn, wait_until_healthy

LATENCY = LLMLatency(ttft=0.5, per_token=0.02)
AGENTS = ["naive", "optimized"]
JSON = {"content-type": "application/json"}


def make_agent(kind: str, clock: VirtualClock | None = None, **options: Any) -> Agent:
    options.setdefault("client_options", {"api_key": "test", "max_retries": 0})
    if kind == "naive":
        return NaiveAgent(**options)
    return OptimizedAgent(cache=MultiLayerCache(clock=clock), **options)


def serve_in_process(
    clock: VirtualClock, app: Starlette, scenario: Callable[[httpx.AsyncClient], Awaitable[Any]]
) -> Any:
    """Run ``scenario`` against ``app`` through an in-process ASGI client, on ``clock``."""

    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                return await scenario(client)
        finally:
            await app.state.agent.aclose()

    return clock.run(main())


def chat_once(kind: str, path: str, *answers: Reply | Fault) -> tuple[httpx.Response, str]:
    """One chat ("Hi" from ann) to a fresh service around a ``kind`` agent, the API
    answering with ``answers``; the response and the metrics scraped after it."""
    clock = VirtualClock()
    app = create_app(make_agent(kind, clock), clock=clock)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(*answers)

        async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, str]:
            response = await client.post(path, json={"user_id": "ann", "message": "Hi"})
            return response, (await client.get("/metrics")).text

        result: tuple[httpx.Response, str] = serve_in_process(clock, app, scenario)
        sim.pop_failures()  # transport faults the SDK turned into exceptions
    return result


def samples(exposition: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, parsed: (name, sorted labels) -> value."""
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(exposition: bytes | str, name: str, **labels: str) -> float:
    return samples(exposition)[(name, tuple(sorted(labels.items())))]


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# --- chat, JSON and streamed ------------------------------------------------------------


@pytest.mark.parametrize("kind", AGENTS)
def test_chat_answers_json_and_the_histograms_move(kind: str) -> None:
    response, metrics = chat_once(kind, "/chat", Reply.of_tokens(100))
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == "ann"
    assert body["reply"] == " ".join(["token"] * 100)
    assert (body["turns"], body["tool_calls"], body["stop_reason"]) == (1, 0, "end_turn")
    assert body["usage"]["output_tokens"] == 100
    # 0.5 s to the first token and 99 more at 0.02 s: 2.48 s, modeled exactly.
    assert value(metrics, "perfkit_agent_response_seconds_sum", endpoint="chat") == 2.48
    assert value(metrics, "perfkit_agent_response_seconds_bucket", endpoint="chat", le="2.0") == 0
    assert value(metrics, "perfkit_agent_response_seconds_bucket", endpoint="chat", le="5.0") == 1
    assert value(metrics, "perfkit_agent_requests_total", endpoint="chat", status="200") == 1
    assert value(metrics, "perfkit_agent_tokens_total", direction="output") == 100


@pytest.mark.parametrize("kind", AGENTS)
def test_the_stream_endpoint_sends_tokens_then_the_totals(kind: str) -> None:
    response, metrics = chat_once(kind, "/chat/stream", Reply.of_tokens(100))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    *tokens, (last, totals) = events
    assert {name for name, _ in tokens} == {"token"}
    assert "".join(data["text"] for _, data in tokens) == " ".join(["token"] * 100)
    assert (last, totals["usage"]["output_tokens"], totals["turns"]) == ("done", 100, 1)
    # What streaming buys: the optimized agent's first token at 0.5 s, the naive
    # agent's (it does not stream) only with the whole reply.
    ttft = value(metrics, "perfkit_agent_time_to_first_token_seconds_sum", endpoint="stream")
    assert ttft == {"naive": 2.48, "optimized": 0.5}[kind]
    assert len(tokens) == {"naive": 1, "optimized": 100}[kind]
    assert value(metrics, "perfkit_agent_response_seconds_sum", endpoint="stream") == 2.48
    assert value(metrics, "perfkit_agent_requests_total", endpoint="stream", status="200") == 1
    assert value(metrics, "perfkit_agent_requests_in_progress", endpoint="stream") == 0


def test_tool_turns_are_run_and_counted() -> None:
    clock = VirtualClock()
    agent = make_agent("optimized", clock, tools=demo_tools(latency=(0.2, 0.2)))
    app = create_app(agent, clock=clock)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(
            Reply(
                "Let me look that up.",
                *Reply.tool_use("get_weather", {"query": "Paris"}).blocks,
                *Reply.tool_use("search_docs", {"query": "Paris"}).blocks,
            ),
            Reply.text("Sunny."),
        )

        async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, str]:
            response = await client.post("/chat", json={"user_id": "ann", "message": "Paris?"})
            return response, (await client.get("/metrics")).text

        response, metrics = serve_in_process(clock, app, scenario)
    assert (response.json()["turns"], response.json()["tool_calls"]) == (2, 2)
    assert value(metrics, "perfkit_agent_tool_calls_total") == 2


# --- refusals: 4xx for the client's mistakes, 5xx in the same shape for upstream's ---------

BAD_REQUESTS = [
    pytest.param(b"{oops", JSON, 400, "invalid_json", "not valid JSON", id="malformed-json"),
    pytest.param(b"[1, 2]", JSON, 422, "invalid_request", "JSON object, got list", id="array"),
    pytest.param(
        b'{"user_id": "ann"}', JSON, 422, "invalid_request", "missing field(s) message",
        id="missing-message",
    ),
    pytest.param(
        b'{"message": "Hi"}', JSON, 422, "invalid_request", "missing field(s) user_id",
        id="missing-user",
    ),
    pytest.param(
        b'{"user_id": "ann", "message": "Hi", "usr": 1}', JSON, 422, "invalid_request",
        "unknown field(s) usr", id="unknown-field",
    ),
    pytest.param(
        b'{"user_id": 7, "message": "Hi"}', JSON, 422, "invalid_request",
        "user_id must be a non-empty string", id="user-id-not-a-string",
    ),
    pytest.param(
        b'{"user_id": "ann", "message": "  "}', JSON, 422, "invalid_request",
        "message must be a non-empty string", id="blank-message",
    ),
    pytest.param(
        json.dumps({"user_id": "ann", "message": "x" * (MAX_MESSAGE_CHARS + 1)}).encode(),
        JSON, 413, "payload_too_large", f"at most {MAX_MESSAGE_CHARS} are allowed",
        id="oversized-message",
    ),
    pytest.param(
        b'{"user_id": "ann", "message": "' + b"x" * 300_000 + b'"}', JSON, 413,
        "payload_too_large", "the body is over 262144 bytes", id="oversized-body",
    ),
    pytest.param(
        b"user_id=ann", {"content-type": "application/x-www-form-urlencoded"}, 415,
        "unsupported_media_type", "the body must be JSON", id="form-body",
    ),
]  # fmt: skip


@pytest.mark.parametrize("path", ["/chat", "/chat/stream"])
@pytest.mark.parametrize(("body", "headers", "status", "kind", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_and_a_json_error(
    path: str, body: bytes, headers: dict[str, str], status: int, kind: str, message: str
) -> None:
    clock = VirtualClock()
    app = create_app(make_agent("naive"), clock=clock)

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, str]:
        response = await client.post(path, content=body, headers=headers)
        return response, (await client.get("/metrics")).text

    with AnthropicSimulator(clock=clock) as sim:
        response, metrics = serve_in_process(clock, app, scenario)
    assert sim.call_count == 0
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == kind
    assert message in error["message"]
    assert value(metrics, "perfkit_agent_errors_total", type=kind) == 1
    endpoint = "chat" if path == "/chat" else "stream"
    assert value(metrics, "perfkit_agent_requests_total", endpoint=endpoint, status=str(status))


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [("GET", "/nowhere", 404, "not_found"), ("GET", "/chat", 405, "method_not_allowed")],
)
def test_unknown_routes_and_methods_get_json_errors(
    method: str, path: str, status: int, kind: str
) -> None:
    clock = VirtualClock()
    app = create_app(make_agent("naive"), clock=clock)

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.request(method, path)

    response = serve_in_process(clock, app, scenario)
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind
    assert path in response.json()["error"]["message"]


UPSTREAM_FAILURES = [
    pytest.param(Fault.rate_limit(), 503, "rate_limited", id="429"),
    pytest.param(Fault.overloaded(), 503, "overloaded", id="529"),
    pytest.param(Fault.server_error(), 502, "upstream_error", id="500"),
    pytest.param(Fault.connection_error(), 502, "connection", id="connection"),
    pytest.param(Fault.timeout(after=1.0), 504, "timeout", id="timeout"),
]


@pytest.mark.parametrize("path", ["/chat", "/chat/stream"])
@pytest.mark.parametrize(("fault", "status", "kind"), UPSTREAM_FAILURES)
def test_upstream_failures_are_answered_with_their_status_never_a_bare_500(
    path: str, fault: Fault, status: int, kind: str
) -> None:
    response, metrics = chat_once("optimized", path, fault)
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind
    assert value(metrics, "perfkit_agent_errors_total", type=kind) == 1


def test_a_stream_that_fails_after_its_first_token_ends_with_an_error_event() -> None:
    response, metrics = chat_once("optimized", "/chat/stream", Fault.stream_error(after_tokens=3))
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["token"] * 3 + ["error"]
    assert events[-1][1]["error"]["type"] == "upstream_error"
    assert value(metrics, "perfkit_agent_requests_total", endpoint="stream", status="502") == 1


def test_an_unexpected_failure_is_a_500_with_a_json_error() -> None:
    class Broken(NaiveAgent):
        def _history(self, user_id: str) -> list[Any]:
            raise RuntimeError("history store is corrupt")

    clock = VirtualClock()
    app = create_app(Broken(), clock=clock)

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/chat", json={"user_id": "ann", "message": "Hi"})

    response = serve_in_process(clock, app, scenario)
    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["type"], error["message"]) == ("internal", "the service failed unexpectedly")
    assert error["request_id"]  # the detail is in the service's log, under this id


# --- metrics -------------------------------------------------------------------------


def test_buckets_span_seconds_to_minutes_with_the_slo_boundaries() -> None:
    assert {1.0, 2.0, 5.0} <= set(LATENCY_BUCKETS)
    assert LATENCY_BUCKETS[0] <= 0.1
    assert LATENCY_BUCKETS[-1] >= 120
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_retries_cache_hits_and_connections_are_exposed() -> None:
    clock = VirtualClock()
    agent = make_agent("optimized", clock, client_options={"api_key": "test", "max_retries": 2})
    app = create_app(agent, clock=clock)
    with AnthropicSimulator(latency=LATENCY, clock=clock, handshake=0.1) as sim:
        sim.enqueue(Fault.overloaded())

        async def scenario(client: httpx.AsyncClient) -> str:
            for user in ("ann", "bob", "cy"):
                response = await client.post("/chat", json={"user_id": user, "message": "Hi"})
                assert response.status_code == 200
            return (await client.get("/metrics")).text

        metrics = serve_in_process(clock, app, scenario)
    assert value(metrics, "perfkit_agent_retries_total") == 1
    # Three users ask the same first question: one API call, then two L1 hits.
    assert value(metrics, "perfkit_cache_misses_total", cache="agent") == 1
    assert value(metrics, "perfkit_cache_hits_total", cache="agent", layer="l1") == 2
    assert sim.call_count == 2  # the overloaded attempt and its retry
    assert sim.connections_opened == 1  # the shared client kept its connection
    # The simulator intercepts above the pool: the agent's pool opened nothing real.
    assert value(metrics, "perfkit_agent_active_connections") == 0


def test_labels_stay_bounded_however_many_users() -> None:
    clock = VirtualClock()
    app = create_app(make_agent("optimized", clock), clock=clock)

    async def scenario(client: httpx.AsyncClient) -> tuple[str, str]:
        await client.post("/chat", json={"user_id": "user-0", "message": "Hi"})
        before = (await client.get("/metrics")).text
        for n in range(1, 50):
            await client.post("/chat", json={"user_id": f"user-{n}", "message": f"Hi {n}"})
        return before, (await client.get("/metrics")).text

    with AnthropicSimulator(latency=LATENCY, clock=clock):
        before, after = serve_in_process(clock, app, scenario)
    assert set(samples(after)) == set(samples(before))
    assert "user-" not in after


def test_every_error_type_is_exposed_at_zero_from_the_start() -> None:
    exposition = AgentMetrics(NaiveAgent()).exposition()
    for kind in ERROR_TYPES:
        assert value(exposition, "perfkit_agent_errors_total", type=kind) == 0
    assert b"perfkit_cache_" not in exposition  # the naive agent has no cache


def test_an_unknown_error_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown error type 'oops'; one of invalid_json"):
        AgentMetrics(NaiveAgent()).count_error("oops")


def _status_error(cls: type[anthropic.APIStatusError], status: int) -> anthropic.APIStatusError:
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    return cls("failed", response=httpx2.Response(status, request=request), body=None)


UPSTREAM_REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_status_error(anthropic.RateLimitError, 429), "rate_limited"),
        (_status_error(anthropic.InternalServerError, 529), "overloaded"),
        (_status_error(anthropic.InternalServerError, 500), "upstream_error"),
        (_status_error(anthropic.BadRequestError, 400), "upstream_error"),
        (anthropic.APITimeoutError(request=UPSTREAM_REQUEST), "timeout"),
        (anthropic.APIConnectionError(request=UPSTREAM_REQUEST), "connection"),
        (AgentError("the model kept asking for tools"), "agent"),
        (RuntimeError("bug"), "internal"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_error_type_classifies_failures_into_the_bounded_set(
    error: BaseException, kind: str
) -> None:
    assert error_type(error) == kind
    assert kind in ERROR_TYPES


def test_the_grafana_dashboard_queries_metrics_the_service_exposes() -> None:
    dashboard = json.loads(
        (Path(__file__).parents[1] / "perfkit/service/grafana-dashboard.json").read_text()
    )
    exposed = {name for name, _ in samples(_optimized_exposition())}
    titles = [panel["title"] for panel in dashboard["panels"]]
    for wanted in ("Response time", "Cache hit rate", "Requests per second", "Error rate",
                   "Active connections", "Time to first token"):  # fmt: skip
        assert any(title.startswith(wanted) for title in titles), wanted
    gauge = next(p for p in dashboard["panels"] if p["title"] == "Cache hit rate")
    steps = gauge["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert {"color": "green", "value": 0.8} in steps
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in _metric_names(target["expr"]):
                assert name in exposed, f"{panel['title']!r} queries {name}, not exposed"


def _optimized_exposition() -> bytes:
    return AgentMetrics(OptimizedAgent(cache=MultiLayerCache())).exposition()


def _metric_names(expr: str) -> set[str]:
    import re

    return set(re.findall(r"\b(perfkit_[a-z_]+)\b", expr))


def test_public_names_are_pinned() -> None:
    import perfkit.service

    assert perfkit.service.__all__ == [
        "ERROR_TYPES",
        "LATENCY_BUCKETS",
        "SYSTEM_PROMPT",
        "TOKENS_ENV",
        "AgentMetrics",
        "BearerTokens",
        "ChatRequest",
        "RequestError",
        "ServiceLimits",
        "build_agent",
        "build_app",
        "create_app",
        "error_type",
        "parse_chat_request",
        "run",
        "simulated_backend",
    ]


# --- parsing --------------------------------------------------------------------------


def test_parse_chat_request_returns_the_fields() -> None:
    chat = parse_chat_request(b'{"user_id": "ann", "message": "Hi"}')
    assert (chat.user_id, chat.message) == ("ann", "Hi")
    with pytest.raises(RequestError, match="not valid JSON") as refused:
        parse_chat_request(b"")
    assert refused.value.status == 400


# --- building the service and perfkit serve ---------------------------------------------


def test_build_app_refuses_the_real_backend_without_a_key_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="needs the ANTHROPIC_API_KEY"):
        build_app(backend="anthropic", environ={})
    with pytest.raises(ValueError, match="backend must be one of simulated, anthropic"):
        build_app(backend="openai")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="agent must be one of naive, optimized, got 'smart'"):
        build_agent("smart")  # type: ignore[arg-type]
    app = build_app(backend="anthropic", environ={"ANTHROPIC_API_KEY": "sk-test"})
    assert isinstance(app.state.agent, OptimizedAgent)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--agent", "smart"], "invalid choice: 'smart'"),
        (["serve", "--port", "70000"], "port must be an integer from 0 to 65535, got '70000'"),
        (["serve", "--backend", "anthropic"], "needs the ANTHROPIC_API_KEY"),
    ],
)
def test_serve_usage_errors_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    try:
        code = main(argv)
    except SystemExit as exited:
        code = exited.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def perfkit_serve() -> Iterator[str]:
    """``perfkit serve`` in a process of its own, with no API key; yields its URL."""
    port = unused_port()
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    command = [sys.executable, "-m", "perfkit", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"], env=env, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        yield url
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then dies of the signal it caught, as it should.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr


def test_perfkit_serve_chats_streams_and_exposes_metrics_with_no_api_key(
    perfkit_serve: str,
) -> None:
    health = httpx.get(f"{perfkit_serve}/healthz").json()
    assert health == {"status": "ok", "agent": "OptimizedAgent", "backend": "simulated"}
    before = httpx.get(f"{perfkit_serve}/metrics").text

    async def both() -> tuple[httpx.Response, list[str]]:
        async with httpx.AsyncClient(base_url=perfkit_serve, timeout=60) as client:
            chat = client.post("/chat", json={"user_id": "ann", "message": "Hello there"})

            async def first_token() -> list[str]:
                request = {"user_id": "bob", "message": "Tell me about pooling"}
                async with client.stream("POST", "/chat/stream", json=request) as response:
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            return [line]
                return []

            return await asyncio.gather(chat, first_token())

    response, first = asyncio.run(both())
    assert response.status_code == 200, response.text
    assert response.json()["reply"].startswith("About Hello there:")
    assert first == ["event: token"]
    after = httpx.get(f"{perfkit_serve}/metrics").text
    for endpoint in ("chat", "stream"):
        count = "perfkit_agent_time_to_first_token_seconds_count"
        assert value(before, count, endpoint=endpoint) == 0
        assert value(after, count, endpoint=endpoint) == 1


# --- real uvicorn on loopback, end to end ----------------------------------------------


@pytest.fixture
def real_upstream() -> Iterator[str]:
    """A stand-in Anthropic API served by a real uvicorn on loopback."""
    app = fake_anthropic_app(
        SimulatedAssistant(seed=3, reply_tokens=(5, 20), tool_rate=0.0),
        LLMLatency(ttft=0.05, per_token=0.002),
    )
    with running_uvicorn(app) as url:
        yield url


def test_a_client_that_goes_away_mid_stream_is_counted_as_499_and_stops_upstream() -> None:
    agent = make_agent("optimized")
    app = create_app(agent)
    with AnthropicSimulator(latency=LLMLatency(ttft=0.05, per_token=0.01)) as sim:
        sim.enqueue(Reply.of_tokens(100))
        with running_uvicorn(app) as url:
            request = {"user_id": "ann", "message": "Hi"}
            with httpx.stream("POST", f"{url}/chat/stream", json=request) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        break
            deadline = time.monotonic() + 10
            while (metrics := httpx.get(f"{url}/metrics").text) and time.monotonic() < deadline:
                if samples(metrics).get(
                    ("perfkit_agent_requests_total", (("endpoint", "stream"), ("status", "499")))
                ):
                    break
                time.sleep(0.05)
        upstream = sim.last_request
    assert not upstream.completed
    assert upstream.output_tokens < 100
    assert value(metrics, "perfkit_agent_requests_total", endpoint="stream", status="499") == 1
    assert value(metrics, "perfkit_agent_requests_in_progress", endpoint="stream") == 0


@pytest.mark.parametrize("kind", AGENTS)
def test_200_concurrent_streamed_chats_complete_with_zero_errors(
    kind: str, real_upstream: str
) -> None:
    agent = make_agent(kind, client_options={"api_key": "test", "base_url": real_upstream})
    app = create_app(agent)

    async def chat(client: httpx.AsyncClient, n: int) -> list[tuple[str, dict[str, Any]]]:
        request = {"user_id": f"user-{n}", "message": f"Question {n % 20}"}
        response = await client.post("/chat/stream", json=request)
        assert response.status_code == 200, response.text
        return sse_events(response.text)

    async def storm(url: str) -> list[list[tuple[str, dict[str, Any]]]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*(chat(client, n) for n in range(200)))

    with running_uvicorn(app) as url:
        results = asyncio.run(storm(url))
        metrics = httpx.get(f"{url}/metrics").text
    assert all(events[-1][0] == "done" for events in results)
    assert not [e for events in results for e in events if e[0] == "error"]
    assert value(metrics, "perfkit_agent_requests_total", endpoint="stream", status="200") == 200
    assert (
        sum(v for (n, _), v in samples(metrics).items() if n == "perfkit_agent_errors_total") == 0
    )
    # Shut down: the agent closed every connection it opened to the upstream server.
    gc.collect()
    assert agent.connections.opened >= 1
    assert agent.connections.open == 0
    assert agent.connections.requests >= 1


def _asgi_call(app: Starlette, path: str, body: bytes, *, fail_start: bool) -> Any:
    """Call ``app`` directly as an ASGI server would; the client disconnects while the
    body is read (``fail_start=False``) or when the response starts (``True``)."""
    sent: list[Any] = []
    messages = [{"type": "http.request", "body": body, "more_body": not fail_start}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if fail_start and message["type"] == "http.response.start":
            raise OSError("client went away")
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
        "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1),
        "server": ("service", 80),
    }  # fmt: skip
    return sent, scope, receive, send


def test_a_client_gone_before_the_first_byte_is_counted_and_nothing_stays_in_progress() -> None:
    clock = VirtualClock()
    app = create_app(make_agent("optimized", clock), clock=clock)
    body = json.dumps({"user_id": "ann", "message": "Hi"}).encode()

    async def main() -> str:
        _, scope, receive, send = _asgi_call(app, "/chat/stream", body, fail_start=True)
        # What the server then sees: the send's OSError, or (the response begun) a
        # ClientDisconnect; the service may notice the disconnect before it answers.
        with contextlib.suppress(ClientDisconnect, OSError):
            await app(scope, receive, send)
        await app.state.agent.aclose()
        return app.state.metrics.exposition().decode()

    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(Reply.of_tokens(100))
        metrics = clock.run(main())
        assert not sim.last_request.completed
    assert value(metrics, "perfkit_agent_requests_in_progress", endpoint="stream") == 0
    assert value(metrics, "perfkit_agent_requests_total", endpoint="stream", status="499") == 1


@pytest.mark.parametrize(("path", "endpoint"), [("/chat", "chat"), ("/chat/stream", "stream")])
def test_a_client_gone_while_sending_its_body_is_a_499_not_an_error(
    path: str, endpoint: str
) -> None:
    clock = VirtualClock()
    app = create_app(make_agent("naive"), clock=clock)

    async def main() -> tuple[list[Any], str]:
        sent, scope, receive, send = _asgi_call(app, path, b'{"user_id"', fail_start=False)
        await app(scope, receive, send)
        return sent, app.state.metrics.exposition().decode()

    sent, metrics = clock.run(main())
    assert sent[0]["status"] == 499
    assert value(metrics, "perfkit_agent_requests_total", endpoint=endpoint, status="499") == 1
    errors = [
        v for (name, _), v in samples(metrics).items() if name == "perfkit_agent_errors_total"
    ]
    assert sum(errors) == 0


# --- cost --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "path"), [("naive", "/chat"), ("optimized", "/chat/stream")])
def test_the_metrics_count_tokens_by_kind_and_their_cost_by_model(kind: str, path: str) -> None:
    clock = VirtualClock()
    app = create_app(make_agent(kind, clock), clock=clock)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(Reply.of_tokens(100))

        async def scenario(client: httpx.AsyncClient) -> tuple[str, str]:
            before = (await client.get("/metrics")).text
            await client.post(path, json={"user_id": "ann", "message": "Hi"})
            return before, (await client.get("/metrics")).text

        before, after = serve_in_process(clock, app, scenario)
    model = "claude-sonnet-5"
    assert value(before, "perfkit_llm_cost_usd_total", model=model) == 0  # shown from the start
    assert value(after, "perfkit_llm_cost_usd_total", model=model) == sim.usd > 0
    usage = sim.usage
    for kind_label, tokens in (
        ("input", usage.input_tokens),
        ("cache_creation", usage.cache_write_5m_tokens + usage.cache_write_1h_tokens),
        ("cache_read", usage.cache_read_tokens),
        ("output", 100),
    ):
        assert value(after, "perfkit_llm_tokens_total", model=model, kind=kind_label) == tokens


def test_a_model_name_the_price_table_does_not_know_is_labelled_other() -> None:
    metrics = AgentMetrics(NaiveAgent(model="claude-simulated"))
    reply = AgentReply("x", 1, 0, 10, 5, "end_turn", usd=0.25, model="evil\n{label}")
    metrics.count_usage(reply)
    exposition = metrics.exposition()
    assert value(exposition, "perfkit_llm_cost_usd_total", model="other") == 0.25
    assert b"evil" not in exposition


def test_the_real_service_on_loopback_exports_what_its_replies_cost() -> None:
    agent = make_agent("optimized")
    app = create_app(agent)
    with AnthropicSimulator(latency=LLMLatency(ttft=0.01)) as sim:
        sim.enqueue(Reply.of_tokens(20), Reply.of_tokens(30))
        with running_uvicorn(app) as url:
            for question in ("One?", "Two?"):
                request = {"user_id": "ann", "message": question}
                assert httpx.post(f"{url}/chat", json=request, timeout=30).status_code == 200
            metrics = httpx.get(f"{url}/metrics").text
    cost = value(metrics, "perfkit_llm_cost_usd_total", model="claude-sonnet-5")
    assert cost == pytest.approx(sim.usd, abs=2e-6)  # each reply rounded to 6 decimals
    assert cost > 0
    assert value(metrics, "perfkit_llm_tokens_total", model="claude-sonnet-5", kind="output") == 50
