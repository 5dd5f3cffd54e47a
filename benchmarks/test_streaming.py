"""Perceived latency of a long reply, streamed and not streamed (the chapter's "Write me a
story": 5 s of nothing, or the first words after 0.5 s).

The simulator models 500 ms to the first token and 20 ms per token after it; a reply of
226 tokens takes 0.5 + 225 x 0.02 = 5.0 s in all. Streamed, the user sees the first
token at TTFT; not streamed, only when the whole reply has arrived. ``perf.observe``
records what the user perceives, measured through the real SDK's stream parsing.
"""

from __future__ import annotations

import anthropic
import pytest

from perfkit import AnthropicSimulator, LLMLatency, Perf, Reply
from perfkit._clock import Clock

TOKENS = 226
LATENCY = LLMLatency(ttft=0.500, per_token=0.020)
REQUEST = {
    "model": "claude-sonnet-5",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Write me a story"}],
}


@pytest.mark.perfkit_sim(latency=LATENCY)
@pytest.mark.parametrize("streamed", [False, True], ids=["not-streamed", "streamed"])
def test_perceived_latency(
    perf: Perf, anthropic_sim: AnthropicSimulator, perfkit_clock: Clock, streamed: bool
) -> None:
    anthropic_sim.respond_with(Reply.of_tokens(TOKENS))

    async def one_reply() -> int:
        async with anthropic.AsyncAnthropic(api_key="sim") as client:
            start = perfkit_clock.now()
            if not streamed:
                message = await client.messages.create(**REQUEST)  # type: ignore[call-overload]
                perf.observe(perfkit_clock.elapsed(start))
                return int(message.usage.output_tokens)
            first_token: float | None = None
            async with client.messages.stream(**REQUEST) as stream:  # type: ignore[arg-type]
                async for event in stream:
                    if event.type == "content_block_delta" and first_token is None:
                        first_token = perfkit_clock.elapsed(start)
                final = await stream.get_final_message()
            assert first_token is not None
            perf.observe(first_token)
            return int(final.usage.output_tokens)

    assert perf(one_reply, rounds=3) == TOKENS
