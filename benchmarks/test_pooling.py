"""The seed's "Connection Pooling Impact" table, through httpcore's real pool.

Opening a connection is modeled at 100 ms and each call at 500 ms (the seed's figures),
on a simulated network beneath the real pool, so keep-alive and reuse are httpcore's
own; ``connections_opened`` is counted where connections are really opened. The seed
claims 15% for every size: 10 requests give 6,000 vs 5,100 ms (15%), but 100 give
60,000 vs 50,100 ms (16.5%) and 1,000 give 600,000 vs 500,100 ms (16.65%), since only
the first connection is paid for. The table reports what is measured.
"""

from __future__ import annotations

import pytest

from perfkit import Perf
from perfkit._clock import Clock
from perfkit.simulation._network import SimulatedNetwork

CONNECT = 0.100
CALL = 0.500


@pytest.mark.parametrize("requests", [10, 100, 1000])
@pytest.mark.parametrize("pooled", [False, True], ids=["no-pooling", "pooling"])
def test_sequential_requests(perf: Perf, perfkit_clock: Clock, requests: int, pooled: bool) -> None:
    networks: list[SimulatedNetwork] = []

    def setup() -> None:
        networks.append(SimulatedNetwork(clock=perfkit_clock, connect=CONNECT, server=CALL))

    def run() -> int:
        with networks[-1].client(pooled=pooled) as client:
            for _ in range(requests):
                client.get("https://api.test/v1/messages")
        return networks[-1].connections_opened

    perf.counters.track(
        "connections_opened", lambda: networks[-1].connections_opened if networks else 0
    )
    opened = perf(run, rounds=1, setup=setup)
    assert opened == (1 if pooled else requests)
