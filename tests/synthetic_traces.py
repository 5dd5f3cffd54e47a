"""Synthetic traces drawn from a known latency (seeded, no server), for the fit's tests."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from perfkit.traces import Trace


@dataclass(frozen=True)
class Truth:
    """The latency the synthetic traces are drawn from (seconds; per token in seconds)."""

    connect_median: float = 0.05
    connect_sigma: float = 0.2
    queue_high: float = 0.02  # uniform queueing delay in [0, queue_high]
    base_median: float = 0.4
    base_sigma: float = 0.3
    prefill: float = 2e-4
    cache_read: float = 2e-5
    per_token_median: float = 0.02
    per_token_sigma: float = 0.25
    tokens_per_delta: int = 1


def synthetic(
    count: int,
    seed: int,
    truth: Truth = Truth(),
    *,
    model: str = "m",
    stream: bool = True,
    input_tokens: tuple[int, int] = (200, 40_000),
) -> list[Trace]:
    """Traces drawn from ``truth``: uncached input, cache writes and reads of varying
    size, 2-300 output tokens, lognormal noise; all seeded, no server."""
    rng = random.Random(seed)
    traces = []
    for _ in range(count):
        uncached = rng.randint(*input_tokens)
        written = rng.choice((0, 0, rng.randint(0, 5_000)))
        read = rng.choice((0, rng.randint(1_000, 80_000)))
        output = rng.randint(2, 300)
        headers = rng.lognormvariate(math.log(truth.connect_median), truth.connect_sigma)
        base = rng.uniform(0, truth.queue_high) + rng.lognormvariate(
            math.log(truth.base_median), truth.base_sigma
        )
        first = headers + base + truth.prefill * (uncached + written) + truth.cache_read * read
        draws = [
            rng.lognormvariate(math.log(truth.per_token_median), truth.per_token_sigma)
            for _ in range(output - 1)
        ]
        k = truth.tokens_per_delta
        gaps = tuple(sum(draws[i : i + k]) for i in range(0, len(draws), k))
        traces.append(
            Trace(
                at=0.0,
                model=model,
                status=200,
                stream=stream,
                headers_s=headers if stream else first + sum(draws),
                ttft_s=first if stream else None,
                complete_s=first + sum(draws),
                gaps_s=gaps if stream else (),
                input_tokens=uncached,
                cache_creation_input_tokens=written,
                cache_read_input_tokens=read,
                output_tokens=output,
            )
        )
    return traces


def reference_base(truth: Truth) -> tuple[float, float]:
    """The median of queue + base (what the fitted ttft stands for) and the sigma of its
    logarithm (from its 10th and 90th percentiles), by simulation."""
    rng = random.Random(12345)
    draws = sorted(
        rng.uniform(0, truth.queue_high)
        + rng.lognormvariate(math.log(truth.base_median), truth.base_sigma)
        for _ in range(100_001)
    )
    sigma = (math.log(draws[90_000]) - math.log(draws[10_000])) / (2 * 1.2815515655446004)
    return draws[50_000], sigma
