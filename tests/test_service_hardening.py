"""The agent service against hostile clients: bodies that break parsers, redirects to a
client's host, disconnects, credentials, upstream secrets, slow connections, slow Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from perfkit import AnthropicSimulator, Fault, LLMLatency, Reply, VirtualClock
from perfkit.agents import NaiveAgent, OptimizedAgent
from perfkit.cache import MultiLayerCache
from perfkit.cli import main
from perfkit.service import (
    TOKENS_ENV,
    BearerTokens,
    ServiceLimits,
    build_agent,
    build_app,
    create_app,
    run,
)
from perfkit.service._auth import conversation_id
from perfkit.service._limits import (
    ACCEPT_BURSTS,
    RESERVED_DESCRIPTORS,
    RepeatFilter,
    guarded_protocol,
    repeats_collapsed,
)
from tests.loopback_asgi import running_uvicorn, wait_until_healthy

JSON = {"content-type": "application/json"}
CHAT_PATHS = ["/chat", "/chat/stream"]
CHAT = b'{"user_id": "ann", "message": "Hi"}'


def make_app(kind: str = "naive", **options: Any) -> Starlette:
    client_options = {"api_key": "test", "max_retries": 0}
    if kind == "naive":
        return create_app(NaiveAgent(client_options=client_options), **options)
    agent = OptimizedAgent(cache=MultiLayerCache(), client_options=client_options)
    return create_app(agent, **options)


def post_all(app: Starlette, requests: list[tuple[str, bytes, dict[str, str]]]) -> list[Any]:
    """Each (path, body, headers) posted to ``app`` in process, on a virtual clock; the
    responses (an app exception is raised, as a server would log it)."""
    clock = VirtualClock()

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                return [
                    await client.post(path, content=body, headers=headers)
                    for path, body, headers in requests
                ]
        finally:
            await app.state.agent.aclose()

    with AnthropicSimulator(clock=clock):
        return clock.run(main())


# --- 1. every bad body is a 4xx JSON error, never a 500 ---------------------------------

NESTED = b"[" * 100_000
HOSTILE_BODIES = [
    pytest.param(NESTED, JSON, 400, id="100k-nested-arrays"),
    pytest.param(b'{"a":' * 50_000, JSON, 400, id="50k-nested-objects"),
    pytest.param(b'[{"a":' * 30_000, JSON, 400, id="30k-nested-mixed"),
    pytest.param(b'{"user_id": "ann", "message": ' + NESTED + b"}", JSON, 400, id="nested-field"),
    pytest.param(
        b'{"user_id": "ann", "message": ' + b"[" * 500 + b"1" + b"]" * 500 + b"}", JSON, 422,
        id="500-deep-message",
    ),
    pytest.param(b'{"user_id": "ann", "message": "\\ud800"}', JSON, 400, id="surrogate-message"),
    pytest.param(b'{"user_id": "\\ud800", "message": "Hi"}', JSON, 400, id="surrogate-user"),
    pytest.param(b'{"user_id": "ann", "message": "a\\udc00b"}', JSON, 400, id="low-surrogate"),
    pytest.param(
        b'{"user_id": "ann", "message": "\\udc00\\ud800"}', JSON, 400, id="reversed-pair"
    ),
    pytest.param(
        b'{"user_id": "ann", "message": "Hi", "\\ud800": 1}', JSON, 400, id="surrogate-key"
    ),
    pytest.param(b'{"user_id": "ann", "message": NaN}', JSON, 400, id="nan"),
    pytest.param(b'{"user_id": "ann", "message": -Infinity}', JSON, 400, id="infinity"),
    pytest.param(b'{"user_id": "ann", "message": 1e999999}', JSON, 400, id="float-overflow"),
    pytest.param(b'{"user_id": "ann", "message": ' + b"9" * 5000 + b"}", JSON, 400,
                 id="5000-digit-int"),
    pytest.param(b'{"user_id": "ann", "message": "\xff\xfe"}', JSON, 400, id="invalid-utf8"),
    pytest.param(b'{"user_id": "ann", "message": "\xc0\xaf"}', JSON, 400, id="overlong-utf8"),
    pytest.param(b'{"user_id": "ann", "message": "\xed\xa0\x80"}', JSON, 400,
                 id="utf8-encoded-surrogate"),
    pytest.param(b'{"user_id": "ann", "message": "Hi", "message": "Bye"}', JSON, 400,
                 id="duplicate-key"),
    pytest.param(b"", JSON, 400, id="empty"),
    pytest.param(b"   \n", JSON, 400, id="whitespace"),
    pytest.param(b"\x00", JSON, 400, id="nul-byte"),
    pytest.param(b"null", JSON, 422, id="null"),
    pytest.param(b'"ann"', JSON, 422, id="string"),
    pytest.param(b"42", JSON, 422, id="number"),
    pytest.param(b'{"user_id": "ann\\u0000", "message": "Hi"}', JSON, 422, id="nul-in-user"),
    pytest.param(b'{"user_id": "ann\\nbob", "message": "Hi"}', JSON, 422, id="newline-in-user"),
    pytest.param(b'{"user_id": "ann", "message": {"text": "Hi"}}', JSON, 422, id="message-obj"),
    pytest.param(
        json.dumps({f"field{n}": n for n in range(10_000)}).encode(), JSON, 422,
        id="10k-unknown-fields",
    ),
    pytest.param(b'{"user_id": "ann", "message": "Hi"}', {"content-type": "text/plain"}, 415,
                 id="text-plain"),
    pytest.param(b'{"user_id": "ann", "message": "Hi"}',
                 {"content-type": "multipart/form-data; boundary=x"}, 415, id="multipart"),
    pytest.param(b'{"user_id": "ann", "message": "Hi"}',
                 {"content-type": "application/jsonx"}, 415, id="jsonx"),
    pytest.param(b'{"user_id": "ann", "message": "' + b"x" * 300_000 + b'"}', JSON, 413,
                 id="oversized"),
]  # fmt: skip


@pytest.mark.parametrize("path", CHAT_PATHS)
@pytest.mark.parametrize(("body", "headers", "status"), HOSTILE_BODIES)
def test_a_hostile_body_gets_a_4xx_json_error_never_a_500(
    path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    app = make_app()
    (response,) = post_all(app, [(path, body, headers)])
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] in ("invalid_json", "invalid_request", "unsupported_media_type",
                             "payload_too_large")  # fmt: skip
    assert len(response.content) < 2_000  # the error names the problem, not the whole body


def test_the_json_errors_say_what_is_wrong() -> None:
    app = make_app()
    bodies = [
        NESTED,
        b'{"user_id": "ann", "message": "\\ud800"}',
        b'{"user_id": "ann", "message": NaN}',
        b'{"user_id": "ann", "message": "Hi", "message": "Bye"}',
        b'{"user_id": "ann\\u0007", "message": "Hi"}',
        json.dumps({f"field{n}": n for n in range(100)}).encode(),
    ]
    responses = post_all(app, [("/chat", body, JSON) for body in bodies])
    messages = [response.json()["error"]["message"] for response in responses]
    assert "nested too deeply" in messages[0]
    assert "lone surrogate" in messages[1]
    assert "NaN is not allowed" in messages[2]
    assert "duplicate key 'message'" in messages[3]
    assert "user_id must not hold control characters" in messages[4]
    assert "unknown field(s) field0, field1," in messages[5]
    assert "and 92 more" in messages[5]


@pytest.mark.parametrize("path", CHAT_PATHS)
def test_good_unicode_is_still_answered(path: str) -> None:
    app = make_app()
    bodies = [
        b'{"user_id": "ann", "message": "\\ud83d\\ude00 caf\\u00e9"}',  # a surrogate pair
        '{"user_id": "zoë", "message": "naïve 😀"}'.encode(),
        # A UTF-8 byte order mark, which RFC 8259 lets a parser ignore.
        b'\xef\xbb\xbf{"user_id": "ann", "message": "Hi"}',
    ]
    responses = post_all(app, [(path, body, JSON) for body in bodies])
    assert [response.status_code for response in responses] == [200, 200, 200]


def test_on_a_real_server_hostile_bodies_leave_no_traceback_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wanted = {"100k-nested-arrays", "surrogate-message", "surrogate-user", "nan", "duplicate-key"}
    bodies = [param.values[0] for param in HOSTILE_BODIES if param.id in wanted]
    with (
        AnthropicSimulator(),
        running_uvicorn(make_app(), log_config=None) as url,
        caplog.at_level(logging.INFO),
        httpx.Client(base_url=url) as client,
    ):
        statuses = [
            client.post(path, content=body, headers=JSON).status_code
            for path in CHAT_PATHS
            for body in bodies
        ]
    assert len(statuses) == 2 * len(wanted)
    assert [status for status in statuses if status >= 500] == []
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


# --- 2. no redirect to a host the client named ------------------------------------------

HOSTS = ["evil.example", "evil.example:8080", "127.0.0.1@evil.example", "[::1]", "evil.example."]
SLASHED = [
    ("GET", "/metrics/"),
    ("GET", "/healthz/"),
    ("POST", "/chat/"),
    ("POST", "/chat/stream/"),
]


@pytest.mark.parametrize("host", HOSTS)
def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_clients_host(host: str) -> None:
    clock = VirtualClock()
    app = make_app()

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return [
                await client.request(method, path, headers={"host": host, **JSON}, content=b"{}")
                for method, path in SLASHED
            ]

    responses = clock.run(main())
    assert [response.status_code for response in responses] == [404] * len(SLASHED)
    assert [response.headers.get("location") for response in responses] == [None] * len(SLASHED)
    assert {response.json()["error"]["type"] for response in responses} == {"not_found"}


RAW_REQUESTS = [
    b"GET /metrics/ HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    b"GET http://evil.example/metrics/ HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    b"GET //evil.example/metrics/ HTTP/1.1\r\nHost: service\r\n\r\n",
    b"GET /metrics/ HTTP/1.1\r\nHost: service\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    b"GET /metrics/ HTTP/1.0\r\n\r\n",
]


def test_on_a_real_server_no_request_line_or_host_header_gets_a_redirect() -> None:
    with running_uvicorn(make_app()) as url:
        port = int(url.rsplit(":", 1)[1])
        heads = [_raw_exchange(port, request).split(b"\r\n\r\n", 1)[0] for request in RAW_REQUESTS]
    assert [head.split(b" ", 2)[1] for head in heads] == [b"404"] * len(RAW_REQUESTS)
    assert not [head for head in heads if b"\r\nlocation:" in head.lower()]


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent() -> None:
    head = b"POST /chat HTTP/1.1\r\nHost: s\r\ncontent-type: application/json\r\n"
    with running_uvicorn(make_app()) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(head + b"content-length: 10000000000\r\n\r\n")
            answer = b""
            while b"}}" not in answer and (chunk := connection.recv(65536)):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"payload_too_large" in answer


def _raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` as it is and read the response until the server closes or 1 s."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


# --- 6. upstream error bodies stay in the log ---------------------------------------------

SECRET = "sk-ant-api03-LEAKED-0123456789 at db.internal:5432"
LEAKY_FAULTS = [
    pytest.param(Fault.http_error(500, "api_error", f"backend failed: {SECRET}"), id="500"),
    pytest.param(Fault.http_error(400, "invalid_request_error", SECRET), id="400"),
    pytest.param(Fault.http_error(429, "rate_limit_error", SECRET), id="429"),
    pytest.param(Fault.stream_error(error_type="api_error", message=SECRET), id="stream-first"),
    pytest.param(
        Fault.stream_error(after_tokens=3, error_type="api_error", message=SECRET),
        id="stream-midway",
    ),
]


@pytest.mark.parametrize("path", CHAT_PATHS)
@pytest.mark.parametrize("fault", LEAKY_FAULTS)
def test_an_upstream_error_body_is_logged_never_sent_to_the_client(
    path: str, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    clock = VirtualClock()
    app = make_app("optimized", clock=clock)

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                return await client.post(path, json={"user_id": "ann", "message": "Hi"})
        finally:
            await app.state.agent.aclose()

    with caplog.at_level(logging.INFO), AnthropicSimulator(clock=clock) as sim:
        sim.enqueue(fault)
        response = clock.run(main())
    assert "LEAKED" not in response.text
    assert "db.internal" not in response.text
    error = _error_of(response)
    assert error["type"] in ("upstream_error", "rate_limited")
    assert error["request_id"]
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("perfkit.service")]
    assert [line for line in logged if SECRET in line and error["request_id"] in line]


def test_each_failed_requests_id_is_logged_when_repeated_lines_are_collapsed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    app = make_app("naive", clock=clock)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                return [
                    await client.post("/chat", json={"user_id": f"u{n}", "message": "Hi"})
                    for n in range(3)
                ]
        finally:
            await app.state.agent.aclose()

    with (
        caplog.at_level(logging.INFO),
        AnthropicSimulator(clock=clock) as sim,
        repeats_collapsed(),  # as perfkit serve runs
    ):
        for _ in range(3):
            sim.enqueue(Fault.http_error(400, "invalid_request_error", "bad"))
        responses = clock.run(main())
    ids = [_error_of(response)["request_id"] for response in responses]
    logged = caplog.text
    assert [request_id for request_id in ids if request_id not in logged] == []


def test_an_unexpected_failure_is_a_generic_500_and_its_traceback_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(NaiveAgent):
        def _history(self, user_id: str) -> list[Any]:
            raise RuntimeError(f"history store at {SECRET} is corrupt")

    app = create_app(Broken())
    with caplog.at_level(logging.INFO):
        (response,) = post_all(app, [("/chat", b'{"user_id": "ann", "message": "Hi"}', JSON)])
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "internal"
    assert "LEAKED" not in response.text
    assert "RuntimeError" in caplog.text
    assert SECRET in caplog.text


@pytest.mark.parametrize("path", CHAT_PATHS)
def test_a_failure_while_reading_the_request_is_a_json_500(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(body: bytes) -> Any:
        raise RuntimeError("parser bug")

    monkeypatch.setattr("perfkit.service._app.parse_chat_request", broken)
    (response,) = post_all(make_app(), [(path, CHAT, JSON)])
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "internal"


def _error_of(response: httpx.Response) -> dict[str, Any]:
    """The error of a JSON error response, or of a stream's last (``error``) event."""
    if response.headers["content-type"] == "application/json":
        return dict(response.json()["error"])
    data = [line for line in response.text.splitlines() if line.startswith("data: ")]
    return dict(json.loads(data[-1].removeprefix("data: "))["error"])


