"""A long-running service holds its memory flat (every store on its path is bounded) and
lets its idle connections go.

The acceptance figures (the service's own bounds, 1,000 then 10,000 distinct chats) take
minutes; they come from ``python -m tests.test_memory 1000 10000``. The tests below
prove the same with smaller bounds, so that the bounds are reached within seconds.
"""

from __future__ import annotations

import asyncio
import gc
import re
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import httpx
import pytest
from anthropic._constants import DEFAULT_CONNECTION_LIMITS
from starlette.applications import Starlette

from perfkit import VirtualClock
from perfkit.agents import ConversationStore, NaiveAgent, OptimizedAgent, ToolRegistry
from perfkit.cache import MultiLayerCache
from perfkit.service import AgentMetrics, build_agent, create_app, simulated_backend
from perfkit.simulation import AnthropicSimulator, Reply, SimulatedAssistant

QUICK_ASSISTANT = {"reply_tokens": (4, 12), "per_token": 0.0, "ttft_median": 0.05}
"""Short answers, no per-token wait: a chat costs milliseconds of CPU, not seconds."""


def rss_mb() -> float:
    """This process's resident memory, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")  # pragma: no cover - Linux only


def served(
    *, max_users: int | None = None, l1_maxsize: int | None = None
) -> tuple[Starlette, AnthropicSimulator]:
    """What ``perfkit serve`` runs (build_app's parts: the optimized agent, the simulated
    backend, the metrics), its assistant answering quickly; ``max_users`` and
    ``l1_maxsize`` shrink the agent's history and cache bounds."""
    agent = build_agent("optimized")
    assert isinstance(agent, OptimizedAgent)
    if max_users is not None:
        agent.history = ConversationStore(max_users=max_users)
    if l1_maxsize is not None:
        agent.cache = MultiLayerCache(namespace="agent", l1_maxsize=l1_maxsize)
    agent.client_options.setdefault("api_key", "simulated")
    simulator = simulated_backend()
    simulator.respond_with(SimulatedAssistant(**QUICK_ASSISTANT))  # type: ignore[arg-type]
    metrics = AgentMetrics(agent, connections=lambda: simulator.open_connections)
    return create_app(agent, metrics=metrics), simulator


async def chat(client: httpx.AsyncClient, n: int) -> None:
    """Chat ``n``: a user and a question never seen before, every other one streamed."""
    path = "/chat/stream" if n % 2 else "/chat"
    body = {"user_id": f"user-{n}", "message": f"What is the weather in town number {n}?"}
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text


def drive(
    app: Starlette, simulator: AnthropicSimulator, checkpoints: list[int], *, concurrency: int = 20
) -> list[tuple[int, float, float]]:
    """Run distinct chats through ``app`` in process, in virtual time; at each checkpoint
    (a number of chats), after a full collection: (chats, traced MB, RSS MB). Traced
    memory counts only what was allocated since tracemalloc started (the caller's
    choice) and is still alive."""

    async def main() -> list[tuple[int, float, float]]:
        figures = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                done = 0
                for checkpoint in checkpoints:
                    while done < checkpoint:
                        batch = range(done, min(done + concurrency, checkpoint))
                        await asyncio.gather(*(chat(client, n) for n in batch))
                        done = batch.stop
                    gc.collect()
                    traced = tracemalloc.get_traced_memory()[0] / 1e6
                    figures.append((done, traced, rss_mb()))
        return figures

    with simulator:
        return VirtualClock().run(main())


@contextmanager
def tracing() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_live_memory_stays_flat_once_every_bound_is_reached() -> None:
    # The bounds are reached by the first checkpoint (100 requests logged, 40 users'
    # history, 40 cached replies): three times as many chats after it add nothing.
    app, simulator = served(max_users=40, l1_maxsize=40)
    with tracing():
        figures = drive(app, simulator, [100, 400])
    (_, traced_before, rss_before), (_, traced_after, rss_after) = figures
    assert traced_after < traced_before * 1.2, figures
    assert rss_after < rss_before * 1.2, figures
    assert simulator.call_count >= 400
    assert len(simulator.requests) == 100


