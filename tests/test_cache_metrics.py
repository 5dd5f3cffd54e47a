"""Prometheus exposition of cache statistics, parsed back and checked."""

from __future__ import annotations

import fakeredis
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from perfkit.cache import CacheCollector, CircuitBreaker, MultiLayerCache, register_cache_metrics


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_hits_by_layer_misses_errors_and_breaker_state_are_exposed() -> None:
    redis_client = fakeredis.FakeRedis()
    writer = MultiLayerCache(redis_client, namespace="llm")
    reader = MultiLayerCache(
        redis_client, namespace="llm", breaker=CircuitBreaker(failure_threshold=1)
    )
    writer.set("q", "answer")
    assert writer.get("q") == "answer"  # L1 hit
    assert reader.get("q") == "answer"  # L2 hit
    assert reader.get("missing") is None  # miss
    reader.breaker.record_failure()  # open
    registry = CollectorRegistry()
    register_cache_metrics({"writer": writer, "reader": reader}, registry=registry)
    found = samples(registry)
    assert found[("perfkit_cache_hits_total", (("cache", "writer"), ("layer", "l1")))] == 1
    assert found[("perfkit_cache_hits_total", (("cache", "reader"), ("layer", "l2")))] == 1
    assert found[("perfkit_cache_misses_total", (("cache", "reader"),))] == 1
    assert found[("perfkit_cache_writes_total", (("cache", "writer"),))] == 1
    assert found[("perfkit_cache_errors_total", (("cache", "reader"), ("kind", "corrupt")))] == 0
    assert found[("perfkit_cache_breaker_open", (("cache", "reader"),))] == 1
    assert found[("perfkit_cache_breaker_open", (("cache", "writer"),))] == 0


def test_the_byte_bounds_refusals_evictions_and_l1_bytes_are_exposed() -> None:
    cache = MultiLayerCache(
        fakeredis.FakeRedis(), namespace="big", l1_max_bytes=3000, l2_max_bytes=2000
    )
    cache.set("a", "x" * 1000)
    cache.set("b", "x" * 1000)
    cache.set("c", "x" * 1500)  # L2 takes it; L1 evicts "a" to make room
    cache.set("d", "x" * 5000)  # neither layer takes it
    registry = CollectorRegistry()
    register_cache_metrics({"big": cache}, registry=registry)
    found = samples(registry)
    assert found[("perfkit_cache_refused_total", (("cache", "big"), ("layer", "l1")))] == 1
    assert found[("perfkit_cache_refused_total", (("cache", "big"), ("layer", "l2")))] == 1
    assert found[("perfkit_cache_l1_evictions_total", (("cache", "big"),))] == 1
    assert found[("perfkit_cache_l1_bytes", (("cache", "big"),))] == cache.l1.bytes > 0


def test_the_collector_reads_live_counters_at_each_scrape() -> None:
    cache = MultiLayerCache(None, namespace="live")
    registry = CollectorRegistry()
    collector = register_cache_metrics(cache, registry=registry)
    assert collector.caches == {"live": cache}
    key = ("perfkit_cache_misses_total", (("cache", "live"),))
    assert samples(registry)[key] == 0
    cache.get("nothing")
    assert samples(registry)[key] == 1


def test_a_collector_needs_caches() -> None:
    with pytest.raises(ValueError, match="at least one cache"):
        CacheCollector({})
    with pytest.raises(TypeError, match=r"caches\['x'\] must be a MultiLayerCache, got 3"):
        CacheCollector({"x": 3})  # type: ignore[dict-item]