# --- 4. a /chat client that goes away is a 499, and its chat is cancelled -----------------


def test_a_chat_whose_client_disconnects_is_cancelled_and_counted_499() -> None:
    clock = VirtualClock()
    app = make_app("optimized", clock=clock)
    body = b'{"user_id": "ann", "message": "Hi"}'
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(1.0)  # the client waits a second, then hangs up
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> float:
        started = clock.now()
        await app(_scope("/chat"), receive, send)
        await app.state.agent.aclose()
        return clock.elapsed(started)

    with AnthropicSimulator(latency=LLMLatency(ttft=0.5, per_token=0.02), clock=clock) as sim:
        sim.enqueue(Reply.of_tokens(500))  # 10.5 s of generation
        elapsed = clock.run(main())
        upstream = sim.last_request
    assert not upstream.completed  # the agent's work was cancelled, upstream too
    assert upstream.output_tokens < 500
    assert elapsed < 2.0  # answered when the client left, not when the reply was done
    assert sent[0]["status"] == 499
    metrics = app.state.metrics.exposition().decode()
    assert 'perfkit_agent_requests_total{endpoint="chat",status="499"} 1.0' in metrics
    assert 'perfkit_agent_requests_total{endpoint="chat",status="200"} 0.0' in metrics
    assert 'perfkit_agent_requests_in_progress{endpoint="chat"} 0.0' in metrics


