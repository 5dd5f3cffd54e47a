"""Benchmark-suite helpers and the speedup report's rows: every table of the book chapter,
with the claims it makes, beside what this suite measures."""

from __future__ import annotations

from typing import Any

import pytest

from perfkit.pytest_plugin import COMPARISONS_KEY
from perfkit.reporting import Claim, Speedup

CACHE = "test_cache_impact.py::"
MISS = CACHE + "test_caching_impact[identical-query-miss]"
ASYNC = "test_async.py::"
POOLING = "test_pooling.py::"
COMBINED = "test_combined.py::test_combined_workload"
RATE_LIMITS = "test_rate_limits.py::test_concurrency_past_the_rate_limit"
PROMPT_CACHING = "test_prompt_caching.py::test_prompt_caching"


def pytest_perfkit_speedups(config: pytest.Config) -> list[Speedup]:
    """The chapter's claims, each beside the benchmarks that check it."""
    return [
        Speedup(
            "caching",
            "identical query, L1 hit",
            MISS,
            CACHE + "test_caching_impact[identical-query-l1-hit]",
            optimized_figure="wall.median",
            claim=Claim.factor(60_000),
            note="an L1 hit waits on nothing modeled, so its real time is compared",
        ),
        Speedup(
            "caching",
            "identical query, L2 hit",
            MISS,
            CACHE + "test_caching_impact[identical-query-l2-hit]",
            claim=Claim.factor(10, 100, text="10-100x (overview)"),
        ),
        Speedup(
            "caching",
            "similar query",
            MISS,
            CACHE + "test_caching_impact[similar-query-miss]",
            claim=Claim.factor(1),
        ),
        Speedup(
            "caching",
            "30% hit rate",
            MISS,
            CACHE + "test_mixed_workload[30pct-hits]",
            optimized_figure="observed.mean",
            claim=Claim.factor(3.3),
            note="the chapter's 900 ms average is what a 70% hit rate gives (0.3 x 3,000 ms)",
        ),
        Speedup(
            "caching",
            "70% hit rate",
            MISS,
            CACHE + "test_mixed_workload[70pct-hits]",
            optimized_figure="observed.mean",
        ),
        Speedup(
            "async",
            "3 API calls",
            "test_api_calls.py::test_three_api_calls[sequential]",
            "test_api_calls.py::test_three_api_calls[concurrent]",
            claim=Claim.factor(3),
        ),
        Speedup(
            "async",
            "5 database queries",
            ASYNC + "test_five_database_queries[sequential]",
            ASYNC + "test_five_database_queries[concurrent]",
            claim=Claim.factor(5),
        ),
        Speedup(
            "async",
            "10 file reads",
            ASYNC + "test_ten_file_reads[sequential]",
            ASYNC + "test_ten_file_reads[concurrent]",
            claim=Claim.factor(10),
        ),
        Speedup(
            "async",
            "4 tools of one tool-use turn",
            ASYNC + "test_one_tool_use_turn[sequential]",
            ASYNC + "test_one_tool_use_turn[concurrent]",
        ),
        *(
            Speedup(
                "pooling",
                f"{requests:,} sequential requests",
                POOLING + f"test_sequential_requests[no-pooling-{requests}]",
                POOLING + f"test_sequential_requests[pooling-{requests}]",
                claim=Claim.percent(15),
            )
            for requests in (10, 100, 1000)
        ),
        Speedup(
            "pooling",
            "HTTP/2, connections for 10 concurrent requests",
            POOLING + "test_ten_concurrent_https_requests[http1.1]",
            POOLING + "test_ten_concurrent_https_requests[http2]",
            figure="counters.connections_opened",
        ),
        Speedup(
            "streaming",
            "perceived latency of a 5 s reply",
            "test_streaming.py::test_perceived_latency[not-streamed]",
            "test_streaming.py::test_perceived_latency[streamed]",
            figure="observed.mean",
            claim=Claim.factor(10),
        ),
        *(
            Speedup(
                "prompt caching",
                scenario,
                PROMPT_CACHING + "[without-prompt-caching]",
                PROMPT_CACHING + "[with-prompt-caching]",
                figure=figure,
                note=note,
            )
            for scenario, figure, note in (
                ("TTFT p50, support agent", "observed.p50", ""),
                ("TTFT p95, support agent", "observed.p95", ""),
                ("p95 time to the complete reply", "complete.p95", ""),
                ("cost", "counters.usd", "every request's usage, priced"),
                (
                    "input tokens prefilled",
                    "counters.api_prefilled_tokens",
                    "uncached input and cache writes; cache reads are the rest",
                ),
            )
        ),
        Speedup(
            "prompt caching",
            "history trimmed in steps, not every question: cost",
            PROMPT_CACHING + "[with-prompt-caching-trimmed-every-question]",
            PROMPT_CACHING + "[with-prompt-caching]",
            figure="counters.usd",
        ),
        Speedup(
            "prompt caching",
            "history trimmed in steps, not every question: cache writes",
            PROMPT_CACHING + "[with-prompt-caching-trimmed-every-question]",
            PROMPT_CACHING + "[with-prompt-caching]",
            figure="counters.api_cache_write_tokens",
        ),
        Speedup(
            "combined",
            "p95 perceived latency, 60 users",
            COMBINED + "[naive]",
            COMBINED + "[optimized]",
            figure="observed.p95",
            claim=Claim.factor(4.3),
        ),
        Speedup(
            "combined",
            "p95 time to the complete reply",
            COMBINED + "[naive]",
            COMBINED + "[optimized]",
            figure="complete.p95",
        ),
        Speedup("combined", "cost", COMBINED + "[naive]", COMBINED + "[optimized]", "counters.usd"),
        *(
            Speedup(
                "combined",
                f"{technique}'s share: {what}",
                COMBINED + f"[optimized-without-{without}]",
                COMBINED + "[optimized]",
                figure=figure,
            )
            for technique, without in (
                ("prompt caching", "prompt-caching"),
                ("history trimming", "history-trimming"),
            )
            for what, figure in (
                ("p95 perceived latency", "observed.p95"),
                ("cost", "counters.usd"),
            )
        ),
        *(
            Speedup(
                "rate limits",
                f"{what}, {users} users past the limit",
                RATE_LIMITS + f"[sdk-retries-{users}]",
                RATE_LIMITS + f"[limiter-{users}]",
                figure=figure,
                note=note,
            )
            for users in (20, 40)
            for what, figure, note in (
                (
                    "requests failed after the SDK's retries",
                    "counters.failed_requests",
                    "the limiter's 0 failures show as an unbounded factor",
                ),
                ("requests sent, retries included", "counters.api_requests", ""),
                (
                    "p95 of the replies",
                    "observed.p95",
                    "past the limit no client raises throughput: the SDK's p95 is over the "
                    "requests it delivered, the limiter's over all of them, the last waiting "
                    "their turn",
                ),
            )
        ),
    ]


@pytest.fixture
def comparison(request: pytest.FixtureRequest) -> Any:
    """Record a real-time side-by-side comparison, in the report and the terminal summary
    (under pytest-xdist a worker hands it to the controller with its benchmarks)."""

    def record(seconds_per_call: dict[str, float], ratios: dict[str, float]) -> None:
        request.config.stash[COMPARISONS_KEY].append(
            {
                "benchmark": request.node.nodeid,
                "seconds_per_call": seconds_per_call,
                "ratios": ratios,
            }
        )

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    comparisons = config.stash.get(COMPARISONS_KEY, [])
    if not comparisons:
        return
    terminalreporter.write_sep("-", "real-time comparisons (measured side by side, this run)")
    for found in comparisons:
        terminalreporter.write_line(found["benchmark"])
        for name, seconds in found["seconds_per_call"].items():
            terminalreporter.write_line(f"    {name:<34} {seconds * 1e6:10.3f} µs per call")
        for name, ratio in found["ratios"].items():
            terminalreporter.write_line(f"    {name:<34} {ratio:10.3f}x")


@pytest.fixture(autouse=True)
def _every_connection_closed(no_open_connections: None) -> None:
    """After every benchmark, zero connections opened through tracked pools remain open."""