def test_the_active_connections_gauge_falls_back_when_the_service_is_idle() -> None:
    clock = VirtualClock()
    agent = OptimizedAgent(
        cache=MultiLayerCache(clock=clock), tools=ToolRegistry(), client_options={"api_key": "k"}
    )
    simulator = AnthropicSimulator(clock=clock, latency=0.5, handshake=0.1)
    metrics = AgentMetrics(agent, connections=lambda: simulator.open_connections)
    app = create_app(agent, metrics=metrics, clock=clock)

    async def gauge(client: httpx.AsyncClient) -> float:
        text = (await client.get("/metrics")).text
        return float(re.findall(r"^perfkit_agent_active_connections (\S+)$", text, re.M)[0])

    async def main() -> list[float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            await asyncio.gather(*(chat(client, n) for n in range(120)))
            readings = [await gauge(client)]
            await asyncio.sleep(6.0)  # idle for longer than the SDK pool's keep-alive
            readings.append(await gauge(client))
        await agent.aclose()
        return readings

    with simulator:
        after_the_burst, idle = clock.run(main())
    assert simulator.connections_opened == 120
    assert after_the_burst == DEFAULT_CONNECTION_LIMITS.max_keepalive_connections
    assert idle == 0


def test_the_service_logs_only_its_newest_requests() -> None:
    simulator = simulated_backend()
    assert simulator.max_logged is not None
    assert simulator.max_logged <= 100


def test_the_simulator_keeps_its_newest_requests_and_counts_them_all() -> None:
    clock = VirtualClock()
    with AnthropicSimulator(clock=clock, max_logged=3) as sim:
        sim.respond_with(Reply.text("four tokens of answer"))
        with anthropic.Anthropic(api_key="test") as client:
            for n in range(10):
                client.messages.create(**ask(f"question {n}"))
        assert [request.index for request in sim.requests] == [7, 8, 9]
        assert sim.last_request.index == 9
        assert sim.call_count == 10
        assert sim.output_tokens == 10 * sim.last_request.output_tokens > 0
        # respx keeps each call's request and response (the whole streamed body): bounded too
        assert len(sim.router.calls) == len(sim.messages_route.calls) == 3


def test_a_streamed_reply_counts_its_tokens_once_it_is_read() -> None:
    clock = VirtualClock()

    async def stream() -> None:
        async with (
            anthropic.AsyncAnthropic(api_key="test") as client,
            await client.messages.create(**ask("hi"), stream=True) as events,
        ):
            async for _ in events:
                pass

    with AnthropicSimulator(clock=clock, max_logged=0) as sim:
        sim.respond_with(Reply.of_tokens(7))
        clock.run(stream())
        assert (sim.call_count, sim.output_tokens, sim.requests) == (1, 7, [])


def test_a_simulator_with_no_log_says_so_when_asked_for_the_last_request() -> None:
    with AnthropicSimulator(clock=VirtualClock(), max_logged=0) as sim:
        with anthropic.Anthropic(api_key="test") as client:
            client.messages.create(**ask("hi"))
        with pytest.raises(Exception, match=r"max_logged=0"):
            _ = sim.last_request


def test_every_request_is_kept_on_request() -> None:
    with (
        AnthropicSimulator(clock=VirtualClock(), max_logged=None) as sim,
        anthropic.Anthropic(api_key="test") as client,
    ):
        for _ in range(3):
            client.messages.create(**ask("hi"))
    assert len(sim.requests) == len(sim.router.calls) == 3


@pytest.mark.parametrize("bad", [-1, 1.5, True, "100"])
def test_a_bad_log_bound_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"max_logged must be an int >= 0, or None"):
        AnthropicSimulator(max_logged=bad)


def test_history_over_all_users_stays_within_its_token_budget() -> None:
    store = ConversationStore(max_tokens=100, max_total_tokens=1_000)
    exchange = [{"role": "user", "content": "x" * 200}]  # about 50 tokens
    for n in range(1_000):
        store.add(f"user-{n}", exchange)
    assert 950 <= store.total_tokens <= 1_000
    assert store.messages("user-999") == exchange
    assert store.messages("user-0") == []  # the least recently active went first


def test_the_naive_agent_remembers_a_bounded_number_of_users() -> None:
    clock = VirtualClock()
    agent = NaiveAgent(max_users=3, tools=ToolRegistry(), client_options={"api_key": "test"})

    async def many_users() -> None:
        for n in range(10):
            await agent.chat(f"user-{n}", "What is Python?")

    with AnthropicSimulator(clock=clock):
        clock.run(many_users())
    assert list(agent.conversations) == ["user-7", "user-8", "user-9"]


def ask(question: str) -> dict[str, Any]:
    return {
        "model": "claude-simulated",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": question}],
    }


def main(arguments: list[str]) -> None:
    """Print (chats, traced MB, RSS MB) at each checkpoint, for the service as it is
    served; ``--trace`` traces live memory too (about five times slower)."""
    trace = "--trace" in arguments
    checkpoints = [int(a) for a in arguments if a != "--trace"] or [1_000, 10_000]
    app, simulator = served()
    started = time.perf_counter()
    if trace:
        tracemalloc.start()
    for chats, traced, rss in drive(app, simulator, checkpoints):
        print(f"{chats:>7,} chats: traced {traced:7.1f} MB, RSS {rss:7.1f} MB", flush=True)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])


def test_a_simulator_keeps_a_bounded_number_of_failures_and_counts_the_rest() -> None:
    # An unmatched request (or a failing responder) is kept until taken, with its
    # traceback's frames: a long-running process whose requests keep failing kept all.
    from perfkit._errors import UnmatchedRequestError
    from perfkit.simulation.server import MAX_FAILURES_KEPT

    simulator = AnthropicSimulator().start()
    with httpx.Client() as client:
        for n in range(MAX_FAILURES_KEPT + 50):
            with pytest.raises(UnmatchedRequestError):
                client.get(f"https://elsewhere.example/{n}")
    with pytest.raises(UnmatchedRequestError) as raised:
        simulator.stop()
    assert "/0;" in str(raised.value)
    assert raised.value.__notes__ == [
        f"({MAX_FAILURES_KEPT + 49} more failures while the simulator was active)"
    ]
    simulator.start()
    with httpx.Client() as client:
        for n in range(MAX_FAILURES_KEPT + 50):
            with pytest.raises(UnmatchedRequestError):
                client.get(f"https://elsewhere.example/{n}")
    assert len(simulator.pop_failures()) == MAX_FAILURES_KEPT
    simulator.stop()