def test_a_stream_whose_client_leaves_before_the_first_token_is_cancelled() -> None:
    clock = VirtualClock()
    app = make_app("naive", clock=clock)  # its first event is the whole reply
    body = b'{"user_id": "ann", "message": "Hi"}'
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(1.0)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> float:
        started = clock.now()
        await app(_scope("/chat/stream"), receive, send)
        return clock.elapsed(started)

    with AnthropicSimulator(latency=LLMLatency(ttft=0.5, per_token=0.02), clock=clock) as sim:
        sim.enqueue(Reply.of_tokens(500))
        elapsed = clock.run(main())
        upstream = sim.last_request
    assert not upstream.completed
    assert elapsed < 2.0
    assert sent[0]["status"] == 499
    metrics = app.state.metrics.exposition().decode()
    assert 'perfkit_agent_requests_total{endpoint="stream",status="499"} 1.0' in metrics
    assert 'perfkit_agent_requests_in_progress{endpoint="stream"} 0.0' in metrics


def test_on_a_real_server_a_chat_client_that_times_out_stops_the_upstream_request() -> None:
    app = make_app("optimized")
    with AnthropicSimulator(latency=LLMLatency(ttft=0.05, per_token=0.02)) as sim:
        sim.enqueue(Reply.of_tokens(500))  # 10 s of generation
        with running_uvicorn(app) as url:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}/chat", json={"user_id": "ann", "message": "Hi"}, timeout=0.3)
            counted = _wait_for(url, 'perfkit_agent_requests_total{endpoint="chat",status="499"}')
        upstream = sim.last_request
    assert counted == 1
    assert not upstream.completed
    assert upstream.output_tokens < 500


