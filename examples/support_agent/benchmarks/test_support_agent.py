"""The support agent on the simulated Anthropic API and a modeled Redis, in virtual time.

A reply of 21 tokens takes 0.6 s to the first token and 20 ms for each token after it:
1.0 s. Every Redis command is one 2 ms round trip (``perfkit_redis_latency``).
"""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import pytest
import redis
import redis.asyncio
from perfkit import AnthropicSimulator, Clock, LLMLatency, Perf, Reply

from support_agent import POLICY_KEY, Answer, answer, answer_naive

LLM = LLMLatency(ttft=0.6, per_token=0.02)
REPLY = (
    "Your order shipped on Monday and should arrive by Thursday. "
    "You can return it for free within 30 days of delivery."
)
TICKETS = [  # (question, order id): four questions, each asked twice
    ("Where is my order?", "1001"),
    ("Can I return the shoes?", "1002"),
    ("Where is my order?", "1001"),
    ("When does my order arrive?", "1003"),
    ("Can I return the shoes?", "1002"),
    ("Can I change the delivery address?", "1004"),
    ("When does my order arrive?", "1003"),
    ("Can I change the delivery address?", "1004"),
]
AGENTS = {"naive": answer_naive, "improved": answer}
ROUNDS = 3


def seed(store: redis.Redis) -> None:
    """An empty answer cache, the return policy and one order per ticket."""
    with store.pipeline() as pipe:
        pipe.flushdb()
        pipe.set(POLICY_KEY, "Free returns within 30 days of delivery.")
        for _, order_id in TICKETS:
            pipe.set(f"order:{order_id}", "shipped on Monday, arrives on Thursday")
        pipe.execute()


@pytest.mark.perfkit_sim(latency=LLM)
async def test_a_repeated_question_skips_the_api(
    anthropic_sim: AnthropicSimulator,
    async_redis_client: redis.asyncio.Redis,
    perfkit_clock: Clock,
) -> None:
    anthropic_sim.respond_with(Reply.text(REPLY))
    async with anthropic.AsyncAnthropic(api_key="sim") as client:
        start = perfkit_clock.now()
        first = await answer("Where is my order?", "1001", client=client, store=async_redis_client)
        asked = perfkit_clock.elapsed(start)
        start = perfkit_clock.now()
        again = await answer("Where is my order?", "1001", client=client, store=async_redis_client)
        repeated = perfkit_clock.elapsed(start)
    assert first == Answer(REPLY)
    assert again == Answer(REPLY, from_cache=True)
    assert asked == 0.002 + 0.002 + 1.0 + 0.002  # cache miss, both lookups at once, Claude, store
    assert repeated == 0.002  # one round trip, no API call
    assert anthropic_sim.call_count == 1


@pytest.mark.perfkit_sim(latency=LLM)
@pytest.mark.parametrize("agent", list(AGENTS))
def test_inbox(
    perf: Perf,
    anthropic_sim: AnthropicSimulator,
    redis_client: redis.Redis,
    open_store: Callable[[], redis.asyncio.Redis],
    perfkit_clock: Clock,
    agent: str,
) -> None:
    anthropic_sim.respond_with(Reply.text(REPLY))
    hits = 0
    perf.counters.track("cache_hits", lambda: hits, better="higher")
    perf.describe(tickets=len(TICKETS), distinct=len(set(TICKETS)))

    async def work_through_the_inbox() -> list[Answer]:
        nonlocal hits
        answers = []
        async with anthropic.AsyncAnthropic(api_key="sim") as client, open_store() as store:
            for question, order_id in TICKETS:
                start = perfkit_clock.now()
                reply = await AGENTS[agent](question, order_id, client=client, store=store)
                perf.observe(perfkit_clock.elapsed(start))  # each ticket's latency
                if reply.from_cache:
                    hits += 1
                    perf.observe(perfkit_clock.elapsed(start), series="cache_hit")
                answers.append(reply)
        return answers

    answers = perf(work_through_the_inbox, rounds=ROUNDS, setup=lambda: seed(redis_client))
    assert [reply.text for reply in answers] == [REPLY] * len(TICKETS)
    api_calls = {"naive": 8, "improved": 4}[agent]
    assert perf.result.counters["api_requests"] == api_calls * ROUNDS
    assert perf.result.counters["cache_hits"] == (8 - api_calls) * ROUNDS
