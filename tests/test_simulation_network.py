"""The simulated network beneath httpcore's real pool: real reuse, counted connections."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from perfkit import VirtualClock
from perfkit.simulation._network import SimulatedNetwork

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
    assert clock.now() == seconds  # the seed's 6,000 ms unpooled vs 5,100 ms pooled


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
