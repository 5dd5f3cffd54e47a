"""Prompt caching: the optimized agent with and without ``cache_control`` breakpoints, on
a customer-support workload whose prompt is of a real size.

Every request carries the support agent's system prompt and nine tool definitions
(:data:`~perfkit.agents.SUPPORT_SYSTEM_PROMPT`, :func:`~perfkit.agents.support_tools`:
about 2,300 simulator tokens) and the user's growing history. ``users`` customers arrive
as a Poisson process; each asks between ``questions_per_user`` questions (every one
different, so the response cache never answers and what is compared is prompt caching
alone), thinking between replies. The simulated model is
:class:`~perfkit.simulation.SimulatedAssistant`: a share ``tool_rate`` of questions get
tool calls first, and each reply's time to first token is a log-normal base plus the
prefill of the uncached input and the read of the cached input (``TYPICAL``: a cited
preset for Claude Sonnet 4.5).

The agents differ only in ``prompt_caching``; both trim history to the same budget, in
steps (the store's default). A third run trims one exchange every question instead, to
show what trimming in steps saves once prompts are cached. Figures: the time to the
first text the user sees (``observed``), the time to the complete reply (``complete``),
the API's input token counters (uncached input, cache writes, cache reads, and
prefilled: the first two) and the cost (``usd``).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from perfkit import AnthropicSimulator, Perf
from perfkit._clock import Clock
from perfkit._perf import Counters
from perfkit.agents import (
    SUPPORT_SYSTEM_PROMPT,
    ConversationStore,
    OptimizedAgent,
    support_tools,
)
from perfkit.cache import MultiLayerCache
from perfkit.simulation import LLMLatency, SimulatedAssistant, fake_redis

TYPICAL = LLMLatency.typical("claude-sonnet-4-5")
"""The cited preset (perfkit/simulation/_latency.py, TYPICAL_MODELS): a base time to first
token of 1.69 s (Artificial Analysis' 1.80 s median at 1,000 input tokens, less their
prefill), 0.00011 s per prefilled token and 0.00001444 s per token read from the cache
(the slopes of Anthropic's prompt-caching announcement), 63 output tokens per second.
The simulated assistant takes the rates' medians: it draws the base per reply."""

_QUESTIONS = (
    "Where is my order LH-{n}? It was supposed to arrive yesterday.",
    "Can I return the kettle from order LH-{n}? I opened it but never used it.",
    "The tracking for LH-{n} has not moved for four days. What is going on?",
    "Is the KTL-2200-BLK kettle in stock for delivery to postcode {n}?",
    "My dishwasher with serial SN{n} stopped draining. Is it still under warranty?",
    "I was charged twice for order LH-{n}. Can you refund one of the charges?",
    "Can I change the delivery address of order LH-{n} to my office?",
    "How do I descale the coffee machine I bought in order LH-{n}?",
    "The blender from LH-{n} arrived with a cracked jug. What should I do?",
    "When will the refund for my return on order LH-{n} reach my card?",
    "Does the filter FLT-{n} fit the fridge model I bought last year?",
    "Thanks. And what is your returns policy for large appliances like my washer {n}?",
)


@dataclass(frozen=True)
class Workload:
    """Every parameter of the prompt-caching workload."""

    seed: int = 2026
    users: int = 12
    user_arrival_rate: float = 0.2  # new customers per second, Poisson
    questions_per_user: tuple[int, int] = (8, 15)  # uniform
    think_time: tuple[float, float] = (10.0, 60.0)  # seconds, under the cache's 5 minutes
    tool_rate: float = 0.4
    tools_per_turn: tuple[int, int] = (1, 3)
    reply_tokens: tuple[int, int] = (60, 300)
    ttft_median: float = TYPICAL.ttft.median  # the base, before the prompt's processing
    ttft_sigma: float = TYPICAL.ttft.sigma
    prefill_per_token: float = TYPICAL.prefill_per_token.median
    cache_read_per_token: float = TYPICAL.cache_read_per_token.median
    per_token: float = round(1 / 63, 6)  # the preset's mean gap: 63 tokens per second
    tool_latency: tuple[float, float] = (0.1, 0.5)
    handshake: float = 0.1
    history_tokens: int = 4_000  # the agent's default per-user budget

    def sessions(self) -> list[tuple[str, float, list[tuple[str, float]]]]:
        """Each customer's id, arrival time, and (question, think time after the reply)."""
        rng = random.Random(self.seed)
        sessions = []
        arrival = 0.0
        for user in range(self.users):
            arrival += rng.expovariate(self.user_arrival_rate)
            asked = [
                rng.choice(_QUESTIONS).format(n=rng.randrange(100_000, 999_999))
                for _ in range(rng.randint(*self.questions_per_user))
            ]
            thinking = [round(rng.uniform(*self.think_time), 3) for _ in asked]
            sessions.append(
                (f"customer-{user}", round(arrival, 6), list(zip(asked, thinking, strict=True)))
            )
        return sessions

    def assistant(self) -> SimulatedAssistant:
        return SimulatedAssistant(
            seed=self.seed,
            tool_rate=self.tool_rate,
            tools_per_turn=self.tools_per_turn,
            reply_tokens=self.reply_tokens,
            ttft_median=self.ttft_median,
            ttft_sigma=self.ttft_sigma,
            per_token=self.per_token,
            prefill_per_token=self.prefill_per_token,
            cache_read_per_token=self.cache_read_per_token,
        )


WORKLOAD = Workload()

VARIANTS: dict[str, dict[str, Any]] = {
    "without-prompt-caching": {"prompt_caching": False},
    "with-prompt-caching": {"prompt_caching": True},
    # History trimmed one exchange per question (the store's trim_to=1.0), not in steps.
    "with-prompt-caching-trimmed-every-question": {"prompt_caching": True, "trim_to": 1.0},
}


class MeteredAgent(OptimizedAgent):
    """The optimized agent, adding the input tokens the API reported to ``tokens``."""

    tokens: dict[str, int]

    async def _turn(self, session: Any, request: dict[str, Any]) -> Any:
        async for piece in super()._turn(session, request):
            if isinstance(piece, dict):
                usage = piece.get("usage") or {}
                for kind in self.tokens:
                    self.tokens[kind] += usage.get(f"{kind}_tokens") or 0
            yield piece


def make_agent(
    clock: Clock,
    workload: Workload = WORKLOAD,
    *,
    prompt_caching: bool = True,
    trim_to: float | None = None,
) -> MeteredAgent:
    """The optimized agent on the support prompt; ``trim_to`` None: the store's default."""
    trimming = {} if trim_to is None else {"trim_to": trim_to}
    agent = MeteredAgent(
        tools=support_tools(latency=workload.tool_latency, seed=workload.seed),
        system=SUPPORT_SYSTEM_PROMPT,
        cache=MultiLayerCache(fake_redis(), namespace="prompt-caching", clock=clock),
        history=ConversationStore(max_tokens=workload.history_tokens, **trimming),
        client_options={"api_key": "simulated"},
        prompt_caching=prompt_caching,
    )
    agent.tokens = dict.fromkeys(("input", "cache_creation_input", "cache_read_input", "output"), 0)
    return agent


async def run_workload(
    agent: OptimizedAgent, clock: Clock, workload: Workload = WORKLOAD
) -> tuple[list[float], list[float]]:
    """Play every session; the time to the first text and to the complete reply of each."""
    first_text: list[float] = []
    complete: list[float] = []

    async def session(user: str, arrival: float, questions: list[tuple[str, float]]) -> None:
        await asyncio.sleep(arrival)
        for question, think in questions:
            sent = clock.now()
            first: float | None = None
            async for _ in agent.chat_stream(user, question):
                if first is None:
                    first = clock.elapsed(sent)
            assert first is not None
            first_text.append(first)
            complete.append(clock.elapsed(sent))
            await asyncio.sleep(think)

    try:
        await asyncio.gather(*(session(*s) for s in workload.sessions()))
    finally:
        await agent.aclose()
    return first_text, complete


def track_tokens(counters: Counters, agent: MeteredAgent) -> None:
    """The API's input token counters, as the perf fixture reports them; prefilled: the
    uncached input and the cache writes, what the model processes anew."""
    counters.track("api_input_tokens", lambda: agent.tokens["input"])
    counters.track("api_cache_write_tokens", lambda: agent.tokens["cache_creation_input"])
    # Reads replace prefill: fewer reads for the same conversations is the regression.
    counters.track(
        "api_cache_read_tokens", lambda: agent.tokens["cache_read_input"], better="higher"
    )
    counters.track(
        "api_prefilled_tokens",
        lambda: agent.tokens["input"] + agent.tokens["cache_creation_input"],
    )


@pytest.mark.perfkit_sim(handshake=WORKLOAD.handshake, seed=WORKLOAD.seed)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_prompt_caching(
    perf: Perf,
    anthropic_sim: AnthropicSimulator,
    perfkit_clock: Clock,
    perfkit_counters: Counters,
    variant: str,
) -> None:
    anthropic_sim.respond_with(WORKLOAD.assistant())
    agent = make_agent(perfkit_clock, **VARIANTS[variant])
    track_tokens(perfkit_counters, agent)

    async def workload() -> tuple[list[float], list[float]]:
        first_text, complete = await run_workload(agent, perfkit_clock)
        for seen, done in zip(first_text, complete, strict=True):
            perf.observe(seen)
            perf.observe(done, series="complete")
        return first_text, complete

    perf.describe(**asdict(WORKLOAD), **VARIANTS[variant])
    first_text, _ = perf(workload)
    assert len(first_text) == sum(len(q) for _, _, q in WORKLOAD.sessions())
    read = agent.tokens["cache_read_input"]
    assert (read > 0) is agent.prompt_caching