def _wait_for(url: str, series: str, timeout: float = 5.0) -> float:
    """The value of ``series`` at ``url``/metrics once it is non-zero (0 after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        for line in httpx.get(f"{url}/metrics").text.splitlines():
            if line.startswith(series + " ") and float(line.split()[-1]) > 0:
                return float(line.split()[-1])
        if time.monotonic() > deadline:
            return 0.0
        time.sleep(0.05)


def _scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
        "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": headers or [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("service", 80),
    }  # fmt: skip


# --- 5. authentication, and conversations scoped to the principal ------------------------

ALICE, MALLORY = "alice-token-0123456789", "mallory-token-0123456789"


def token_app(kind: str = "naive", **options: Any) -> Starlette:
    return make_app(kind, tokens=BearerTokens({"alice": ALICE, "mallory": MALLORY}), **options)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **JSON}


def get_all(app: Starlette, requests: list[tuple[str, dict[str, str]]]) -> list[Any]:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return [await client.get(path, headers=headers) for path, headers in requests]

    return VirtualClock().run(main())


REFUSED = [
    pytest.param({}, id="no-header"),
    pytest.param({"authorization": "Bearer wrong-token-0123456789"}, id="wrong-token"),
    pytest.param({"authorization": f"Bearer {ALICE[:-1]}"}, id="prefix-of-a-token"),
    pytest.param({"authorization": f"Bearer {ALICE}x"}, id="token-plus-one"),
    pytest.param({"authorization": f"Basic {ALICE}"}, id="basic-scheme"),
    pytest.param({"authorization": ALICE}, id="no-scheme"),
    pytest.param({"authorization": "Bearer "}, id="empty-token"),
    pytest.param({"authorization": "Bearer alice"}, id="a-principal-name"),
]


@pytest.mark.parametrize("path", CHAT_PATHS)
@pytest.mark.parametrize("headers", REFUSED)
def test_with_tokens_a_chat_without_a_valid_one_is_a_401_json_error(
    path: str, headers: dict[str, str]
) -> None:
    app = token_app()
    (response,) = post_all(app, [(path, CHAT, {**headers, **JSON})])
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["type"] == "unauthorized"
    metrics = app.state.metrics.exposition().decode()
    assert 'perfkit_agent_errors_total{type="unauthorized"} 1.0' in metrics


def test_with_tokens_metrics_and_unknown_paths_need_one_and_healthz_does_not() -> None:
    app = token_app()
    responses = get_all(
        app,
        [
            ("/metrics", {}),
            ("/nowhere", {}),
            ("/healthz", {}),
            ("/metrics", bearer(ALICE)),
            ("/metrics", {"authorization": f"bearer {MALLORY}"}),  # the scheme is any case
        ],
    )
    assert [response.status_code for response in responses] == [401, 401, 200, 200, 200]


def test_the_right_token_chats_on_both_endpoints() -> None:
    app = token_app()
    responses = post_all(app, [(path, CHAT, bearer(ALICE)) for path in CHAT_PATHS])
    assert [response.status_code for response in responses] == [200, 200]
    assert responses[0].json()["user_id"] == "ann"


@pytest.mark.parametrize("kind", ["naive", "optimized"])
@pytest.mark.parametrize("path", CHAT_PATHS)
def test_another_principal_never_reaches_a_users_history(kind: str, path: str) -> None:
    clock = VirtualClock()
    app = token_app(kind, clock=clock)
    secret = json.dumps({"user_id": "victim42", "message": "My PIN is 8271"}).encode()
    probe = json.dumps({"user_id": "victim42", "message": "What is my PIN?"}).encode()

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                return [
                    await client.post(path, content=body, headers=bearer(token))
                    for body, token in [(secret, ALICE), (probe, MALLORY), (probe, ALICE)]
                ]
        finally:
            await app.state.agent.aclose()

    with AnthropicSimulator(clock=clock) as sim:
        responses = clock.run(main())
        sent = [request.body["messages"] for request in sim.requests]
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert "8271" not in json.dumps(sent[1])  # mallory, asking as victim42
    assert len(sent[1]) == 1
    assert "8271" in json.dumps(sent[2])  # alice's own history is still hers
    assert len(sent[2]) == 3


def test_conversation_ids_of_two_principals_never_meet() -> None:
    pairs = [("a", "b:c"), ("a:b", "c"), ("a", '", "b'), ('a", "', "b"), ("a", "b")]
    ids = {conversation_id(principal, user) for principal, user in pairs}
    assert len(ids) == len(pairs)
    assert conversation_id(None, "ann") == "ann"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice", "PERFKIT_SERVICE_TOKENS, entry 1: an entry is name:token, got no ':'"),
        ("alice:short", "entry 1: its token must be at least 16 characters"),
        (f"alice:{ALICE},alice:{MALLORY}", "entry 2: its name has a token already (entry 1)"),
        (f"alice:{ALICE},bob:{ALICE}", "'bob' and 'alice' have the same token"),
        (f"al ice:{ALICE}", "entry 1: the name must be 1-64 letters, digits or ._@- (6 char"),
        (f"alice:{ALICE} tail", "must be at least 16 characters of A-Z"),
        (f"{ALICE}:alice", "entry 1: its token must be at least 16 characters"),  # swapped
        (f"{ALICE}+/=:{MALLORY}", "entry 1: the name must be 1-64 letters"),  # a token's chars
        (" , # nothing", "PERFKIT_SERVICE_TOKENS holds no name:token entry"),
    ],
)
def test_a_bad_token_list_is_refused_naming_the_entry_never_the_token(
    text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as refused:
        BearerTokens.from_sources(environ={TOKENS_ENV: text})
    assert ALICE not in str(refused.value)
    assert "short" not in str(refused.value)
    assert "al ice" not in str(refused.value)


def test_a_token_file_that_is_not_utf8_is_refused_naming_the_file_never_a_byte(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_bytes(b"alice:" + ALICE.encode()[:8] + b"\xf0\x28" + ALICE.encode()[8:])
    with pytest.raises(ValueError, match=r"tokens: a token file is UTF-8 text; byte 14 is not$"):
        BearerTokens.from_sources(environ={}, token_file=token_file)


def test_tokens_come_from_the_environment_and_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# who may ask\nmallory:{MALLORY}\n\n")
    tokens = BearerTokens.from_sources(
        environ={TOKENS_ENV: f"alice:{ALICE}"}, token_file=token_file
    )
    assert tokens is not None
    assert tokens.principals == ("alice", "mallory")
    assert tokens.principal(f"Bearer {MALLORY}") == "mallory"
    assert ALICE not in repr(tokens)
    assert BearerTokens.from_sources(environ={}) is None
    app = build_app(environ={TOKENS_ENV: f"alice:{ALICE}"})
    assert app.state.tokens.principals == ("alice",)


def run_serve(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[Any]]:
    """``perfkit serve argv`` with uvicorn left out: its exit status, and the run calls."""
    import uvicorn

    started: list[Any] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server: started.append(server.config))
    try:
        code = main(["serve", *argv])
    except SystemExit as exited:
        code = int(exited.code or 0)
    return code, started


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.com", ""])
def test_serve_on_a_reachable_host_without_tokens_refuses_to_start(
    host: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(TOKENS_ENV, raising=False)
    code, started = run_serve(["--host", host], monkeypatch)
    err = capsys.readouterr().err
    assert (code, started) == (2, [])
    assert len(err.strip().splitlines()) == 1
    assert "--allow-unauthenticated" in err
    assert TOKENS_ENV in err


def test_serve_on_a_localhost_that_resolves_to_a_public_address_needs_tokens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(TOKENS_ENV, raising=False)
    public = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.5", 0))]
    loopback = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *_, **__: loopback + public)
    code, started = run_serve(["--host", "localhost"], monkeypatch)
    assert (code, started) == (2, [])
    assert "--host localhost is reachable from other machines" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--host", "0.0.0.0", "--allow-unauthenticated"], {}),
        (["--host", "0.0.0.0"], {TOKENS_ENV: f"alice:{ALICE}"}),
        (["--host", "127.0.0.1"], {}),
        (["--host", "localhost"], {}),
        (["--host", "::1"], {}),
    ],
)
def test_serve_starts_on_loopback_with_tokens_or_with_the_opt_out(
    argv: list[str], environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKENS_ENV, raising=False)
    for name, text in environ.items():
        monkeypatch.setenv(name, text)
    code, started = run_serve(argv, monkeypatch)
    assert (code, len(started)) == (0, 1)
    assert started[0].host == argv[1]


def test_serve_with_a_token_file_it_cannot_read_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, started = run_serve(["--token-file", str(tmp_path / "missing")], monkeypatch)
    assert (code, started) == (2, [])
    assert "missing: No such file or directory" in capsys.readouterr().err


# --- 3. slow and numerous connections: deadlines, a cap, bounded logs ----------------------

PROTOCOLS = [pytest.param(H11Protocol, id="h11"), pytest.param(HttpToolsProtocol, id="httptools")]
QUICK = ServiceLimits(header_timeout=0.3, body_timeout=0.3, max_connections=10)


@contextlib.contextmanager
def guarded(base: type[Any], limits: ServiceLimits = QUICK) -> Iterator[int]:
    """The naive service on a real uvicorn under ``limits``; yields its port."""
    options = {"http": guarded_protocol(limits, base)}
    options["h11_max_incomplete_event_size"] = limits.max_head_bytes
    with AnthropicSimulator(), running_uvicorn(make_app(), **options) as url:
        yield int(url.rsplit(":", 1)[1])


def read_until_closed(connection: socket.socket, timeout: float = 5.0) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    connection.settimeout(timeout)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(65536):
            received += chunk
    return received, time.monotonic() - started


@pytest.mark.parametrize("base", PROTOCOLS)
@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: service\r\n", id="half-a-head"),
        pytest.param(b"G", id="one-byte"),
    ],
)
def test_a_request_head_that_never_ends_is_timed_out(base: type[Any], sent: bytes) -> None:
    with guarded(base) as port, socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(sent)
        received, took = read_until_closed(connection)
    assert took < 3.0  # 0.3 s and a sweep; never the 5 s the read would wait
    assert received == (b"" if not sent else received)
    if sent:
        assert received.startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize("base", PROTOCOLS)
def test_a_request_body_that_never_ends_is_timed_out_and_counted_499(base: type[Any]) -> None:
    head = b"POST /chat HTTP/1.1\r\nHost: s\r\ncontent-type: application/json\r\n"
    with guarded(base) as port, socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head + b'content-length: 100\r\n\r\n{"user_id": ')
        received, took = read_until_closed(connection)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert took < 3.0
    assert b"200 OK" not in received
    assert 'perfkit_agent_requests_total{endpoint="chat",status="499"} 1.0' in metrics


@pytest.mark.parametrize("base", PROTOCOLS)
def test_a_request_head_over_the_limit_is_refused_431(base: type[Any]) -> None:
    with guarded(base) as port, socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: s\r\n")
        with contextlib.suppress(OSError):  # the server may close while we still send
            for _ in range(1000):
                connection.sendall(b"x-padding: " + b"x" * 100 + b"\r\n")
        received, _ = read_until_closed(connection)
    assert received.split(b"\r\n", 1)[0] in (
        b"HTTP/1.1 431 Request Header Fields Too Large",
        b"HTTP/1.1 400 Bad Request",  # h11's own limit, at the same size
    )


@pytest.mark.parametrize("base", PROTOCOLS)
@pytest.mark.parametrize("line_end", [b"\r\n", b"\n"])
def test_a_request_head_over_the_limit_sent_in_one_write_is_refused_431(
    base: type[Any], line_end: bytes
) -> None:
    fields = b"".join(b"x-%d: y%s" % (n, line_end) for n in range(4000))  # 40+ KB
    head = b"GET /healthz HTTP/1.1%sHost: s%s%s%s" % (line_end, line_end, fields, line_end)
    with guarded(base) as port, socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head)
        received, _ = read_until_closed(connection)
    assert len(head) > QUICK.max_head_bytes
    assert received.split(b"\r\n", 1)[0] == b"HTTP/1.1 431 Request Header Fields Too Large"


@pytest.mark.parametrize("base", PROTOCOLS)
def test_a_large_body_sent_with_its_head_is_not_a_large_head(base: type[Any]) -> None:
    body = json.dumps({"user_id": "ann", "message": "é" * 30_000}, ensure_ascii=False).encode()
    head = f"POST /chat HTTP/1.1\r\nHost: s\r\ncontent-length: {len(body)}\r\n"
    request = head.encode() + b"content-type: application/json\r\nconnection: close\r\n\r\n"
    with guarded(base) as port, socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(request + body)  # one write: head and 60 KB of body together
        received, _ = read_until_closed(connection)
    assert received.startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("base", PROTOCOLS)
def test_at_the_connection_cap_the_slowest_waiting_connection_makes_room(base: type[Any]) -> None:
    limits = ServiceLimits(header_timeout=30, body_timeout=30, max_connections=10)
    with guarded(base, limits) as port:
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(25)]
        try:
            for connection in slow:
                connection.sendall(b"GET /healthz HTTP/1.1\r\n")
            started = time.monotonic()
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            took = time.monotonic() - started
            time.sleep(0.2)  # the closes reach us
            closed = sum(1 for connection in slow if _closed(connection))
        finally:
            for connection in slow:
                connection.close()
    assert health.status_code == 200
    assert took < 2.0  # at once: never the 30 s a slow connection may hold its place
    assert closed >= 25 - 10 + 1  # the oldest ones made room, down to the cap


@pytest.mark.parametrize("base", PROTOCOLS)
def test_good_requests_on_one_keep_alive_connection_are_unaffected(base: type[Any]) -> None:
    with guarded(base) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        statuses = []
        for n in range(3):
            statuses.append(client.post("/chat", json={"user_id": "ann", "message": f"Hi {n}"}))
            time.sleep(0.15)  # idle between requests, under the 0.3 s deadline each time
    assert [response.status_code for response in statuses] == [200] * 3


@pytest.mark.parametrize("base", PROTOCOLS)
def test_a_client_that_never_reads_its_answers_is_dropped_after_the_send_timeout(
    base: type[Any],
) -> None:
    limits = ServiceLimits(header_timeout=30, body_timeout=30, send_timeout=0.2, max_connections=1)
    with guarded(base, limits) as port, socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", port))
        reader.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # pipelined, and never read
            reader.send(b"GET /metrics HTTP/1.1\r\nHost: s\r\n\r\n" * 3000)
        answered, deadline = None, time.monotonic() + 6
        while answered is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the answers fill the buffers, then the send timeout passes
            with contextlib.suppress(httpx.TransportError):  # turned away at the cap
                answered = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        reader.setblocking(True)
        read_until_closed(reader, timeout=3)  # what it got before the server dropped it
    assert answered is not None  # the stalled reader made room
    assert answered.status_code == 200


def _closed(connection: socket.socket) -> bool:
    """Whether the server has closed ``connection`` (read without waiting)."""
    try:
        return connection.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_the_connection_cap_keeps_descriptors_free_for_accept_bursts() -> None:
    cap, burst = ServiceLimits().resolve(descriptor_limit=1024)
    assert cap + ACCEPT_BURSTS * burst + RESERVED_DESCRIPTORS <= 1024
    assert cap >= 512  # most of them still serve clients
    assert ServiceLimits(max_connections=100).resolve(descriptor_limit=1024) == (100, burst)
    with pytest.raises(ValueError, match=f"max_connections must be at most {cap} with a "):
        ServiceLimits(max_connections=1000).resolve(descriptor_limit=1024)
    with pytest.raises(ValueError, match=r"a descriptor limit of 64 .* leaves no room"):
        ServiceLimits().resolve(descriptor_limit=64)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"header_timeout": 0}, "header_timeout must be a positive number of seconds, got 0"),
        ({"body_timeout": -1.0}, "body_timeout must be a positive number of seconds, got -1.0"),
        ({"max_connections": 0}, "max_connections must be an integer of at least 1, got 0"),
        ({"max_head_bytes": 10}, "max_head_bytes must be an integer of at least 1024, got 10"),
        ({"keep_alive": True}, "keep_alive must be an integer of at least 1, got True"),
    ],
)
def test_service_limits_refuse_bad_values(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ServiceLimits(**options)


def test_service_limits_compare_and_show_their_values() -> None:
    assert ServiceLimits(header_timeout=5) == ServiceLimits(header_timeout=5.0)
    assert ServiceLimits(header_timeout=5) != ServiceLimits()
    assert "header_timeout=5.0" in repr(ServiceLimits(header_timeout=5))


def test_identical_log_lines_are_collapsed_and_counted() -> None:
    now = [0.0]
    repeats = RepeatFilter(interval=10, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, "", 0, message, None, None)

    flood = [repeats.filter(record("socket.accept() out of system resource")) for _ in range(1000)]
    other = repeats.filter(record("something else"))
    now[0] = 10.0
    later = record("socket.accept() out of system resource")
    assert (flood.count(True), other, repeats.filter(later)) == (1, True, True)
    assert later.getMessage().endswith("(999 more like this suppressed)")


def test_perfkit_serve_logs_repeated_lines_once_per_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import uvicorn

    def flood(server: Any) -> None:
        for _ in range(500):
            logging.getLogger("asyncio").error("socket.accept() out of system resource")

    monkeypatch.setattr(uvicorn.Server, "run", flood)
    with caplog.at_level(logging.INFO):
        run(make_app())
    assert caplog.text.count("out of system resource") == 1


# --- 7. a slow Redis never stalls the event loop ----------------------------------------------


@contextlib.contextmanager
def delaying_proxy(target_port: int, delay: float) -> Iterator[int]:
    """A TCP proxy on loopback in front of ``target_port`` that holds every chunk the
    client sends for ``delay`` seconds (a slow network to Redis); yields its port."""
    loop = asyncio.new_event_loop()
    writers: set[asyncio.StreamWriter] = set()

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, wait: float) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                await asyncio.sleep(wait)
                sink.write(data)
                await sink.drain()
        sink.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        writers.update((writer, upstream_writer))
        await asyncio.gather(pipe(reader, upstream_writer, delay), pipe(upstream_reader, writer, 0))

    async def stop(server: asyncio.Server) -> None:
        server.close()
        for writer in writers:
            writer.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        asyncio.run_coroutine_threadsafe(stop(server), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def redis_app(redis_url: str) -> Starlette:
    """The optimized agent ``perfkit serve --redis-url`` builds, answered by a quick
    simulator (install one), its Redis client closed when the app stops."""
    agent = build_agent("optimized", redis_url=redis_url)
    agent.client_options.update(api_key="test", max_retries=0)
    assert isinstance(agent, OptimizedAgent)
    redis_client = agent.cache.redis

    @contextlib.asynccontextmanager
    async def closing_redis(app: Starlette) -> AsyncIterator[None]:
        yield
        await redis_client.aclose()

    return create_app(agent, lifespan=closing_redis)


QUICK_LLM = LLMLatency(ttft=0.3, per_token=0.002)


def test_the_optimized_agents_l2_is_an_asyncio_redis_client_with_short_timeouts(
    redis_server: Any,
) -> None:
    import redis.asyncio

    served = build_app(redis_url=redis_server.url, environ={})
    l2 = served.state.agent.cache.redis
    assert isinstance(l2, redis.asyncio.Redis)
    assert 0 < l2.connection_pool.connection_kwargs["socket_timeout"] <= 1.0
    with running_uvicorn(served):  # started and stopped: the client is closed with it
        pass
    redis_server.flush()
    with AnthropicSimulator(latency=QUICK_LLM), running_uvicorn(redis_app(redis_server.url)) as url:
        response = httpx.post(f"{url}/chat", json={"user_id": "ann", "message": "Hi"}, timeout=30)
    assert response.status_code == 200
    with redis.Redis.from_url(redis_server.url) as raw:
        assert raw.dbsize() >= 1  # the reply went to L2


def test_with_redis_delayed_300_ms_healthz_answers_at_once_while_chats_run(
    redis_server: Any,
) -> None:
    with (
        delaying_proxy(redis_server.port, 0.3) as port,
        AnthropicSimulator(latency=QUICK_LLM),
        running_uvicorn(redis_app(f"redis://127.0.0.1:{port}/0")) as url,
    ):

        async def probe() -> tuple[list[int], list[float]]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                chats = [
                    asyncio.ensure_future(
                        client.post("/chat", json={"user_id": f"u{n}", "message": f"Q {n}"})
                    )
                    for n in range(6)
                ]
                waits = []
                for _ in range(4):
                    await asyncio.sleep(0.05)
                    started = time.monotonic()
                    assert (await client.get("/healthz")).status_code == 200
                    waits.append(time.monotonic() - started)
                return [(await chat).status_code for chat in chats], waits

        statuses, waits = asyncio.run(probe())
    assert statuses == [200] * 6  # the cache fails over to the API; chats still answer
    # A blocking client stalled the loop 3.1-3.3 s; the chats' own CPU work, on a busy
    # machine, some 0.2 s.
    assert max(waits) < 1.0, waits


SLOWLORIS_CONNECTIONS = 1_100
SERVICE_DESCRIPTORS = 1_024


@pytest.fixture
def serve_at_1024_descriptors(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``perfkit serve`` at ``ulimit -n 1024``, logging at info to a file; yields its
    URL and the log."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOWLORIS_CONNECTIONS + 200
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the test process may open {hard} descriptors, it needs {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    def at_1024() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (SERVICE_DESCRIPTORS, SERVICE_DESCRIPTORS))

    port = _unused_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", TOKENS_ENV)}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "perfkit", "serve", "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT, env=env, preexec_fn=at_1024,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        yield url, log
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.slow
def test_slowloris_at_1024_descriptors_leaves_healthz_answering_and_the_log_small(
    serve_at_1024_descriptors: tuple[str, Path],
) -> None:
    url, log = serve_at_1024_descriptors
    port = int(url.rsplit(":", 1)[1])
    attackers = []
    try:
        for _ in range(SLOWLORIS_CONNECTIONS):
            attacker = socket.socket()
            attacker.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                attacker.connect(("127.0.0.1", port))
            attackers.append(attacker)
        time.sleep(0.5)
        waits = []
        for round_ in range(8):
            for attacker in attackers:  # one more header line each, never the end
                with contextlib.suppress(OSError):
                    attacker.send(b"GET /healthz HTTP/1.1\r\n" if round_ == 0 else b"x-a: b\r\n")
            started = time.monotonic()
            try:
                status = httpx.get(f"{url}/healthz", timeout=5).status_code
            except httpx.TimeoutException:
                status = 0
            waits.append((status, time.monotonic() - started))
            time.sleep(0.5)
    finally:
        for attacker in attackers:
            attacker.close()
    logged = log.read_bytes()
    assert [status for status, _ in waits] == [200] * len(waits)
    assert max(wait for _, wait in waits) < 1.0, waits
    assert len(logged) < 16_000, logged[-2000:]
    assert b"Too many open files" not in logged
    assert b"Traceback" not in logged


def test_serve_applies_the_limits_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["--max-connections", "50", "--header-timeout", "2", "--body-timeout", "3"]
    code, started = run_serve(argv, monkeypatch)
    assert code == 0
    config = started[0]
    assert config.http.__name__.startswith("Guarded")
    assert config.timeout_keep_alive == 5
    assert config.h11_max_incomplete_event_size == 32 * 1024


def test_serve_gives_its_timeouts_to_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    import perfkit.service._serve

    given: list[ServiceLimits] = []
    monkeypatch.setattr(
        perfkit.service._serve, "guarded_server", lambda app, limits, **_: given.append(limits)
    )
    with contextlib.suppress(AttributeError):  # what it returned cannot run
        main(["serve", "--header-timeout", "2", "--body-timeout", "3", "--send-timeout", "4"])
    assert given == [ServiceLimits(header_timeout=2, body_timeout=3, send_timeout=4)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-connections", "0"], "argument --max-connections: must be an int >= 1, got '0'"),
        (["--header-timeout", "-1"], "argument --header-timeout: must be a number > 0"),
        (["--max-connections", "100000000"], "max_connections must be at most"),
    ],
)
def test_serve_refuses_bad_limits_with_one_line(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, started = run_serve(argv, monkeypatch)
    err = capsys.readouterr().err
    assert (code, started) == (2, [])
    assert message in err
    assert len(err.strip().splitlines()) == 1


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
