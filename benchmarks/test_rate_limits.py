"""Rate limits: what the SDK's retries do to p95 and errors as concurrency rises past the
limit, beside a client-side limiter that paces requests from the API's own headers.

The simulated API enforces Tier 1's 8,000 output tokens per minute (the API's rate-limits
page), as the API does per model: each request holds its ``max_tokens`` (1,024, as in the
recorded exchange) until it ends, then gives back what its short reply did not use, so
about 7 fit at once. Each of ``users`` users sends ``REQUESTS_EACH`` requests one after
another, all starting at once: 5 users stay inside the limit; 10, 20 and 40 are past it.
Each request's latency runs from when it was meant to be sent to its reply (retries and
waiting included); a request refused past the SDK's retries counts as failed.

- ``sdk-retries``: the SDK's defaults (2 retries, each after ``retry-after``). The API's
  ``retry-after`` counts only the refill, not what requests still running will give back;
  refused requests retry together, a few get in, the rest are refused again, and after
  the second retry they fail.
- ``limiter``: :class:`perfkit.concurrency.RateLimiter` on the SDK's HTTP client (the same
  SDK and retries behind it): requests wait their turn on the client, sent as soon as a
  reply gives its unused estimate back, and are not refused.
"""

from __future__ import annotations

import asyncio

import anthropic
import pytest

from perfkit import Perf
from perfkit._clock import Clock
from perfkit.concurrency import RateLimiter
from perfkit.simulation import AnthropicSimulator, LLMLatency, RateLimits

LIMITS = RateLimits(
    requests_per_minute=1_000, input_tokens_per_minute=100_000, output_tokens_per_minute=8_000
)
LATENCY = LLMLatency(connect=0.05, ttft=0.4, per_token=0.02)
REQUESTS_EACH = 3
MAX_TOKENS = 1_024
MODEL = "claude-sonnet-4-5"
USERS = (5, 10, 20, 40)


async def run_users(users: int, clock: Clock, *, limiter: RateLimiter | None) -> list[float | None]:
    """Every request's latency from its intended send to its end; None where it failed."""
    hooks = limiter.event_hooks() if limiter is not None else {}
    http_client = anthropic.DefaultAsyncHttpxClient(event_hooks=hooks)
    async with anthropic.AsyncAnthropic(api_key="simulated", http_client=http_client) as client:

        async def user(number: int) -> list[float | None]:
            seen: list[float | None] = []
            for turn in range(REQUESTS_EACH):
                sent = clock.now()
                try:
                    await client.messages.create(
                        model=MODEL,
                        max_tokens=MAX_TOKENS,
                        messages=[{"role": "user", "content": f"user {number}, question {turn}"}],
                    )
                except anthropic.RateLimitError:
                    seen.append(None)
                    continue
                seen.append(clock.elapsed(sent))
            return seen

        every = await asyncio.gather(*(user(number) for number in range(users)))
    return [latency for seen in every for latency in seen]


@pytest.mark.perfkit_sim(latency=LATENCY, rate_limits=LIMITS)
@pytest.mark.parametrize("users", USERS)
@pytest.mark.parametrize("technique", ["sdk-retries", "limiter"])
def test_concurrency_past_the_rate_limit(
    perf: Perf,
    anthropic_sim: AnthropicSimulator,
    perfkit_clock: Clock,
    technique: str,
    users: int,
) -> None:
    failed = [0]
    perf.counters.track("failed_requests", lambda: failed[0])

    async def workload() -> list[float | None]:
        limiter = RateLimiter() if technique == "limiter" else None
        latencies = await run_users(users, perfkit_clock, limiter=limiter)
        for latency in latencies:
            if latency is None:
                failed[0] += 1
            else:
                perf.observe(latency)
        return latencies

    perf.describe(
        users=users,
        requests_each=REQUESTS_EACH,
        output_tokens_per_minute=LIMITS.output_tokens_per_minute,
        max_tokens=MAX_TOKENS,
    )
    latencies = perf(workload)
    assert len(latencies) == users * REQUESTS_EACH
    if technique == "limiter":
        assert None not in latencies  # paced, never refused past the SDK's retries
    if users == USERS[0]:  # inside the limit
        assert None not in latencies
