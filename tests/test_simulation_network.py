"""The simulated network beneath httpcore's real pool: real reuse, counted connections."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from perfkit import SimulatorError, VirtualClock
from perfkit.pooling import DEFAULT_LIMITS, anthropic_client, connection_stats
from perfkit.simulation import SimulatedNetwork

CONNECT, SERVER = 0.100, 0.500


@pytest.mark.parametrize(("pooled", "connections", "seconds"), [(True, 1, 5.1), (False, 10, 6.0)])
def test_ten_sequential_requests_pooled_and_not(
    pooled: bool, connections: int, seconds: float
) -> None:
    clock = VirtualClock()
    network = SimulatedNetwork(clock=clock, connect=CONNECT, server=SERVER)
    with network.client(pooled=pooled) as client:
        for n in range(10):
            assert client.get(f"http://api.test/item/{n}").json() == {"path": f"/item/{n}"}
    assert network.connections_opened == connections
    assert network.requests == 10
    assert clock.now() == seconds  # the chapter's 6,000 ms unpooled vs 5,100 ms pooled


def test_network_clients_have_the_pooled_clients_limits_or_no_keep_alive() -> None:
    network = SimulatedNetwork(clock=VirtualClock())
    for pooled, keepalive in [(True, DEFAULT_LIMITS.max_keepalive_connections), (False, 0)]:
        with network.client(pooled=pooled) as client:
            pool = client._transport._pool  # type: ignore[attr-defined]
            assert (pool._max_connections, pool._max_keepalive_connections) == (
                DEFAULT_LIMITS.max_connections,
                keepalive,
            )


def test_the_simulation_layer_imports_no_technique() -> None:
    probe = (
        "import sys, perfkit.simulation\n"
        "techniques = ('perfkit.cache', 'perfkit.concurrency', 'perfkit.pooling', "
        "'perfkit.streaming', 'perfkit.agents')\n"
        "loaded = [m for m in techniques if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_https_adds_a_modeled_tls_handshake_per_connection() -> None:
    clock = VirtualClock()
    network = SimulatedNetwork(clock=clock, connect=0.05, tls=0.1, server=0.2)
    with network.client() as client:
        client.get("https://api.test/a")
        client.get("https://api.test/b")
    assert network.connections_opened == 1
    assert clock.now() == 0.05 + 0.1 + 2 * 0.2


def test_concurrent_async_requests_open_one_connection_each_then_reuse_them() -> None:
    clock = VirtualClock()
    network = SimulatedNetwork(clock=clock, connect=CONNECT, server=SERVER)

    async def main() -> None:
        async with network.async_client() as client:
            await asyncio.gather(*(client.get("http://api.test/") for _ in range(3)))
            await asyncio.gather(*(client.get("http://api.test/") for _ in range(3)))

    clock.run(main())
    assert network.connections_opened == 3
    assert clock.now() == CONNECT + 2 * SERVER


def test_request_bodies_and_handler_responses_cross_the_simulated_wire() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            201, headers={"x-seen": request.method}, content=request.content[::-1]
        )

    network = SimulatedNetwork(clock=VirtualClock(), handler=echo)
    with network.client() as client:
        response = client.post("http://api.test/echo", content=b"hello")
    assert (response.status_code, response.headers["x-seen"], response.content) == (
        201,
        "POST",
        b"olleh",
    )


def test_concurrent_http2_requests_multiplex_on_one_connection_served_in_parallel() -> None:
    clock = VirtualClock()
    network = SimulatedNetwork(clock=clock, connect=CONNECT, tls=0.05, server=SERVER)

    async def main() -> list[httpx.Response]:
        async with network.async_client(http2=True) as client:
            return await asyncio.gather(
                *(client.get(f"https://api.test/item/{n}") for n in range(10))
            )

    responses = clock.run(main())
    assert {response.http_version for response in responses} == {"HTTP/2"}
    assert [response.json()["path"] for response in responses] == [f"/item/{n}" for n in range(10)]
    assert network.stats.as_dict() == {
        "requests": 10,
        "opened": 1,
        "closed": 1,
        "open": 0,
        "reuse_ratio": 0.9,
    }
    assert clock.now() == CONNECT + 0.05 + SERVER  # one handshake, ten answers at once


def test_http2_request_bodies_and_headers_cross_the_simulated_wire() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"X-Seen": request.method}, content=request.content)

    network = SimulatedNetwork(clock=VirtualClock(), handler=echo)
    body = bytes(range(256)) * 100  # several frames each way
    with network.client(http2=True) as client:
        response = client.post("https://api.test/echo", content=body)
    assert (response.http_version, response.headers["x-seen"]) == ("HTTP/2", "POST")
    assert response.content == body


def test_http2_is_negotiated_only_when_both_ends_speak_it() -> None:
    h1_only = SimulatedNetwork(clock=VirtualClock(), http2=False)
    with h1_only.client(http2=True) as client:
        assert client.get("https://api.test/").http_version == "HTTP/1.1"
    h2_capable = SimulatedNetwork(clock=VirtualClock())
    with h2_capable.client() as client:
        assert client.get("https://api.test/").http_version == "HTTP/1.1"
    with h2_capable.client(http2=True) as client:
        assert client.get("http://api.test/").http_version == "HTTP/1.1"  # no ALPN without TLS


def test_http2_prior_knowledge_needs_a_network_that_speaks_it() -> None:
    with SimulatedNetwork(clock=VirtualClock()).client(http2=True, http1=False) as client:
        assert client.get("http://api.test/").http_version == "HTTP/2"
    h1_only = SimulatedNetwork(clock=VirtualClock(), http2=False)
    with (
        h1_only.client(http2=True, http1=False) as client,
        pytest.raises(SimulatorError, match="made with http2=False"),
    ):
        client.get("http://api.test/")


def test_an_oversized_http2_response_is_a_clear_error() -> None:
    network = SimulatedNetwork(
        clock=VirtualClock(), handler=lambda request: httpx.Response(200, content=b"x" * 20_000_000)
    )
    with (
        network.client(http2=True) as client,
        pytest.raises(
            SimulatorError,
            match="20000000 bytes exceeds the client's flow-control window of 16842751",
        ),
    ):
        client.get("https://api.test/")


def test_the_anthropic_sdk_runs_its_real_pool_on_the_network() -> None:
    reply = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5",
        "content": [{"type": "text", "text": "hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    clock = VirtualClock()
    network = SimulatedNetwork(
        clock=clock,
        connect=CONNECT,
        tls=0.05,
        server=SERVER,
        handler=lambda request: httpx.Response(200, json=reply),
    )
    with network.attach(anthropic_client(api_key="sim", http2=True)) as client:
        for _ in range(3):
            message = client.messages.create(
                model="claude-sonnet-5",
                max_tokens=8,
                messages=[{"role": "user", "content": "hi"}],
            )
        stats = connection_stats(client)
    assert message.content[0].text == "hello"  # type: ignore[union-attr]
    assert (stats.requests, stats.opened, stats.closed) == (3, 1, 1)
    assert network.connections_opened == 1
    assert clock.now() == CONNECT + 0.05 + 3 * SERVER


def test_a_connect_cancelled_mid_handshake_is_counted_closed() -> None:
    clock = VirtualClock()
    network = SimulatedNetwork(clock=clock, connect=1.0)

    async def main() -> None:
        async with network.async_client() as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await client.get("http://api.test/")

    clock.run(main())
    assert (network.stats.opened, network.stats.open) == (1, 0)


def test_attach_refuses_a_client_without_a_pool() -> None:
    network = SimulatedNetwork(clock=VirtualClock())
    mock = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    with mock, pytest.raises(TypeError, match="MockTransport has no connection pool"):
        network.attach(mock)
