"""Redis clients for the cache's L2: short timeouts and no retries, within a latency budget."""

from __future__ import annotations

import math
from typing import Any

DEFAULT_L2_TIMEOUT = 0.05
"""Seconds one L2 operation may take before it counts as failed (50 ms: a cache that waits
longer than that on Redis is slower than many origins it stands in front of)."""


def connect_redis(
    url: str, *, asynchronous: bool = False, timeout: float = DEFAULT_L2_TIMEOUT
) -> Any:
    """A Redis client for a cache's L2: ``redis.Redis`` (or ``redis.asyncio.Redis`` with
    ``asynchronous=True``) for ``url``, whose connect and socket timeouts are ``timeout``
    seconds and which never retries, so a dead, silent or slow Redis costs a call at
    most about ``timeout``, and the circuit breaker takes it from there.

    >>> client = connect_redis("redis://127.0.0.1:6379/0", timeout=0.05)
    >>> client.connection_pool.connection_kwargs["socket_timeout"]
    0.05
    >>> client.close()
    """
    check_timeout("timeout", timeout)
    if not isinstance(url, str) or not url:
        raise ValueError(f"url must be a redis:// or rediss:// URL, got {url!r}")
    options: dict[str, Any] = {
        "socket_timeout": float(timeout),
        "socket_connect_timeout": float(timeout),
        "decode_responses": False,
    }
    if asynchronous:
        import redis.asyncio
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import NoBackoff

        return redis.asyncio.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 0), **options)
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)


def check_timeout(name: str, seconds: float) -> float:
    """``seconds`` if it is a finite number of seconds > 0, else a ValueError naming it."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 < seconds < math.inf
    ):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {seconds!r}")
    return float(seconds)


def unbounded_sync_client(client: Any) -> bool:
    """Whether a sync client's connections may wait on a socket for ever (no socket
    timeout): the cache cannot interrupt a blocking read, so it says so."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict) or _is_fake(pool):
        return False
    return kwargs.get("socket_timeout") is None


def _is_fake(pool: Any) -> bool:
    # fakeredis (and perfkit's simulated Redis, built on it) opens no socket.
    connection_class = getattr(pool, "connection_class", object)
    return any(cls.__module__.startswith("fakeredis") for cls in connection_class.__mro__)
