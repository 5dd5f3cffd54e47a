"""perfkit's multi-layer cache: in-process L1, Redis L2, for sync and async code."""

from __future__ import annotations

from perfkit.cache._breaker import BreakerStats, CircuitBreaker
from perfkit.cache._decorator import cached
from perfkit.cache._llm import CachedMessages, anthropic_request_key, request_content
from perfkit.cache._metrics import CacheCollector, register_cache_metrics
from perfkit.cache._multilayer import CacheWarning, FillTicket, Found, MultiLayerCache
from perfkit.cache._redis import DEFAULT_L2_TIMEOUT, connect_redis
from perfkit.cache._serialization import (
    CorruptPayloadError,
    JsonSerializer,
    RejectedPayloadError,
    SerializationError,
    Serializer,
    SignedPickleSerializer,
)
from perfkit.cache._stats import CacheStatsSnapshot
from perfkit.cache._streams import MessageAssembler

__all__ = [
    "DEFAULT_L2_TIMEOUT",
    "BreakerStats",
    "CacheCollector",
    "CacheStatsSnapshot",
    "CacheWarning",
    "CachedMessages",
    "CircuitBreaker",
    "CorruptPayloadError",
    "FillTicket",
    "Found",
    "JsonSerializer",
    "MessageAssembler",
    "MultiLayerCache",
    "RejectedPayloadError",
    "SerializationError",
    "Serializer",
    "SignedPickleSerializer",
    "anthropic_request_key",
    "cached",
    "connect_redis",
    "register_cache_metrics",
    "request_content",
]
