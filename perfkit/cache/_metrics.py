"""Prometheus metrics of caches: hits by layer, misses, errors by kind, breaker state.

A collector reads each cache's counters when Prometheus scrapes, so counting costs the
cache nothing extra on its hot path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from perfkit.cache._multilayer import MultiLayerCache

ERROR_KINDS = ("l2_errors", "l2_skipped", "corrupt", "rejected")


class CacheCollector(Collector):
    """Exposes the statistics of named caches, with a bounded label set.

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> cache = MultiLayerCache(None, namespace="docs")
    >>> cache.set("x", 1); _ = cache.get("x")
    >>> registry = CollectorRegistry()
    >>> _ = register_cache_metrics({"docs": cache}, registry=registry)
    >>> b'perfkit_cache_hits_total{cache="docs",layer="l1"} 1.0' in generate_latest(registry)
    True
    """

    def __init__(self, caches: Mapping[str, MultiLayerCache], *, prefix: str = "perfkit_cache"):
        if not caches:
            raise ValueError("CacheCollector needs at least one cache")
        for name, cache in caches.items():
            if not isinstance(cache, MultiLayerCache):
                raise TypeError(f"caches[{name!r}] must be a MultiLayerCache, got {cache!r}")
        self.caches = dict(caches)
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        p = self.prefix
        hits = CounterMetricFamily(f"{p}_hits", "Cache hits by layer", labels=["cache", "layer"])
        misses = CounterMetricFamily(f"{p}_misses", "Cache misses", labels=["cache"])
        writes = CounterMetricFamily(f"{p}_writes", "Values written to the cache", labels=["cache"])
        coalesced = CounterMetricFamily(
            f"{p}_coalesced",
            "Misses that waited for another caller's computation",
            labels=["cache"],
        )
        errors = CounterMetricFamily(
            f"{p}_errors",
            "L2 errors, calls skipped by the open breaker, corrupt and rejected payloads",
            labels=["cache", "kind"],
        )
        refused = CounterMetricFamily(
            f"{p}_refused",
            "Values a layer did not keep: over its byte bound (or, L1, impossible to copy)",
            labels=["cache", "layer"],
        )
        evictions = CounterMetricFamily(
            f"{p}_l1_evictions", "Entries L1 dropped to stay within its bounds", labels=["cache"]
        )
        l1_bytes = GaugeMetricFamily(
            f"{p}_l1_bytes", "Bytes of the values L1 keeps now", labels=["cache"]
        )
        breaker = GaugeMetricFamily(
            f"{p}_breaker_open",
            "1 while the L2 circuit breaker is open or probing",
            labels=["cache"],
        )
        for name, cache in self.caches.items():
            stats = cache.stats_snapshot()
            hits.add_metric([name, "l1"], stats.l1_hits)
            hits.add_metric([name, "l2"], stats.l2_hits)
            misses.add_metric([name], stats.misses)
            writes.add_metric([name], stats.writes)
            coalesced.add_metric([name], stats.coalesced)
            for kind in ERROR_KINDS:
                errors.add_metric([name, kind], getattr(stats, kind))
            refused.add_metric([name, "l1"], stats.l1_refused)
            refused.add_metric([name, "l2"], stats.l2_refused)
            evictions.add_metric([name], stats.l1_evictions)
            l1_bytes.add_metric([name], cache.l1.bytes)
            breaker.add_metric([name], 0.0 if cache.breaker.state == "closed" else 1.0)
        yield from (hits, misses, writes, coalesced, errors, refused, evictions, l1_bytes, breaker)


def register_cache_metrics(
    caches: Mapping[str, MultiLayerCache] | MultiLayerCache,
    *,
    registry: CollectorRegistry = REGISTRY,
    prefix: str = "perfkit_cache",
) -> CacheCollector:
    """Register a :class:`CacheCollector` for ``caches`` (one cache is named by its
    namespace) with ``registry``; returns it, e.g. to ``registry.unregister`` later."""
    named = {caches.namespace: caches} if isinstance(caches, MultiLayerCache) else caches
    collector = CacheCollector(named, prefix=prefix)
    registry.register(collector)
    return collector
