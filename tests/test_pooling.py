"""Pooled clients, their lifecycle and connection counts, proven against a real HTTPS
server on loopback (hypercorn, HTTP/1.1 and HTTP/2): the pool's counts are checked
against the client ports the server saw."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import anthropic
import httpx
import pytest
from loopback_https import LoopbackHTTPS

import perfkit.pooling
from perfkit.pooling import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    ConnectionStats,
    SharedAsyncClient,
    SharedClient,
    anthropic_client,
    async_anthropic_client,
    connection_stats,
    live_connection_stats,
    pooled_async_client,
    pooled_client,
    track_connections,
)

UNPOOLED = httpx.Limits(max_connections=100, max_keepalive_connections=0)


def question(n: int) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": f"question {n}"}],
    }


def test_public_names_are_pinned() -> None:
    assert perfkit.pooling.__all__ == [
        "DEFAULT_LIMITS",
        "DEFAULT_TIMEOUT",
        "ConnectionStats",
        "SharedAsyncClient",
        "SharedClient",
        "anthropic_client",
        "async_anthropic_client",
        "connection_stats",
        "live_connection_stats",
        "pooled_async_client",
        "pooled_client",
        "register_stats",
        "track_connections",
    ]
    assert all(hasattr(perfkit.pooling, name) for name in perfkit.pooling.__all__)


def test_the_counting_core_loads_neither_httpx_nor_anthropic() -> None:
    probe = (
        "import sys, perfkit._connections\n"
        "heavy = [m for m in ('anthropic', 'httpx', 'httpx2') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_any_wrapper_keeping_an_http_client_in_client_is_tracked_through_it(
    https_server: LoopbackHTTPS,
) -> None:
    class Wrapper:  # as anthropic clients keep theirs, found without importing anthropic
        def __init__(self, client: httpx.Client) -> None:
            self._client = client

    with httpx.Client(verify=https_server.trust()) as client:
        stats = track_connections(Wrapper(client))
        client.get(https_server.url)
        assert connection_stats(client) is stats
        assert (stats.requests, stats.opened) == (1, 1)


def test_register_stats_makes_stats_live_for_leak_checks() -> None:
    stats = perfkit.pooling.register_stats(ConnectionStats())
    assert stats in live_connection_stats()


def test_connection_stats_start_at_zero_and_compute_reuse() -> None:
    stats = ConnectionStats()
    assert stats.as_dict() == {
        "requests": 0,
        "opened": 0,
        "closed": 0,
        "open": 0,
        "reuse_ratio": 0.0,
    }
    for _ in range(10):
        stats.count_request()
    stats.count_open()
    assert (stats.open, stats.reuse_ratio) == (1, 0.9)
    stats.count_close()
    assert stats.open == 0
    assert repr(stats) == "ConnectionStats(requests=10, opened=1, closed=1, open=0)"


def test_pooled_clients_use_the_chapters_limits_and_timeout() -> None:
    with pooled_client() as client:
        pool = client._transport._pool._inner  # type: ignore[attr-defined]
        assert (pool._max_connections, pool._max_keepalive_connections) == (100, 20)
        assert client.timeout == DEFAULT_TIMEOUT == httpx.Timeout(10.0)
        assert not pool._http2
    assert (DEFAULT_LIMITS.max_connections, DEFAULT_LIMITS.max_keepalive_connections) == (100, 20)


def test_http11_sequential_requests_open_one_connection_pooled(
    https_server: LoopbackHTTPS,
) -> None:
    with pooled_client(verify=https_server.trust()) as client:
        seen = [client.get(f"{https_server.url}/n/{n}").json() for n in range(10)]
        stats = connection_stats(client)
        assert (stats.requests, stats.opened, stats.open) == (10, 1, 1)
    assert stats.closed == 1
    assert {s["http_version"] for s in seen} == {"1.1"}
    assert len({s["client_port"] for s in seen}) == 1  # the server saw one connection


def test_http11_sequential_requests_open_one_connection_each_unpooled(
    https_server: LoopbackHTTPS,
) -> None:
    with pooled_client(limits=UNPOOLED, verify=https_server.trust()) as client:
        seen = [client.get(f"{https_server.url}/n/{n}").json() for n in range(10)]
        stats = connection_stats(client)
        assert (stats.requests, stats.opened, stats.closed) == (10, 10, 10)
    assert stats.reuse_ratio == 0.0
    assert len({s["client_port"] for s in seen}) == 10


@pytest.mark.parametrize(("http2", "version"), [(False, "1.1"), (True, "2")])
async def test_sequential_async_requests_reuse_one_connection(
    https_server: LoopbackHTTPS, http2: bool, version: str
) -> None:
    async with pooled_async_client(http2=http2, verify=https_server.trust()) as client:
        seen = [(await client.get(f"{https_server.url}/n/{n}")).json() for n in range(10)]
        stats = connection_stats(client)
    assert (stats.requests, stats.opened, stats.closed) == (10, 1, 1)
    assert {s["http_version"] for s in seen} == {version}


async def test_concurrent_http2_requests_share_one_connection(
    https_server: LoopbackHTTPS,
) -> None:
    async with pooled_async_client(http2=True, verify=https_server.trust()) as client:
        responses = await asyncio.gather(
            *(client.get(f"{https_server.url}/slow?seconds=0.2") for _ in range(10))
        )
        stats = connection_stats(client)
    seen = [response.json() for response in responses]
    assert {response.http_version for response in responses} == {"HTTP/2"}
    assert {s["http_version"] for s in seen} == {"2"}
    assert len({s["client_port"] for s in seen}) == 1
    assert (stats.requests, stats.opened, stats.closed) == (10, 1, 1)


async def test_concurrent_http11_requests_need_a_connection_each(
    https_server: LoopbackHTTPS,
) -> None:
    async with pooled_async_client(verify=https_server.trust()) as client:
        responses = await asyncio.gather(
            *(client.get(f"{https_server.url}/slow?seconds=0.2") for _ in range(5))
        )
        stats = connection_stats(client)
    assert len({response.json()["client_port"] for response in responses}) == 5
    assert (stats.requests, stats.opened, stats.closed) == (5, 5, 5)


def test_a_failed_tls_handshake_counts_its_connection_closed(
    https_server: LoopbackHTTPS,
) -> None:
    with pooled_client() as client:  # the default trust store does not know the test CA
        with pytest.raises(httpx.ConnectError):
            client.get(https_server.url)
        stats = connection_stats(client)
        assert (stats.requests, stats.opened, stats.closed) == (1, 1, 1)


def test_anthropic_client_keeps_the_sdks_defaults() -> None:
    with anthropic_client(api_key="test") as client:
        http_client = client._client
        assert isinstance(http_client, anthropic.DefaultHttpxClient)
        assert http_client.timeout == anthropic.DEFAULT_TIMEOUT
        pool = http_client._transport._pool._inner
        assert (pool._max_connections, pool._max_keepalive_connections) == (
            anthropic.DEFAULT_CONNECTION_LIMITS.max_connections,
            anthropic.DEFAULT_CONNECTION_LIMITS.max_keepalive_connections,
        )
        assert pool._socket_options  # TCP keep-alive, as the SDK sets it
        assert connection_stats(client) is connection_stats(http_client)


@pytest.mark.parametrize(("http2", "version"), [(False, "1.1"), (True, "2")])
def test_anthropic_client_reuses_one_connection_over_https(
    https_server: LoopbackHTTPS, http2: bool, version: str
) -> None:
    with anthropic_client(
        http2=http2,
        api_key="test",
        base_url=https_server.url,
        http_options={"verify": https_server.trust()},
    ) as client:
        replies = [client.messages.create(**question(n)) for n in range(5)]
        stats = connection_stats(client)
    seen = [json.loads(reply.content[0].text) for reply in replies]  # type: ignore[union-attr]
    assert {s["http_version"] for s in seen} == {version}
    assert len({s["client_port"] for s in seen}) == 1
    assert (stats.requests, stats.opened, stats.closed) == (5, 1, 1)


async def test_async_anthropic_client_shares_one_http2_connection(
    https_server: LoopbackHTTPS,
) -> None:
    async with async_anthropic_client(
        http2=True,
        api_key="test",
        base_url=https_server.url,
        http_options={"verify": https_server.trust()},
    ) as client:
        await asyncio.gather(*(client.messages.create(**question(n)) for n in range(5)))
        stats = connection_stats(client)
    assert (stats.requests, stats.opened, stats.closed) == (5, 1, 1)


def test_tracking_a_client_twice_gives_the_same_stats() -> None:
    with httpx.Client() as client:
        assert track_connections(client) is track_connections(client)
        assert track_connections(client) in live_connection_stats()


def test_clients_tracked_with_one_stats_are_counted_together(https_server: LoopbackHTTPS) -> None:
    shared = ConnectionStats()
    for _ in range(2):
        with httpx.Client(verify=https_server.trust()) as client:
            assert track_connections(client, shared) is shared
            client.get(https_server.url)
            assert shared.open == 1
    assert (shared.requests, shared.opened, shared.closed) == (2, 2, 2)
    with httpx.Client() as client:
        track_connections(client)
        with pytest.raises(ValueError, match="already tracked with other statistics"):
            track_connections(client, shared)


def test_tracking_counts_mounted_transports_too(https_server: LoopbackHTTPS) -> None:
    mounted = httpx.HTTPTransport(verify=https_server.trust())
    with httpx.Client(mounts={"https://127.0.0.1": mounted}) as client:
        stats = track_connections(client)
        client.get(https_server.url)
        assert (stats.requests, stats.opened) == (1, 1)
    assert stats.closed == 1


def test_untracked_and_unsupported_clients_are_refused() -> None:
    with httpx.Client() as client, pytest.raises(ValueError, match="Client object is not tracked"):
        connection_stats(client)
    with pytest.raises(TypeError, match="got str"):
        track_connections("https://example.invalid")
    mock = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    with mock, pytest.raises(TypeError, match="a MockTransport has no connection pool"):
        track_connections(mock)


def test_shared_client_is_one_per_process_and_closes(https_server: LoopbackHTTPS) -> None:
    with SharedClient(lambda: pooled_client(verify=https_server.trust())) as shared:
        first = shared.get()
        assert shared.get() is first
        first.get(https_server.url)
        assert connection_stats(first).open == 1
    assert first.is_closed
    assert connection_stats(first).open == 0
    assert shared.get() is not first  # made anew after close
    shared.close()


def test_shared_client_makes_a_new_client_in_a_forked_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = SharedClient(pooled_client)
    parents = shared.get()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as a forked child sees it
    childs = shared.get()
    assert childs is not parents
    shared.close()
    assert childs.is_closed
    parents.close()


async def test_shared_async_client_is_one_per_event_loop() -> None:
    shared = SharedAsyncClient(pooled_async_client)
    async with shared.lifespan():
        mine = shared.get()
        assert shared.get() is mine

        def in_another_loop() -> bool:
            async def other() -> bool:
                theirs = shared.get()
                await shared.aclose()
                return theirs is not mine and theirs.is_closed

            return asyncio.run(other())

        assert await asyncio.to_thread(in_another_loop)
    assert mine.is_closed


async def test_shared_async_client_closes_anthropic_clients_too() -> None:
    shared = SharedAsyncClient(lambda: async_anthropic_client(api_key="test"))
    client = shared.get()
    await shared.aclose()
    assert client.is_closed()
    await shared.aclose()  # nothing left to close: no error


def test_shared_async_client_needs_a_running_loop() -> None:
    shared = SharedAsyncClient(pooled_async_client)
    with pytest.raises(RuntimeError, match=r"SharedAsyncClient.get\(\) must be called from"):
        shared.get()
