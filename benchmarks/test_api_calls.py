"""Three calls to the simulated Anthropic API, one after another and all at once.

The chapter's async table: 3 API calls, 900 ms sequential, 300 ms concurrent. The
simulator models each call at a fixed 300 ms; the figures below are measured.
"""

from __future__ import annotations

import asyncio

import anthropic
import pytest

from perfkit import AnthropicSimulator, LLMLatency, Perf

CALLS = 3
CALL_LATENCY = LLMLatency(ttft=0.300)
MODEL = "claude-sonnet-5"


async def _ask(client: anthropic.AsyncAnthropic, question: str) -> str:
    message = await client.messages.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": question}]
    )
    return message.content[0].text if message.content[0].type == "text" else ""


async def sequential() -> list[str]:
    async with anthropic.AsyncAnthropic(api_key="sim") as client:
        return [await _ask(client, f"question {n}") for n in range(CALLS)]


async def concurrent() -> list[str]:
    async with anthropic.AsyncAnthropic(api_key="sim") as client:
        return list(await asyncio.gather(*(_ask(client, f"question {n}") for n in range(CALLS))))


@pytest.mark.perfkit_sim(latency=CALL_LATENCY)
@pytest.mark.parametrize("scenario", [sequential, concurrent], ids=["sequential", "concurrent"])
def test_three_api_calls(perf: Perf, anthropic_sim: AnthropicSimulator, scenario: object) -> None:
    answers = perf(scenario, rounds=5)
    assert len(answers) == CALLS
    assert perf.result.counters["api_requests"] == CALLS * 5
