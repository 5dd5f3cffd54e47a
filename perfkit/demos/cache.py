"""The book chapter's caching walk-through: a miss, an L1 hit, an L2 hit, the statistics.

The "expensive LLM call" goes to the simulated Anthropic API (2 s modeled latency) and
L2 is fakeredis with a modeled 1 ms round trip, all on a virtual clock: the modeled
times are exact and the whole demo takes a fraction of a second of wall time. Real
wall time is measured too, since an L1 hit costs no modeled time at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import anthropic

from perfkit._clock import VirtualClock
from perfkit.cache import MultiLayerCache, cached
from perfkit.simulation import AnthropicSimulator, LLMLatency, Reply, fake_redis

LLM_SECONDS = 2.0
REDIS_ROUND_TRIP = 0.001
PROMPT = "What is 42 x 42?"


@dataclass(frozen=True)
class Step:
    """One call of the walk-through and what it cost."""

    label: str
    result: str
    modeled: float
    wall: float


def _timed(clock: VirtualClock, call: Callable[[], str], label: str) -> Step:
    start, wall_start = clock.now(), time.perf_counter()
    result = call()
    return Step(label, result, clock.elapsed(start), time.perf_counter() - wall_start)


def run() -> tuple[list[Step], dict[str, int | float]]:
    """Run the walk-through; returns its steps and the combined cache statistics."""
    clock = VirtualClock()
    redis_client = fake_redis(latency=REDIS_ROUND_TRIP, clock=clock)
    with (
        AnthropicSimulator(latency=LLMLatency(ttft=LLM_SECONDS), clock=clock) as sim,
        anthropic.Anthropic(api_key="simulated") as client,
    ):
        sim.respond_with(Reply.text("42 x 42 = 1764"))

        def expensive_llm_call(prompt: str) -> str:
            message = client.messages.create(
                model="claude-sonnet-5",
                max_tokens=64,
                messages=[{"role": "user", "content": prompt}],
            )
            block = message.content[0]
            return block.text if block.type == "text" else ""

        first = MultiLayerCache(redis_client, namespace="demo", clock=clock)
        ask = cached(first, ttl=300)(expensive_llm_call)
        steps = [
            _timed(clock, lambda: ask(PROMPT), "First call (cache miss)"),
            _timed(clock, lambda: ask(PROMPT), "Second call (L1 hit)"),
        ]
        # A second process, or this one after a restart: its L1 is empty, L2 is shared.
        second = MultiLayerCache(redis_client, namespace="demo", clock=clock)
        ask_again = cached(second, ttl=300)(expensive_llm_call)
        steps.append(_timed(clock, lambda: ask_again(PROMPT), "Third call (L2 hit)"))
        assert sim.call_count == 1, "only the miss reaches the LLM"
    redis_client.close()
    return steps, _combined(first.stats(), second.stats())


def _combined(*stats: dict[str, int | float]) -> dict[str, int | float]:
    keys = ("l1_hits", "l2_hits", "misses", "total_requests")
    totals: dict[str, int | float] = {key: sum(int(s[key]) for s in stats) for key in keys}
    hits = int(totals["l1_hits"]) + int(totals["l2_hits"])
    totals["hit_rate"] = round(hits / int(totals["total_requests"]), 4)
    return totals


def _speedup(miss: Step, step: Step) -> str:
    if step.modeled > 0:
        return f"{miss.modeled / step.modeled:,.0f}x faster (modeled)"
    return f"{miss.modeled / step.wall:,.0f}x faster (vs its real {step.wall * 1e6:,.1f} µs)"


def main(out: TextIO) -> int:
    wall_start = time.perf_counter()
    steps, stats = run()
    miss = steps[0]
    for index, step in enumerate(steps):
        out.write(f"{step.label}...\n")
        note = "" if index == 0 else f"  ({_speedup(miss, step)})"
        out.write(
            f"Result: {step.result!r}, Time: {step.modeled:.6f}s modeled, "
            f"{step.wall * 1e3:.3f} ms real{note}\n\n"
        )
    out.write("Cache statistics:\n")
    out.write(json.dumps(stats, indent=2) + "\n")
    out.write(
        f"\n(LLM call modeled at {LLM_SECONDS:g} s, Redis round trip at "
        f"{REDIS_ROUND_TRIP * 1e3:g} ms; demo wall time {time.perf_counter() - wall_start:.3f} s)\n"
    )
    return 0
