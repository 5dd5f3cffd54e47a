"""What a load test reads from the service itself: its cache's hits and misses, from the
Prometheus text of its ``/metrics`` endpoint (perfkit's agent service exposes them)."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

METRICS_TIMEOUT = 2.0
"""Seconds to wait for ``/metrics``: a service too slow to answer reports no cache."""
HITS = "perfkit_cache_hits_total"
MISSES = "perfkit_cache_misses_total"


async def cache_counts(target: str | Any) -> tuple[float, float] | None:
    """The service's cache hits and misses so far, or None if it reports no cache."""
    if isinstance(target, str):
        client = httpx.AsyncClient(base_url=target, timeout=METRICS_TIMEOUT)
    else:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=target), base_url="http://app")
    try:
        async with client:
            response = await client.get("/metrics")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return parse_cache_counts(response.text)


def parse_cache_counts(exposition: str) -> tuple[float, float] | None:
    """Total hits (every layer) and misses of every cache in a Prometheus exposition.

    >>> text = 'perfkit_cache_hits_total{layer="l1"} 3\\nperfkit_cache_misses_total 1\\n'
    >>> parse_cache_counts(text)
    (3.0, 1.0)
    """
    totals = {HITS: 0.0, MISSES: 0.0}
    found = False
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in totals:
                found = True
                totals[sample.name] += sample.value
    return (totals[HITS], totals[MISSES]) if found else None


def hit_rate(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    """The hit rate of the lookups between two readings (None without both, or none)."""
    if before is None or after is None:
        return None
    hits, misses = after[0] - before[0], after[1] - before[1]
    return hits / (hits + misses) if hits + misses > 0 else None
